"""Where the model changed: per-class accuracy and prediction matrices of a saved run, and
their figures. Each check is a sum or a count that a wrong implementation would break."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from stakes_core.analysis import AnalysisError, load_run
from stakes_core.analysis.changes import (
    SPLITS,
    ClassAccuracy,
    PerClassAccuracy,
    PredictionMatrices,
    per_class_accuracy,
    prediction_matrices,
    prediction_matrix,
    split_data,
)
from stakes_core.figures.changes import per_class_accuracy_figure, prediction_matrices_figure
from stakes_core.figures.registry import register_figure
from stakes_core.figures.report import write_report
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import accuracy
from tests.helpers import SHORT_RUN_METHODS, save_short_digits_run

METHODS = SHORT_RUN_METHODS


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A short digits run (k=4, two epochs per method) saved with its models and loaded back."""
    return load_run(save_short_digits_run(tmp_path_factory.mktemp("run")))


class _Fixed(torch.nn.Module):
    """A classifier that answers a fixed class per image (the image's first pixel)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(images.flatten(1)[:, 0].round().long(), 3).float()


def test_prediction_matrix_counts_true_against_predicted() -> None:
    predicted = torch.tensor([0, 1, 1, 2, 2, 0])
    labels = torch.tensor([0, 0, 1, 2, 1, 0])
    matrix = prediction_matrix(_Fixed(), predicted.float().view(-1, 1, 1, 1), labels, 3)
    assert matrix.dtype == torch.int64
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


@pytest.mark.slow
def test_per_class_accuracy_weighted_by_counts_is_the_split_accuracy(loaded) -> None:
    data = per_class_accuracy(loaded)
    assert data.models == ("original", *METHODS)
    forget_labels = {int(loaded.dataset.train_labels[i]) for i in loaded.forget_indices}
    assert set(data.forget_classes) == forget_labels
    for split in SPLITS:
        images, labels = split_data(loaded, split)
        assert sum(r.count for r in data.of("original", split)) == len(labels)
        for model in data.models:
            rows = data.of(model, split)
            assert [r.class_index for r in rows] == list(range(loaded.dataset.num_classes))
            weighted = sum(r.accuracy * r.count for r in rows if r.count) / sum(r.count for r in rows)
            with eval_mode(loaded.model(model)):
                expected = accuracy(loaded.model(model), images, labels, device=loaded.device)
            assert weighted == pytest.approx(expected, abs=1e-4), (model, split)
            assert data.overall(model, split) == pytest.approx(expected, abs=1e-4)
    empty = [r for r in data.of("original", "forget") if r.count == 0]
    assert empty and all(math.isnan(r.accuracy) for r in empty)  # k=4 of 10 classes: absent classes are NaN, not 0
    assert len(data.rows) == len(data.models) * len(SPLITS) * loaded.dataset.num_classes


@pytest.mark.slow
def test_prediction_matrices_keep_every_image(loaded) -> None:
    found = prediction_matrices(loaded)
    assert list(found) == METHODS
    for method, matrices in found.items():
        assert [m.split for m in matrices] == ["forget", "test"]
        for m in matrices:
            _, labels = split_data(loaded, m.split)
            class_counts = torch.bincount(labels.long(), minlength=loaded.dataset.num_classes)
            for matrix in (m.before, m.after):
                assert torch.equal(matrix.sum(1), class_counts)
                assert int(matrix.sum()) == len(labels)
            assert torch.equal(m.difference.sum(1), torch.zeros_like(class_counts))
    assert torch.equal(found["neggrad"][0].before, found["structguard"][0].before)  # one original


@pytest.mark.slow
def test_an_unknown_method_is_a_one_line_error(loaded) -> None:
    for analysis in (per_class_accuracy, prediction_matrices):
        with pytest.raises(AnalysisError) as error:
            analysis(loaded, ["relabel"])
        assert "relabel" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(AnalysisError, match="unknown split"):
        split_data(loaded, "train")


def _hand_made() -> tuple[PerClassAccuracy, list[PredictionMatrices]]:
    classes = ("a", "b", "c")
    rows = tuple(
        ClassAccuracy(model, split, c, correct, 4 if split != "forget" or c == 1 else 0)
        for model, correct in (("original", 4), ("neggrad", 1))
        for split in SPLITS
        for c in range(3)
    )
    fixed = [ClassAccuracy(r.model, r.split, r.class_index, min(r.correct, r.count), r.count) for r in rows]
    before = torch.tensor([[3, 1, 0], [0, 4, 0], [0, 0, 2]])
    after = torch.tensor([[3, 0, 1], [4, 0, 0], [0, 1, 1]])
    matrices = [PredictionMatrices("neggrad", split, classes, before, after) for split in ("forget", "test")]
    return PerClassAccuracy(("original", "neggrad"), classes, (1,), tuple(fixed)), matrices


def test_per_class_figure_marks_the_forget_classes() -> None:
    data, _ = _hand_made()
    figure = per_class_accuracy_figure(data)
    assert len(figure.data) == 2 * len(SPLITS)
    assert {t.name for t in figure.data} == {"original", "NegGrad"}
    assert list(figure.layout.xaxis.ticktext) == ["a", "<b>b*</b>", "c"]
    assert "forget set's classes" in figure.layout.title.subtitle.text and ": b;" in figure.layout.title.subtitle.text
    forget_panel = figure.data[2]  # the forget split's original: only class b has images
    assert np.isnan(forget_panel.y[0]) and forget_panel.y[1] == 100.0
    assert len(figure.layout.shapes) == len(SPLITS)  # one shaded band per panel


def test_prediction_figure_counts_as_text_and_a_centred_difference() -> None:
    _, matrices = _hand_made()
    figure = prediction_matrices_figure(matrices)
    heatmaps = [t for t in figure.data if t.type == "heatmap"]
    assert len(heatmaps) == 6
    difference = heatmaps[2]
    assert difference.zmid == 0 and difference.zmin == -difference.zmax == -4
    assert difference.text.tolist() == (matrices[0].after - matrices[0].before).tolist()
    assert heatmaps[0].texttemplate == "%{text}"
    assert figure.layout.xaxis.title.text == "predicted class" and figure.layout.yaxis.title.text == "true class"


@pytest.mark.parametrize("name", ["per_class_accuracy", "predictions_neggrad"])
def test_the_new_figure_names_are_taken(name: str) -> None:
    with pytest.raises(ConfigError, match="taken by the report's own figures"):
        register_figure(name, lambda run: go.Figure())


@pytest.mark.slow
def test_stakes_figures_writes_the_new_figures(loaded, tmp_path) -> None:
    report = write_report(loaded.directory, tmp_path, format="html", embedding="pca", progress=False)
    for name in ("per_class_accuracy", "layer_cka", *(f"predictions_{m}" for m in METHODS)):
        assert (tmp_path / f"{name}.html").stat().st_size > 1000, name
    assert {"per-class accuracy", "prediction matrices", "layer CKA"} <= set(report.seconds)
