"""Layer-wise linear CKA: the measure's invariances checked against a second formula, the stage
hooks, the run-level view and its figure."""

from __future__ import annotations

import copy
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from stakes_core.analysis import AnalysisError, load_run
from stakes_core.analysis.cka import (
    CKA_SPLITS,
    STAGES,
    LayerCKA,
    StageCKA,
    layer_cka,
    linear_cka,
    recorded_stages,
    stage_features,
    stage_modules,
)
from stakes_core.figures.cka import layer_cka_figure
from stakes_core.figures.registry import register_figure
from stakes_core.infra.errors import ConfigError
from stakes_core.methods.projector import ProjectedClassifier, Projector
from tests.helpers import SHORT_RUN_METHODS, save_short_digits_run, tiny_dataset, tiny_model

METHODS = SHORT_RUN_METHODS


def _random(rows: int, columns: int, seed: int) -> torch.Tensor:
    """Float64, so that transforming the inputs adds no rounding of its own."""
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _orthogonal(size: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(_random(size, size, seed))[0]


def _gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """CKA in its kernel form, tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with K = XXᵀ, L = YYᵀ."""
    n = x.shape[0]
    centring = np.eye(n) - np.ones((n, n)) / n
    kx, ky = centring @ x @ x.T @ centring, centring @ y @ y.T @ centring
    return float(np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))


def test_cka_matches_the_kernel_form_and_ignores_offsets() -> None:
    x, y = _random(40, 6, 0), _random(40, 9, 1) + 0.5 * _random(40, 6, 0) @ _random(6, 9, 2)
    value = linear_cka(x, y)
    assert value == pytest.approx(_gram_cka(x.numpy(), y.numpy()), rel=1e-10)
    assert 0.1 < value < 0.9  # a partly shared representation: neither extreme
    assert linear_cka(x + 7.0, y - 3.0) == pytest.approx(value, rel=1e-10)  # features are centred


def test_cka_of_identical_activations_is_one() -> None:
    x = _random(50, 8, 3)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_isotropic_scaling() -> None:
    x, y = _random(60, 7, 4), _random(60, 5, 5) + _random(60, 7, 4)[:, :5]
    value = linear_cka(x, y)
    assert linear_cka(x @ _orthogonal(7, 6), y) == pytest.approx(value, rel=1e-10)
    assert linear_cka(x, y @ _orthogonal(5, 7)) == pytest.approx(value, rel=1e-10)
    assert linear_cka(x, x @ _orthogonal(7, 8)) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(3.5 * x, 0.01 * y) == pytest.approx(value, rel=1e-10)
    anisotropic = torch.tensor([1.0, 10.0, 1.0, 1.0, 1.0])
    assert linear_cka(x, y * anisotropic) != pytest.approx(value, rel=1e-3)  # only isotropic scaling is ignored


def test_cka_is_symmetric_and_low_between_independent_matrices() -> None:
    x, y = _random(500, 10, 9), _random(500, 12, 10)
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x), rel=1e-12)
    assert 0.0 <= linear_cka(x, y) < 0.1  # about sqrt(10·12)/500 for independent Gaussians


def test_cka_is_computed_in_float64() -> None:
    x = _random(30, 4, 11)
    assert linear_cka(x + 1e8, x) == pytest.approx(1.0, abs=1e-9)  # in float32, 1e8 + x keeps no trace of x


def test_cka_of_a_constant_side_is_nan() -> None:
    assert math.isnan(linear_cka(torch.ones(10, 3), _random(10, 3, 13)))


@pytest.mark.parametrize(("x", "y", "says"), [
    (torch.zeros(5, 2), torch.zeros(6, 2), "same images"),
    (torch.zeros(1, 2), torch.zeros(1, 3), "at least 2 images"),
    (torch.zeros(5), torch.zeros(5, 2), "n × d matrices"),
])
def test_bad_activations_are_a_one_line_error(x: torch.Tensor, y: torch.Tensor, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as error:
        linear_cka(x, y)
    assert "\n" not in str(error.value)


def test_identical_models_give_one_at_every_stage_and_different_ones_do_not() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset, width=4, seed=0)
    images = dataset.test_images
    before = stage_features(model, images, batch_size=7)
    same = stage_features(copy.deepcopy(model), images)
    other = stage_features(tiny_model(dataset, width=4, seed=1), images)
    assert list(before) == list(STAGES)
    assert [before[s].shape[1] for s in STAGES] == [4, 4, 8, 16, 32]
    assert all(before[s].shape[0] == len(images) for s in STAGES)
    assert all(linear_cka(before[s], same[s]) == pytest.approx(1.0, abs=1e-9) for s in STAGES)
    assert min(linear_cka(before[s], other[s]) for s in STAGES) < 0.99


