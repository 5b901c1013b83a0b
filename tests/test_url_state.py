"""Shareable state: the Setup choices in the page's address (encoded, decoded, checked, restored by
the dashboard), each figure's PNG/SVG downloads and a run's figures as one zip."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import plotly.graph_objects as go
import pytest

from stakes_core.analysis import AnalysisError
from stakes_core.anchors import shipped_descriptions
from stakes_core.anchors.encoders import list_encoder_examples
from stakes_core.anchors.variants import ANCHOR_SOURCES
from stakes_core.figures import export
from stakes_core.lab.url_state import SETTINGS, UrlChoices, decode, encode, preset_hyperparameters
from stakes_core.methods import list_methods
from stakes_core.run.config import STOP_TARGETS
from stakes_core.run.presets import list_presets
from tests.helpers import save_short_digits_run

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest

APP = Path(__file__).resolve().parent.parent / "app"
CHOICES = UrlChoices(
    presets=list_presets(), methods=list_methods(), encoders=list_encoder_examples(),
    descriptions=shipped_descriptions(), anchor_sources=list(ANCHOR_SOURCES), stop_targets=list(STOP_TARGETS),
    max_k=128, max_seed=10_000, limits={"max_epochs": 101, "n_adv": 50},
)
SHARED = {
    "preset": "cifar10", "k": 8, "seed": 3, "methods": ["neggrad", "structguard"], "anchors": "rotated",
    "encoder": "minilm", "descriptions": "digits", "stop_at": "retrain", "scratch": True,
    "hyperparameters": {"neggrad.max_epochs": 7, "structguard.lr": 0.5, "structguard.target_rule": "semantic"},
}


def test_settings_survive_the_round_trip_through_the_query_string() -> None:
    params = encode(SHARED)
    assert all(isinstance(value, str) for value in params.values())
    assert params["k"] == "8" and params["methods"] == "neggrad,structguard" and params["scratch"] == "true"
    assert params["structguard.lr"] == "0.5" and params["structguard.target_rule"] == "semantic"
    decoded = decode(params, CHOICES)
    assert decoded.settings == SHARED and decoded.ignored == [] and decoded.notice() is None


def test_only_hyperparameters_that_differ_from_the_preset_enter_the_link() -> None:
    preset = {f"structguard.{name}": value for name, value in preset_hyperparameters("digits", "structguard").items()}
    settings = {**SHARED, "preset": "digits", "hyperparameters": {**preset, "structguard.cr_weight": 0.25}}
    params = encode(settings)
    assert [name for name in params if name not in SETTINGS] == ["structguard.cr_weight"]
    assert decode(params, CHOICES).settings["hyperparameters"] == {"structguard.cr_weight": 0.25}
    assert "methods" not in encode({**SHARED, "methods": []})  # nothing chosen: the default methods on opening


@pytest.mark.parametrize(
    "name, value",
    [("k", "abc"), ("k", "0"), ("k", "129"), ("k", "2.5"), ("seed", "-3"), ("seed", "10001"), ("preset", "mnist"),
     ("methods", "neggrad,bogus"), ("methods", ","), ("anchors", "nope"), ("encoder", "clip:ViT-H-14/laion"),
     ("descriptions", "/etc/passwd"), ("stop_at", "never"), ("scratch", "yes"), ("structguard.lr", "-1"),
     ("structguard.lr", "nan"), ("structguard.max_epochs", "500"), ("adv.n_adv", "51"),
     ("structguard.target_rule", "bogus"), ("structguard.importance", "authors"), ("bogus.lr", "0.1"),
     ("colour", "red")],
)
def test_a_parameter_that_cannot_be_used_is_ignored_and_named(name: str, value: str) -> None:
    params = {**encode(SHARED), name: value}
    decoded = decode(params, CHOICES)
    assert len(decoded.ignored) == 1 and decoded.ignored[0].startswith(name)
    assert name in (decoded.notice() or "")
    expected = decode(encode(SHARED), CHOICES).settings  # the rest of the link still counts
    expected.pop(name, None)
    expected["hyperparameters"].pop(name, None)
    assert decoded.settings == expected


def open_setup(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(APP / "main.py"), default_timeout=300)
    at.query_params.update(params)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_a_link_opens_setup_with_its_settings_and_the_address_follows_changes() -> None:
    at = open_setup({"k": "8", "seed": "3", "methods": "neggrad,structguard", "anchors": "rotated",
                     "structguard.lr": "0.5"})
    assert not at.warning and not at.error, [m.value for m in (*at.warning, *at.error)]
    assert at.number_input(key="cfg_k").value == 8 and at.number_input(key="cfg_seed").value == 3
    assert {c.key.removeprefix("cfg_method."): c.value for c in at.checkbox if c.value} == {"neggrad": True,
                                                                                             "structguard": True}
    assert at.radio(key="cfg_anchor_source").value == "rotated"
    assert at.number_input(key="cfg_hp.structguard.lr").value == 0.5
    assert any("8 images to forget" in h.value for h in at.subheader)
    at.number_input(key="cfg_k").set_value(5).run()
    assert at.query_params["k"] == "5" and at.query_params["structguard.lr"] == "0.5"
    assert at.query_params["methods"] == "neggrad,structguard"


@pytest.mark.slow
def test_a_malformed_link_warns_once_and_opens_the_defaults() -> None:
    at = open_setup({"k": "abc", "seed": "-3", "preset": "mnist", "methods": "neggrad,bogus", "colour": "red"})
    assert len(at.warning) == 1
    assert all(part in at.warning[0].value for part in ("k=abc", "seed=-3", "preset=mnist", "methods=", "colour"))
    assert at.selectbox(key="cfg_preset").value == "digits" and at.number_input(key="cfg_k").value == 16
    assert at.number_input(key="cfg_seed").value == 0
    assert {c.key.removeprefix("cfg_method.") for c in at.checkbox if c.value} == {"neggrad", "adv", "l2ul",
                                                                                    "structguard"}
    assert "colour" not in at.query_params and at.query_params["k"] == "16"  # the address now holds what is used
    at.run()
    assert not at.warning  # said once


FIGURE_SCRIPT = """
import sys
sys.path.insert(0, {app!r})
import plotly.graph_objects as go
import widgets

