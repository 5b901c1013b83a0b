"""Figure builders, export and ``stakes figures``: every figure of a saved run is written."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image as PILImage

from stakes_core.analysis import AffinityView, CollapseCurve, EmbeddingView, Instances, TradeoffPoint
from stakes_core.analysis.gradcam import GradCAMView
from stakes_core.analysis.privacy import PrivacyView
from stakes_core.analysis.retrieval import RetrievalView
from stakes_core.cli import main
from stakes_core.figures import (
    StaticExportUnavailable,
    affinity_heatmaps_figure,
    anchor_similarity_figure,
    collapse_curves_figure,
    collapse_tradeoff_figure,
    embedding_figure,
    privacy_figure,
    retrieval_grid_figure,
    retrieval_metrics_figure,
    save_figures,
    selected_instances,
)
from stakes_core.figures.grids import framed, gradcam_grid_figure, heat_colors, overlay, to_rgb
from stakes_core.figures.style import method_color
from stakes_core.run.config import experiment_config
from stakes_core.run.experiment import run_experiment

CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome") or shutil.which("chrome")


def test_curves_figure_has_one_legend_entry_per_method() -> None:
    curves = [
        CollapseCurve(m, 4, s, [0, 1, 2], [0.0, 0.1, 0.2], [100.0, 50.0, 0.0]) for s in (0, 1) for m in ("adv", "l2ul")
    ]
    figure = collapse_curves_figure(curves)
    assert len(figure.data) == 4 and sum(t.showlegend for t in figure.data) == 2
    # methods stay apart when their curves overlap: each its own dash and marker
    assert figure.data[0].line.dash != figure.data[1].line.dash
    assert figure.data[0].marker.symbol != figure.data[1].marker.symbol and "markers" in figure.data[0].mode
    assert figure.data[0].line.color == method_color("adv") and "unlearning step" in figure.layout.xaxis.title.text


def test_tradeoff_figure_reports_spearman() -> None:
    points = [TradeoffPoint("adv", 4, s, 0.1 * s, 0.1 * s, 90 - s, 80.0) for s in range(4)]
    figure = collapse_tradeoff_figure(points)
    assert "ρ = -1.00" in figure.layout.title.subtitle.text
    with pytest.raises(ValueError, match="key"):
        collapse_tradeoff_figure(points, key="loss")


def test_heatmaps_figure_shows_before_after_and_difference() -> None:
    original = torch.tensor([[0.5, 0.1], [0.2, 0.4]])
    view = AffinityView("structguard", "backbone", Instances(("forget", "test"), (3, 7)), [0, 1], ["a", "b"],
                        original, original + 0.1)
    figure = affinity_heatmaps_figure(view)
    heatmaps = [t for t in figure.data if isinstance(t, go.Heatmap)]
    assert [len(t.z) for t in heatmaps] == [2, 2, 2] and all(t.showscale is not False for t in heatmaps)
    assert [t.colorbar.title.text.split("<br>")[0] for t in heatmaps] == ["S_ori", "S_unl", "change"]
    assert np.allclose(heatmaps[2].z, 0.1) and heatmaps[0].y[0] == "forgotten #3, class a"
    own = [t for t in figure.data if t.name == "own-class anchor"]
    assert len(own) == 3 and list(own[0].x) == ["a", "b"]  # each row's own class is marked
    assert "averaged over these 2 images" in figure.layout.title.subtitle.text
    assert figure.layout.yaxis.title.text.startswith("image") and figure.layout.xaxis.title.text == "anchor (class)"
    similarity = anchor_similarity_figure(torch.eye(2), ["a", "b"], "random:8")
    assert "random:8" in similarity.layout.title.text


def test_embedding_figure_uses_shared_axes_and_marks_forgotten() -> None:
    instances = Instances(("forget", "retained", "test"), (1, 2, 3))
    layout = np.arange(6, dtype=np.float32).reshape(3, 2)
    view = EmbeddingView("adv", "umap", instances, [0, 0, 1], ["a", "b"], layout, layout + 1, 0.1, False)
    figure = embedding_figure(view)
    points = [t for t in figure.data if t.customdata is not None]
    assert {t.marker.symbol for t in points} == {"x", "circle", "diamond"} and len(points) == 6
    legend = [t.name for t in figure.data if t.showlegend is not False]
    assert legend == ["class a", "class b", "forgotten (shape)", "retained (shape)", "test (shape)"]
    assert figure.layout.xaxis2.matches == "x"
    # a selection event (as Streamlit returns it) maps back to the instances, kinds included
    points = [{"customdata": list(trace.customdata[0])} for trace in points]
    assert selected_instances(points + [{"x": 1}]) == [("forget", 1), ("retained", 2), ("test", 3)]


def test_metric_figures() -> None:
    retrieval = RetrievalView(
        "backbone", {"original": {"test": {"R@1": 90.0, "mAP": 70.0}}, "adv": {"test": {"R@1": 80.0, "mAP": 60.0}}},
        ["test"], [0], [1], [5, 6], [1, 0], {"original": [[5, 6]], "adv": [[6, 5]]}, 0.0,
    )
    figure = retrieval_metrics_figure(retrieval)
    assert [t.name for t in figure.data] == ["original", "Adv"] and list(figure.data[1].y) == [80.0, 60.0]
    view = PrivacyView("confidence", {"original": 10.0, "adv": 60.0}, {"original": 52.0, "adv": 55.0}, 100, 0.0)
    privacy = privacy_figure(view)
    assert list(privacy.data[0].y) == [10.0, 60.0] and list(privacy.data[1].y) == [52.0, 55.0]
    images = {("test", 0): np.zeros((1, 4, 4)), ("train", 5): np.ones((1, 4, 4)), ("train", 6): np.ones((1, 4, 4))}
    grid = retrieval_grid_figure(retrieval, images, [0], ["a", "b"])
    assert sum(isinstance(t, go.Image) for t in grid.data) == 2 * 3
    first_hit = pixels(grid.data[1])  # original's rank 1 is gallery 5, of the query's class 1: green frame
    assert tuple(first_hit[0][0]) == (44, 160, 44)
    assert tuple(pixels(grid.data[0])[0][0]) == (90, 90, 90)  # not judged: grey, not a legend colour
    captions = [a.text for a in grid.layout.annotations]
    assert "true b" in captions and "class b" in captions and "class a" in captions  # every image says its class
    retrieval.query_predictions = {"original": [1], "adv": [0]}
    retrieval.top_predictions = {"original": [[1, 0]], "adv": [[1, 1]]}
    captions = [a.text for a in retrieval_grid_figure(retrieval, images, [0], ["a", "b"]).layout.annotations]
    assert captions.count("true b · pred b") == 1 and captions.count("true b · pred a") == 1  # per model row
    assert "class b · pred b" in captions and "class a · pred b" in captions


def pixels(trace: go.Image) -> np.ndarray:
    """The ``H × W × 3`` pixels of a grid cell, decoded from its PNG data URI."""
    prefix = "data:image/png;base64,"
    assert trace.source.startswith(prefix)
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(trace.source[len(prefix):]))).convert("RGB"))


def test_gradcam_grid_uses_each_colour_for_one_thing_and_has_a_scale() -> None:
    instances = Instances(("forget", "test"), (3, 7))
    view = GradCAMView(instances, np.zeros((2, 1, 4, 4)), [0, 1], ["a", "b"],
                       {"original": np.zeros((2, 4, 4)), "adv": np.ones((2, 4, 4))},
                       {"original": [0, 1], "adv": [1, 1]}, "label", "layer4", 0.0)
    figure = gradcam_grid_figure(view)
    images = [t for t in figure.data if isinstance(t, go.Image)]
    assert tuple(pixels(images[0])[0][0]) == (90, 90, 90)  # the forgotten input: grey, not red
    assert tuple(pixels(images[1])[0][0]) == (44, 160, 44) and tuple(pixels(images[2])[0][0]) == (214, 39, 40)
    captions = [(a.text, a.font.color) for a in figure.layout.annotations if a.text.startswith(("true", "pred"))]
    grey, green, red = "rgb(90,90,90)", "rgb(44,160,44)", "rgb(214,39,40)"
    assert captions == [("true a", grey), ("pred a", green), ("pred b", red),
                        ("true b", grey), ("pred b", green), ("pred b", green)]
    scale = [t for t in figure.data if isinstance(t, go.Scatter)]
    assert len(scale) == 1 and scale[0].marker.showscale and "Grad-CAM" in scale[0].marker.colorbar.title.text


def test_image_helpers() -> None:
    gray = np.full((1, 2, 2), 0.5)
    rgb = to_rgb(gray)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8 and (rgb == 128).all()
    assert heat_colors(np.array([0.0, 1.0])).shape == (2, 3)
    assert overlay(rgb, np.zeros((2, 2)), alpha=0.0).tolist() == rgb.tolist()
    big = framed(rgb, (255, 0, 0), size=8, width=1)
    assert big.shape == (8, 8, 3) and tuple(big[0, 0]) == (255, 0, 0) and tuple(big[4, 4]) == (128, 128, 128)


def test_save_figures_html_and_fallback(tmp_path, monkeypatch) -> None:
    figures = {"one": go.Figure(go.Scatter(x=[1], y=[2]))}
    files, reason = save_figures(figures, tmp_path, "html")
    assert [f.name for f in files] == ["one.html"] and reason is None and (tmp_path / "plotly.min.js").is_file()

    def no_browser(*_args, **_kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr("plotly.io.write_images", no_browser)
    files, reason = save_figures(figures, tmp_path / "auto", "auto")
    assert [f.name for f in files] == ["one.html"] and "Chrome" in reason
    with pytest.raises(StaticExportUnavailable, match="chromium"):
        save_figures(figures, tmp_path / "png", "png")
    with pytest.raises(ValueError, match="pdf"):
        save_figures(figures, tmp_path, "pdf")


@pytest.mark.skipif(CHROMIUM is None, reason="static export needs Chromium (.ci/run installs it)")
def test_png_export_with_chromium(tmp_path) -> None:
    tall = go.Figure(go.Bar(x=[1], y=[2]), layout={"width": 300, "height": 900})
    files, reason = save_figures({"one": go.Figure(go.Bar(x=[1], y=[2])), "tall": tall}, tmp_path, "png", scale=1)
    assert reason is None and (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", (tmp_path / "tall.png").read_bytes()[16:24])  # the PNG header's size
    assert (width, height) == (300, 900)  # a figure's own size, not kaleido's default 700 × 500


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    config = experiment_config(
        "digits", k=4, seed=1, methods=["l2ul", "structguard"], device="cpu",
        overrides=["l2ul.max_epochs=2", "structguard.max_epochs=2", "structguard.stop_from_epoch=0"],
    )
    root = tmp_path_factory.mktemp("runs")
    run_experiment(config, progress=False).save(root / "digits" / "k4" / "seed1")
    return root


@pytest.mark.slow
def test_stakes_figures_writes_every_figure(small_run, tmp_path, capsys) -> None:
    run_dir = small_run / "digits" / "k4" / "seed1"
    out = tmp_path / "figures"
    assert main(["figures", str(run_dir), "--out", str(out), "--quiet"]) == 0
    expected = [
        "collapse_curves", "collapse_curves_projector", "collapse_vs_tradeoff", "anchor_similarity", "affinity_l2ul",
        "affinity_structguard", "embedding_l2ul", "embedding_structguard", "gradcam", "retrieval_metrics",
        "retrieval_topk", "privacy", "loss_attack", "anchor_agreement_features", "anchor_agreement_confusion",
    ]
    for name in expected:
        assert (out / f"{name}.html").stat().st_size > 1000, name
        if CHROMIUM:
            assert (out / f"{name}.png").is_file(), name
    analysis = json.loads((out / "analysis.json").read_text())
    assert {"umap", "gradcam", "retrieval", "privacy"} <= {k.split()[0] for k in analysis["seconds"]}
    assert {row["model"] for row in analysis["retrieval"]} == {"original", "l2ul", "structguard"}
    assert set(analysis["loss_attack"]) == {"original", "l2ul", "structguard"}
    assert all(0 <= attack["accuracy"] <= 1 for attack in analysis["loss_attack"].values())
    assert set(analysis["anchor_agreement"]) == {"features", "confusion"}
    assert all(-1 <= a["rho"] <= 1 and 0 < a["p_value"] <= 1 for a in analysis["anchor_agreement"].values())
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_stakes_figures_on_a_folder_of_runs(small_run, tmp_path) -> None:
    out = tmp_path / "all"
    assert main(["figures", str(small_run), "--out", str(out), "--format", "html", "--embedding", "pca",
                 "--methods", "structguard", "--quiet"]) == 0
    assert (out / "collapse_curves.html").is_file()
    assert (out / "digits" / "k4" / "seed1" / "gradcam.html").is_file()
    assert not (out / "digits" / "k4" / "seed1" / "affinity_l2ul.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--methods", "adv"], "adv were not run"),
        (["--forget", "0"], "not in this run's forget set"),
        (["--test", "99999"], "does not exist"),
        (["--format", "html", "--embedding", "pca", "--methods", "l2ul", "--retained", "-1"], "does not exist"),
    ],
)
def test_stakes_figures_bad_input(small_run, tmp_path, capsys, arguments, message) -> None:
    run_dir = small_run / "digits" / "k4" / "seed1"
    assert main(["figures", str(run_dir), "--out", str(tmp_path), "--quiet", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("stakes: error:") and message in error and len(error.splitlines()) == 1


def test_stakes_figures_needs_a_run(tmp_path, capsys) -> None:
    assert main(["figures", str(tmp_path), "--quiet"]) == 2
    assert "no run directory" in capsys.readouterr().err


def test_share_axes_gives_side_by_side_figures_one_scale() -> None:
    from stakes_core.figures.curves import share_axes

    left = go.Figure(go.Scatter(x=[0, 10], y=[0.0, 0.4]))
    right = go.Figure(go.Scatter(x=[0, 60], y=[0.0, 0.1, float("nan")]))
    share_axes([left, right], padding=0.0)
    assert list(left.layout.xaxis.range) == list(right.layout.xaxis.range) == [0, 60]
    assert list(left.layout.yaxis.range) == list(right.layout.yaxis.range) == [0.0, 0.4]
