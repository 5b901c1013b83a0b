"""Every dashboard page under Streamlit's AppTest: widgets driven, no exception, the expected
elements present, and bad input answered by a message in the page."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from stakes_core.anchors.encoders import RandomEncoder, register_encoder
from stakes_core.methods import NegGrad, SGDMethodConfig, StepRecord, hyperparameter, hyperparameters, register_method
from stakes_core.report.table import run_rows
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import is_complete, store_root
from stakes_core.testing import scratch_registries

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
pytestmark = pytest.mark.slow  # the pages pretrain and unlearn the digits default

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
TIMEOUT = 300  # the first run pretrains the digits model and unlearns (seconds on 2 cores)
ANALYSIS_PAGES = ("compare", "structure", "changes", "embedding", "gradcam", "retrieval", "stakes")


def messages(at: AppTest) -> dict[str, list[str]]:
    return {kind: [e.value for e in getattr(at, kind)] for kind in ("exception", "error", "warning", "info", "success")}


def open_app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, messages(at)
    return at


def short_settings(at: AppTest, k: int = 4) -> None:
    """NegGrad and StructGuard at k=4, two epochs each: a run of a few seconds."""
    at.number_input(key="cfg_k").set_value(k)
    for method in ("adv", "l2ul"):
        at.checkbox(key=f"cfg_method.{method}").uncheck()
    at.run()
    for method in ("neggrad", "structguard"):
        at.number_input(key=f"cfg_hp.{method}.max_epochs").set_value(2)
    at.run()
    assert not at.exception, messages(at)


@pytest.fixture(scope="module")
def after_run(tmp_path_factory) -> Iterator[AppTest]:
    """The app after the Run page ran the short settings. The run lives in a cache of this
    module's own: under pytest-xdist each process makes this fixture, and with the shared
    session cache the second would find the run already stored."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STAKES_CACHE_DIR", str(tmp_path_factory.mktemp("app_cache")))
        at = open_app()
        short_settings(at)
        at.switch_page("views/run.py").run()
        assert [b.label for b in at.button] == ["Run unlearning"]
        at.button[0].click().run()
        assert not at.exception and not at.error, messages(at)
        assert any("Finished" in text for text in messages(at)["success"])
        yield at


def test_setup_opens_on_the_digits_default() -> None:
    at = open_app()
    assert at.title[0].value == "Setup"
    assert at.selectbox(key="cfg_preset").value == "digits"
    assert at.number_input(key="cfg_k").value == 16
    chosen = {c.key.removeprefix("cfg_method."): c.value for c in at.checkbox}
    assert {m for m, on in chosen.items() if on} == {"neggrad", "adv", "l2ul", "structguard"}  # the paper's four
    assert {"oracle", "retrain"} <= set(chosen)  # shown, unchosen
    assert at.radio(key="cfg_stop_at").value == "zero" and at.toggle(key="cfg_retain_free").value is False
    assert any("16 images to forget" in h.value for h in at.subheader)
    assert at.get("image"), "the forget images are shown"
    assert at.toggle(key="cfg_from_scratch").value is False  # the shipped checkpoint unless asked


def test_setup_loads_the_shipped_model_unless_told_to_retrain() -> None:
    at = open_app()
    next(b for b in at.button if b.label.startswith("Pretrain or load")).click().run()
    assert not at.exception, messages(at)
    assert any("test accuracy 98.89 % (the shipped checkpoint" in text for text in messages(at)["success"])
    at.toggle(key="cfg_from_scratch").set_value(True).run()
    assert not at.exception and at.session_state["cfg_from_scratch"] is True
    at.switch_page("views/run.py").run()
    assert [b.label for b in at.button] == ["Run unlearning"]  # a model trained here is another run


@dataclass
class ToyConfig(SGDMethodConfig):
    flip: bool = hyperparameter(False, "a switch the Setup page shows as a checkbox", key=True)
    mode: str = hyperparameter("fast", "an option the Setup page shows as a choice", key=True, choices=("fast", "slow"))