def test_stage_features_are_the_pooled_stage_outputs() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset, width=2).eval()
    images = dataset.test_images[:6]
    with torch.no_grad():
        stem = model.stem(model.normalize(images.float() / 255))
        layer1 = model.layer1(stem)
    found = stage_features(model, images)
    assert torch.allclose(found["stem"], stem.mean((2, 3)), atol=1e-6)
    assert torch.allclose(found["layer1"], layer1.mean((2, 3)), atol=1e-6)


def _hook_counts(model: nn.Module) -> list[int]:
    return [len(module._forward_hooks) for module in stage_modules(model).values()]


def test_hooks_are_removed_after_use_and_after_a_failing_forward() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset)
    with recorded_stages(model) as recorded:
        assert _hook_counts(model) == [1] * len(STAGES)
        model(dataset.test_images[:3].float() / 255)
    assert _hook_counts(model) == [0] * len(STAGES)
    assert [len(recorded[s]) for s in STAGES] == [1] * len(STAGES)

    def broken(_x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("layer3 failed")

    model.layer3.forward = broken
    with pytest.raises(RuntimeError, match="layer3 failed"):
        stage_features(model, dataset.test_images[:3])
    assert _hook_counts(model) == [0] * len(STAGES)


def test_a_model_without_stages_is_a_one_line_error() -> None:
    with pytest.raises(ConfigError) as error:
        stage_modules(nn.Sequential(nn.Flatten(), nn.Linear(64, 4)))
    message = str(error.value)
    assert "\n" not in message and "Sequential" in message and all(s in message for s in STAGES)
    partial = tiny_model(tiny_dataset())
    del partial.layer4
    with pytest.raises(ConfigError, match="no ResNet stage layer4:"):
        stage_modules(partial)


def test_a_wrapped_backbone_is_looked_into() -> None:
    backbone = tiny_model(tiny_dataset())
    deployed = ProjectedClassifier(backbone, Projector(backbone.feature_dim, 8))
    assert stage_modules(deployed)["layer2"] is backbone.layer2


def _hand_made() -> LayerCKA:
    rows = tuple(
        StageCKA(method, split, stage, 1.0 - 0.1 * i * (m + 1))
        for m, method in enumerate(("neggrad", "structguard"))
        for split in CKA_SPLITS
        for i, stage in enumerate(STAGES)
    )
    return LayerCKA(("neggrad", "structguard"), STAGES, (("retain", 900), ("test", 300)), rows)


def test_figure_has_one_line_per_method_in_each_panel() -> None:
    data = _hand_made()
    figure = layer_cka_figure(data)
    assert len(figure.data) == 2 * len(CKA_SPLITS)
    assert [t.name for t in figure.data] == ["NegGrad", "StructGuard"] * 2
    assert [t.showlegend for t in figure.data] == [True, True, False, False]
    assert all(list(t.x) == list(STAGES) for t in figure.data)
    assert list(figure.data[1].y) == pytest.approx(data.of("structguard", "retain"))
    assert [a.text for a in figure.layout.annotations] == ["retained training images (900)", "test set (300)"]
    assert list(figure.layout.yaxis.range) == [0, 1.03]


def test_the_figure_name_is_taken() -> None:
    with pytest.raises(ConfigError, match="taken by the report's own figures"):
        register_figure("layer_cka", lambda run: go.Figure())


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A short digits run (k=4, two epochs per method) saved with its models and loaded back."""
    return load_run(save_short_digits_run(tmp_path_factory.mktemp("run")))


@pytest.mark.slow
def test_layer_cka_of_a_run_has_one_value_per_method_stage_and_split(loaded) -> None:
    data = layer_cka(loaded, max_images=300, seed=1)
    assert data.methods == tuple(METHODS) and data.stages == STAGES
    assert data.images == (("retain", 300), ("test", min(300, len(loaded.dataset.test_labels))))
    assert len(data.rows) == len(METHODS) * len(STAGES) * len(CKA_SPLITS)
    for method in METHODS:
        for split in CKA_SPLITS:
            values = data.of(method, split)
            assert len(values) == len(STAGES) and all(0.0 <= v <= 1.0 for v in values), (method, split)
    assert layer_cka(loaded, max_images=300, seed=1) == data  # the seeded sample is the same
    itself = layer_cka(loaded, ["original"], max_images=50)
    assert all(row.cka == pytest.approx(1.0, abs=1e-9) for row in itself.rows)


@pytest.mark.slow
def test_layer_cka_refuses_bad_requests(loaded) -> None:
    with pytest.raises(AnalysisError, match="relabel"):
        layer_cka(loaded, ["relabel"])
    with pytest.raises(ConfigError, match="at least 2 images"):
        layer_cka(loaded, max_images=1)