widgets.figure(go.Figure(go.Bar(x=[1], y=[2])), "bars")
"""


@pytest.mark.parametrize("reason", ["ValueError: Image export using the 'kaleido' engine requires kaleido", None])
def test_a_figure_offers_png_and_svg_or_says_how_to_get_them(monkeypatch, reason: str | None) -> None:
    monkeypatch.setattr(export, "static_export_reason", lambda: reason)
    at = AppTest.from_string(FIGURE_SCRIPT.format(app=str(APP)), default_timeout=60)
    at.run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    buttons = at.get("download_button")
    if reason:
        assert not buttons and len(at.caption) == 1 and "pip install kaleido" in at.caption[0].value
    else:
        assert [b.label for b in at.download_button] == ["PNG", "SVG"] and not at.caption


ZIP_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {app!r})
import widgets

widgets.figures_zip_button(Path({run!r}))
"""


def test_the_zip_button_draws_then_offers_the_zip_or_says_what_failed(monkeypatch, tmp_path) -> None:
    drawn = []

    def zipped(run_dir: Path) -> tuple[bytes, list[str]]:
        drawn.append(run_dir)
        if run_dir.name == "broken":
            raise AnalysisError(f"no run directory (with summary.json) under {run_dir}")
        return b"PK", ["static export unavailable (no Chrome)"]

    monkeypatch.setattr(export, "figures_zip", zipped)
    for name in ("seed0", "broken"):
        at = AppTest.from_string(ZIP_SCRIPT.format(app=str(APP), run=str(tmp_path / name)), default_timeout=60)
        at.run()
        assert not at.download_button and not drawn  # nothing is drawn before the click
        at.button[0].click().run()
        assert not at.exception and drawn == [tmp_path / name]
        if name == "broken":
            assert not at.download_button and "no run directory" in at.error[0].value
        else:
            assert at.download_button[0].label == "Download the figures (zip)"
            assert "no Chrome" in at.caption[0].value
            at.run()  # the zip stays offered on the next page run, with no second drawing
            assert len(at.download_button) == 1 and len(drawn) == 1
        drawn.clear()


def test_the_static_export_check_reports_why_it_cannot_draw(monkeypatch) -> None:
    def no_browser(*_args, **_kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.\nmore detail")

    export.static_export_reason.cache_clear()
    monkeypatch.setattr(go.Figure, "to_image", no_browser)
    try:
        assert export.static_export_reason() == "RuntimeError: Kaleido requires Google Chrome to be installed."
    finally:
        export.static_export_reason.cache_clear()
    with pytest.raises(ValueError, match="pdf"):
        export.static_image(go.Figure(), "pdf")


@pytest.mark.slow
def test_a_runs_figures_come_as_one_zip(tmp_path, monkeypatch) -> None:
    def no_browser(*_args, **_kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr("plotly.io.write_images", no_browser)  # HTML only, as where kaleido cannot draw
    run_dir = save_short_digits_run(tmp_path)
    data, notes = export.figures_zip(run_dir, embedding="pca")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    root = f"{run_dir.name}-figures/"
    assert all(name.startswith(root) for name in names)
    for figure in ("collapse_curves", "collapse_vs_tradeoff", "affinity_structguard", "per_class_accuracy", "gradcam"):
        assert f"{root}{figure}.html" in names, figure
    assert {f"{root}plotly.min.js", f"{root}analysis.json"} <= set(names)  # the HTML opens offline
    assert not [name for name in names if name.endswith(".png")] and any("Chrome" in note for note in notes)