class Toy(NegGrad):
    name = "toy"
    config_class = ToyConfig


def test_setup_lists_what_the_registries_hold() -> None:
    """A method and an encoder registered from outside appear with no edit of the app: the
    method with an input of the right kind and its help line for each key hyperparameter."""
    with scratch_registries():
        register_method(Toy)
        register_encoder("toyenc", lambda argument, device: RandomEncoder(int(argument)), examples=("toyenc:3",))
        at = open_app()
        assert "toyenc:3" in at.selectbox(key="cfg_encoder").options
        assert at.checkbox(key="cfg_method.toy").value is False
        at.checkbox(key="cfg_method.toy").check().run()
        flip, mode = at.checkbox(key="cfg_hp.toy.flip"), at.selectbox(key="cfg_hp.toy.mode")
        assert flip.help == "a switch the Setup page shows as a checkbox" and mode.options == ["fast", "slow"]
        assert at.number_input(key="cfg_hp.toy.lr").help.startswith("SGD learning rate")
        flip.check()
        mode.set_value("slow").run()
        assert not at.exception and not at.error, messages(at)
        at.switch_page("views/run.py").run()
        assert at.markdown[0].value.endswith("methods: NegGrad, Adv, L2UL, StructGuard, toy.")


def test_no_method_is_refused_in_the_page() -> None:
    at = open_app()
    for checkbox in at.checkbox:
        checkbox.uncheck()
    at.run()
    assert not at.exception
    assert any("at least one method" in text for text in messages(at)["error"])
    at.switch_page("views/run.py").run()
    assert any("at least one method" in text for text in messages(at)["error"]) and not at.button


def test_missing_cifar_says_how_to_get_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAKES_DATA_DIR", str(tmp_path))
    at = open_app()
    at.selectbox(key="cfg_preset").set_value("cifar10").run()
    assert not at.exception
    error = " ".join(messages(at)["error"])
    assert "CIFAR-10" in error and str(tmp_path) in error and "download" in error.lower()


LIMIT_SCRIPT = """
import sys
sys.path.insert(0, {app!r})
import streamlit as st
import lab

lab.init_settings()
st.session_state[{key!r}] = {value!r}
try:
    lab.current_config()
except lab.SettingsError as error:
    st.error(str(error))
"""


@pytest.mark.parametrize(
    "key, value, message",
    [("cfg_k", 5000, "between 1 and 128"), ("cfg_hp.structguard.max_epochs", 500, "at most 101 epochs"),
     ("cfg_hp.adv.n_adv", 400, "at most 50 adversarial"), ("cfg_hp.structguard.lr", "fast", "not valid")],
)
def test_the_demo_limits_are_enforced_beyond_the_widgets(key: str, value, message: str) -> None:
    at = AppTest.from_string(LIMIT_SCRIPT.format(app=str(Path(MAIN).parent), key=key, value=value), default_timeout=60)
    at.run()
    assert not at.exception and any(message in e.value for e in at.error), messages(at)


def test_limits_are_stated_in_the_page_and_a_value_past_one_is_refused() -> None:
    at = open_app()
    k = at.number_input(key="cfg_k")
    assert "1–128" in k.label
    at.checkbox(key="cfg_method.adv").check().run()
    assert "≤ 101" in at.number_input(key="cfg_hp.adv.max_epochs").label
    assert "≤ 50" in at.number_input(key="cfg_hp.adv.n_adv").label
    assert any("k ≤ 128, max_epochs ≤ 101, n_adv ≤ 50" in c.value for c in at.caption)
    at.number_input(key="cfg_k").set_value(500).run()  # the widget lets it through; the page says no
    assert not at.exception and any("between 1 and 128" in e and "500" in e for e in messages(at)["error"])
    at.number_input(key="cfg_k").set_value(4)
    at.number_input(key="cfg_hp.adv.max_epochs").set_value(500).run()
    assert any("Adv: at most 101 epochs" in e for e in messages(at)["error"])


