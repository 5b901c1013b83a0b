"""The Requests page under Streamlit's AppTest: bad input answered in the page, a short sequence
served with the button, its curves, answers, round-1/round-T layout and cost shown, and the same
settings loaded from the store on the next visit without a button."""

from __future__ import annotations

from pathlib import Path

import pytest

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
pytestmark = pytest.mark.slow  # it serves a short digits sequence

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TIMEOUT = 300


def messages(at: AppTest) -> dict[str, list[str]]:
    return {kind: [e.value for e in getattr(at, kind)] for kind in ("exception", "error", "warning", "info", "success")}


def requests_page(*methods: str) -> AppTest:
    """The app on the Requests page with only ``methods`` chosen, each capped at 2 epochs."""
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    for method in ("neggrad", "adv", "l2ul", "structguard"):
        if method not in methods:
            at.checkbox(key=f"cfg_method.{method}").uncheck()
    at.run()
    for method in methods:
        at.number_input(key=f"cfg_hp.{method}.max_epochs").set_value(2)
    at.run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, messages(at)
    return at


def test_requests_without_a_seed_are_refused_in_the_page() -> None:
    at = requests_page("neggrad")
    at.multiselect(key="req_seeds").set_value([])
    at.run()
    assert not at.exception
    assert messages(at)["error"] == ["Choose at least one method (Setup page) and one seed."]
    assert not at.button


def test_requests_serve_a_sequence_then_load_it_from_the_store() -> None:
    at = requests_page("neggrad", "structguard")
    at.number_input(key="req_k").set_value(2)
    at.number_input(key="req_rounds").set_value(2)
    at.checkbox(key="req_previous").check()
    at.session_state["req_layout"] = "pca"  # the layout radio shows once there is a run; PCA needs no compilation
    at.run()
    assert any("not been served yet" in text for text in messages(at)["info"])
    at.button[0].click().run()
    assert not at.exception and not at.error, messages(at)
    assert any("6 rounds (6 computed now" in text for text in messages(at)["success"]), messages(at)
    assert len(at.get("plotly_chart")) == 2  # the round curves and the round-1/round-T layout
    arms = list(at.selectbox(key="requests_arm").options)
    assert arms == ["NegGrad", "StructGuard", "StructGuard (ref. previous)"]
    assert any("Relapse" in m.value for m in at.markdown)
    at.switch_page("views/compare.py").run()
    at.switch_page("views/requests.py").run()  # stored now: shown at once, no button
    assert any("6 rounds (0 computed now" in text for text in messages(at)["success"]), messages(at)
    assert not at.button