def test_every_hyperparameter_help_says_meaning_direction_and_unit() -> None:
    for method in ("neggrad", "adv", "l2ul", "structguard", "oracle"):
        for hp in hyperparameters(method):
            assert "; unit: " in hp.help, f"{method}.{hp.name}: {hp.help}"
            if hp.choices is None:  # a number says which way it pushes
                assert any(word in hp.help for word in ("higher", "more", "larger")), f"{method}.{hp.name}"


def test_progress_text_and_fill_agree() -> None:
    import sys

    sys.path.insert(0, str(Path(MAIN).parent))
    from progress import step_progress

    record = StepRecord(step=12, epoch=2, forget_acc=25.0, views={"backbone": 0.1234}, loss=0.0, seconds=6.0)
    fill, text = step_progress("adv", record, 101)
    assert text == ("Adv: epoch 3 / 101 (step 12) · forget accuracy 25.0 % · collapse 0.123 · ETA ≤ 3 min 16 s")
    assert fill == 3 / 101  # the bar shows the epochs of the cap, not the forget accuracy


def test_reset_puts_the_preset_hyperparameters_back() -> None:
    at = open_app()
    lr = at.number_input(key="cfg_hp.structguard.lr")
    preset_lr = lr.value
    lr.set_value(0.5).run()
    assert at.number_input(key="cfg_hp.structguard.lr").value == 0.5
    next(b for b in at.button if "Reset" in b.label).click().run()
    assert at.number_input(key="cfg_hp.structguard.lr").value == preset_lr


def test_analysis_pages_point_to_the_run_page_before_a_run() -> None:
    at = open_app()
    at.session_state["cfg_seed"] = 9_999  # settings nobody has run
    for page in ANALYSIS_PAGES[:-1]:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, messages(at))
        assert any("not been run yet" in text for text in messages(at)["info"]), page


def test_run_page_shows_the_results_table(after_run: AppTest) -> None:
    table = after_run.dataframe[0].value
    assert list(table.columns) == ["method", "data read", "A_r (%)", "A_f (%)", "A_test (%)", "mean collapse",
                                   "final collapse", "steps", "seconds", "reached target"]  # display names, not ids
    assert list(table["method"]) == ["original", "NegGrad", "StructGuard"]
    assert (table["A_f (%)"][1:] <= 100).all()
    assert all(round(v, 1) == v for v in table["A_test (%)"]) and all(round(v, 3) == v for v in table["mean collapse"])
    reached = list(table["reached target"])
    assert reached[0] == "–" and all((r == "yes") == (f == 0) for r, f in zip(reached[1:], table["A_f (%)"][1:]))
    legend = " ".join(c.value for c in after_run.caption)
    assert all(name in legend for name in ("**A_r (%)**", "**A_test (%)**", "**mean collapse**", "**final collapse**"))
    # the same settings again: loaded from the store, no button, no work
    after_run.switch_page("views/run.py").run()
    assert any("run before" in text for text in messages(after_run)["success"])
    assert not after_run.button


@pytest.mark.parametrize("page", ANALYSIS_PAGES)
def test_every_analysis_page_renders_the_run(after_run: AppTest, page: str) -> None:
    after_run.switch_page(f"views/{page}.py").run()
    assert not after_run.exception and not after_run.error, (page, messages(after_run))
    charts = after_run.get("plotly_chart")
    expected_charts = {"compare": 0, "structure": 3, "changes": 3, "embedding": 1, "gradcam": 1, "retrieval": 2,
                       "stakes": 3}[page]
    assert len(charts) == expected_charts, page
    if page == "compare":
        assert len(after_run.get("download_button")) == 3
        pooled = after_run.dataframe[1].value
        assert list(pooled.columns) == ["k", "method", "data read", "runs", "A_r (%)", "A_f (%)", "A_test (%)",
                                        "mean collapse", "steps", "seconds", "reached target"]
        assert list(pooled["method"]) == ["original", "NegGrad", "StructGuard"] and set(pooled["runs"]) == {1}
        assert all(len(cell.split(".")[-1]) == 1 for cell in pooled["A_test (%)"])  # one rounding: 0.1 point
        assert any(h.value.endswith("(1 run)") for h in after_run.subheader)
        reached = list(pooled["reached target"])
        assert reached[0] == "–" and all(r in ("0/1", "1/1") for r in reached[1:])
        stopped = [w for w in messages(after_run)["warning"] if "stopped at its cap" in w]
        assert len(stopped) == reached.count("0/1")  # one warning per method that stopped at its cap
        assert any("**A_f (%)**: top-1 accuracy on the k forgotten images" in m.value for m in after_run.markdown)
    if page == "retrieval":
        table = after_run.dataframe[0].value
        assert list(table.columns[:3]) == ["model", "queries", "R@1 (%)"] and "mAP (%)" in table.columns
        assert set(table["queries"]) == {"forgotten", "retained", "test"} and "neggrad" not in set(table["model"])
        assert all(round(v, 1) == v for v in table["mAP (%)"])
        assert any("Low R@k on forgotten queries" in c.value for c in after_run.caption)
    if page == "changes":  # the second method's prediction matrices too, and the layer-wise CKA's caption
        assert any("Linear CKA" in c.value for c in after_run.caption)
        method = next(box for box in after_run.selectbox if box.label == "Method")
        assert list(method.options) == ["NegGrad", "StructGuard"]
        method.set_value("structguard").run()
        assert not after_run.exception and len(after_run.get("plotly_chart")) == 3, messages(after_run)
    if page == "stakes":  # nothing edited: nothing new to run; the anchors' agreement with the model is shown
        assert not after_run.button and any("Edit a description" in text for text in messages(after_run)["info"])
        assert [m.label for m in after_run.metric] == ["ρ with the cosine of class-mean features",
                                                        "ρ with the soft confusion"]
        assert all(-1 <= float(m.value) <= 1 and not m.delta for m in after_run.metric)


def test_a_selection_feeds_grad_cam_and_retrieval(after_run: AppTest) -> None:
    run_dir = next(p for p in store_root().iterdir() if p.name.startswith("digits-k4-seed0-"))
    forgotten = json.loads((run_dir / "summary.json").read_text())["forget_indices"][0]  # same for every k=4 seed-0 run
    after_run.session_state["selection"] = [("forget", forgotten)]
    after_run.switch_page("views/gradcam.py").run()
    assert any("selected on the Embedding page" in c.value for c in after_run.caption)
    after_run.switch_page("views/retrieval.py").run()
    assert after_run.radio[1].value == "forget" and after_run.selectbox[0].value == forgotten
    after_run.session_state["selection"] = []


def test_broken_descriptions_are_refused_in_the_stakes_page(after_run: AppTest) -> None:
    after_run.switch_page("views/stakes.py").run()
    after_run.session_state["stakes_editor"] = {"edited_rows": {0: {"attributes": " ; "}}, "added_rows": [],
                                                "deleted_rows": []}
    after_run.run()
    assert not after_run.exception
    assert any("cannot be encoded" in text for text in messages(after_run)["error"])


def test_the_stakes_page_measures_the_agreement_of_edited_descriptions(after_run: AppTest) -> None:
    """An edit recomputes ρ against the model (cached) and says how far it moved from the shipped anchors."""
    unedited = {"edited_rows": {}, "added_rows": [], "deleted_rows": []}
    after_run.session_state["stakes_editor"] = unedited  # another test may have left an edit
    after_run.switch_page("views/stakes.py").run()
    shipped = [float(m.value) for m in after_run.metric]
    assert len(shipped) == 2, messages(after_run)
    after_run.session_state["stakes_editor"] = {**unedited, "edited_rows": {0: {"attributes": "seven; crossed stem"}}}
    try:
        after_run.run()
        assert not after_run.exception and not after_run.error, messages(after_run)
        edited = [float(m.value) for m in after_run.metric]
        assert edited != shipped
        assert all(m.delta.endswith(" vs shipped") for m in after_run.metric)
        after_run.radio(key="stakes_agreement_view").set_value("confusion").run()
        assert "soft confusion" in after_run.get("plotly_chart")[2].proto.spec
    finally:
        after_run.session_state["stakes_editor"] = unedited


def test_the_stakes_page_offers_the_spaces_where_the_anchors_meaning_counts(after_run: AppTest) -> None:
    """Unedited shipped anchors in the paper's space: nothing new to run; in the ConSE space or
    with semantic targets, a StructGuard run is offered."""
    after_run.session_state["stakes_editor"] = {"edited_rows": {}, "added_rows": [], "deleted_rows": []}
    after_run.switch_page("views/stakes.py").run()
    space = after_run.radio(key="cfg_hp.structguard.structure_space")
    assert list(space.options) == ["the paper's (S = norm(V)·Aᵀ)", "ConSE (predicted mix of anchors)",
                                   "text map (features mapped to the anchors)"] and not after_run.button
    try:
        space.set_value("conse").run()
        assert not after_run.exception and any("AAᵀ" in c.value for c in after_run.caption), messages(after_run)
        assert any(b.label.startswith("Run StructGuard") for b in after_run.button)
        space.set_value("paper").run()
        after_run.radio(key="cfg_hp.structguard.target_rule").set_value("semantic").run()
        assert any(b.label.startswith("Run StructGuard") for b in after_run.button)
    finally:
        after_run.session_state["cfg_hp.structguard.structure_space"] = "paper"
        after_run.session_state["cfg_hp.structguard.target_rule"] = "uniform_other"


def test_the_stakes_page_does_not_train_a_model_to_compare_with(tmp_path, monkeypatch) -> None:
    """From scratch with no model trained here yet, the diagnostic points to the Setup page instead."""
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path))
    at = open_app()
    at.session_state["cfg_from_scratch"] = True
    at.switch_page("views/stakes.py").run()
    assert not at.exception and not at.metric, messages(at)
    assert any("not been trained on this machine yet" in text for text in messages(at)["info"])


def test_two_sessions_with_different_settings_each_get_their_own_run() -> None:
    """Two visitors of one server (two sessions, their state apart, the caches and the store
    shared): different seeds, both on the Run page before either runs; each is shown the run of
    its own settings, and the store holds both. (Runs of one process are made one at a time;
    tests/test_faults.py starts two at the same moment.)"""
    sessions = {}
    for seed in (7_001, 7_002):
        at = open_app()
        at.number_input(key="cfg_k").set_value(4)
        at.number_input(key="cfg_seed").set_value(seed)
        for method in ("adv", "l2ul", "structguard"):
            at.checkbox(key=f"cfg_method.{method}").uncheck()
        at.run()
        at.number_input(key="cfg_hp.neggrad.max_epochs").set_value(2)
        at.switch_page("views/run.py").run()
        assert [b.label for b in at.button] == ["Run unlearning"], messages(at)
        sessions[seed] = at
    for at in sessions.values():
        at.button[0].click().run()
        assert any("Finished" in text for text in messages(at)["success"]), messages(at)
    stored = {seed: [p for p in store_root().iterdir() if p.name.startswith(f"digits-k4-seed{seed}-")]
              for seed in sessions}
    assert all(len(found) == 1 and is_complete(found[0], ["neggrad"]) for found in stored.values()), stored
    for seed, at in sessions.items():
        at.run()  # after the other session's run
        assert not at.exception and at.markdown[0].value.startswith(f"**digits**, k = 4, seed {seed},")
        own = RunResult.load(stored[seed][0])
        shown = list(at.dataframe[0].value["A_test (%)"])
        assert own.seed == seed and shown == [round(r["test_acc"], 1) for r in run_rows(own)]
    assert RunResult.load(stored[7_001][0]).forget_indices != RunResult.load(stored[7_002][0]).forget_indices


def test_the_retain_free_filter_refuses_a_method_that_reads_the_retained_images() -> None:
    at = open_app()
    at.checkbox(key="cfg_method.oracle").check().run()
    at.toggle(key="cfg_retain_free").set_value(True).run()
    assert not at.exception
    assert any("retain-free only was asked for, but oracle (D_f + D_r)" in text for text in messages(at)["error"])
    at.checkbox(key="cfg_method.oracle").uncheck().run()
    assert not messages(at)["error"]


def test_compare_measures_the_run_by_the_fields_standards_on_request(after_run: AppTest) -> None:
    after_run.switch_page("views/compare.py").run()
    tables = len(after_run.dataframe)
    after_run.toggle(key="compare_field").set_value(True).run()
    assert not after_run.exception and not after_run.error, messages(after_run)
    field = after_run.dataframe[tables].value
    assert list(field.columns) == ["method", "data read", "loss attack", "loss attack AUC", "relearn steps"]
    assert list(field["method"]) == ["original", "NegGrad", "StructGuard"]
    assert all(0.0 <= value <= 1.0 for value in field["loss attack"])
    # U-LiRA says what it will cost and waits for the button (32 digits models are minutes of training)
    assert any("U-LiRA: 32 of 32 shadow models to train" in c.value for c in after_run.caption)
    assert any(b.label == "Train the shadows and score" for b in after_run.button)
    after_run.toggle(key="compare_field").set_value(False).run()


def test_the_run_page_runs_the_retrain_reference_and_shows_its_row(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    at = open_app()
    at.number_input(key="cfg_k").set_value(4)
    for method in ("neggrad", "adv", "l2ul", "structguard"):
        at.checkbox(key=f"cfg_method.{method}").uncheck()
    at.checkbox(key="cfg_method.retrain").check().run()
    at.switch_page("views/run.py").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, messages(at)
    table = at.dataframe[-1].value
    assert list(table["method"]) == ["original", "retrain (gold reference)"]
    assert list(table["data read"]) == ["–", "retrains on D_r"] and list(table["reached target"]) == ["–", "–"]
    assert table["avg gap"][1] == 0.0


WARMED_VIEWS = ("affinity_view", "per_class_accuracy", "prediction_matrices", "layer_cka", "embedding_view",
                "gradcam_view", "retrieval_view")
"""The library calls behind the analysis pages' default views (their names in ``app/cached.py``)."""


@pytest.mark.slow
def test_the_analysis_pages_default_views_are_made_in_the_background_after_a_run(tmp_path, monkeypatch) -> None:
    """After a run, the background thread makes every analysis page's default view: visiting the
    pages then computes none (each library call behind them fails if it is made again)."""
    import sys
    import threading

    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    at = open_app()
    short_settings(at)
    at.switch_page("views/run.py").run()
    at.button[0].click().run()
    assert any("Finished" in text for text in messages(at)["success"]), messages(at)
    for thread in [t for t in threading.enumerate() if t.name.startswith("views-")]:
        thread.join(timeout=120)
        assert not thread.is_alive(), "the background views did not finish"
    cached = sys.modules["cached"]  # the app's module, as the pages import it

    def made_again(*_args, **_kwargs):
        raise AssertionError("a page computed a default view that the background thread had made")

    for name in WARMED_VIEWS:
        monkeypatch.setattr(cached, name, made_again)
    for page in ("structure", "changes", "embedding", "gradcam", "retrieval"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception and not at.error, (page, messages(at))
