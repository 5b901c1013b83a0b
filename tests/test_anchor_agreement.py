"""Do the stakes agree with the model? Spearman ρ between the anchor cosine matrix and the model's
class similarity, its Mantel permutation p-value, the model's two similarity matrices, the
figure, and the one-line errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_dataset, tiny_model
from scipy.stats import spearmanr

from stakes_core.analysis.anchor_agreement import (
    MODEL_VIEWS,
    anchor_agreement,
    anchor_model_agreement,
    model_class_similarity,
    soft_confusion,
)
from stakes_core.figures import register_figure
from stakes_core.figures.anchor_agreement import anchor_agreement_figure
from stakes_core.infra.errors import ConfigError

CENTRES = torch.randn(3, 32, generator=torch.Generator().manual_seed(0))


def clustered(noise_seed: int, classes: int = 12) -> torch.Tensor:
    """The cosine matrix of ``classes`` unit vectors in three groups (class ``c`` in group ``c % 3``)
    with seeded noise: two seeds give two views of the same structure."""
    noise = torch.randn(classes, 32, generator=torch.Generator().manual_seed(noise_seed))
    unit = torch.nn.functional.normalize(CENTRES[torch.arange(classes) % 3] + 0.7 * noise, dim=1)
    return unit @ unit.T


def test_a_matrix_agrees_with_itself() -> None:
    similarity = clustered(1)
    result = anchor_agreement(similarity, similarity, permutations=2000)
    assert result.rho == pytest.approx(1.0)
    assert result.p_value < 0.01 and result.n_pairs == 12 * 11 // 2 and result.permutations == 2000
    assert len(result.pairs) == len(result.anchor_entries) == len(result.model_entries) == result.n_pairs


def test_rho_is_spearmans_on_the_upper_triangle() -> None:
    anchors, model = clustered(1), clustered(2)
    model[0, 1] = model[1, 0] = model[2, 3] = model[3, 2] = model[4, 5]  # ties are ranked as scipy ranks them
    result = anchor_agreement(anchors, model, permutations=10)
    rows, columns = np.triu_indices(12, k=1)
    expected = spearmanr(anchors.numpy()[rows, columns], model.numpy()[rows, columns]).statistic
    assert result.rho == pytest.approx(expected, abs=1e-12)
    assert result.model_entries.tolist() == pytest.approx(model.numpy()[rows, columns].tolist())


def test_a_monotone_transform_changes_neither_rho_nor_p() -> None:
    anchors, model = clustered(1), clustered(2)
    plain = anchor_agreement(anchors, model, permutations=3000, seed=5)
    transformed = anchor_agreement(anchors, torch.exp(4 * model) - 7, permutations=3000, seed=5)
    assert transformed.rho == pytest.approx(plain.rho) and transformed.p_value == plain.p_value


def test_a_shuffling_of_one_matrix_destroys_the_agreement() -> None:
    anchors, model = clustered(1), clustered(2)
    agreeing = anchor_agreement(anchors, model)
    assert agreeing.rho > 0.5 and agreeing.p_value < 0.01  # the same three groups, seen with other noise
    order = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    shuffled = anchor_agreement(anchors, model[order][:, order])
    assert shuffled.rho < 0.3 and shuffled.p_value > 0.05


def test_the_p_value_is_a_reproducible_share_in_0_1() -> None:
    rng = np.random.default_rng(0)
    anchors, noise = clustered(1), rng.normal(size=(12, 12))
    unrelated = noise + noise.T
    first = anchor_agreement(anchors, unrelated, permutations=500, seed=3)
    assert 0 < first.p_value <= 1 and first.p_value * 501 == pytest.approx(round(first.p_value * 501))
    assert anchor_agreement(anchors, unrelated, permutations=500, seed=3).p_value == first.p_value
    reverse = anchor_agreement(anchors, -anchors, permutations=500)  # perfect disagreement: one-sided p = 1
    assert reverse.rho == pytest.approx(-1.0) and reverse.p_value == 1.0
    assert anchor_agreement(anchors, anchors, permutations=1).p_value in (0.5, 1.0)


def test_p_values_of_unrelated_matrices_spread_over_0_1() -> None:
    """Under the null (a matrix against a random relabelling of an unrelated one) p is about uniform."""
    anchors = clustered(1)
    p_values = []
    for seed in range(40):
        order = torch.randperm(12, generator=torch.Generator().manual_seed(seed))
        p_values.append(anchor_agreement(anchors, clustered(100 + seed)[order][:, order], permutations=300).p_value)
    assert 0.25 < np.mean(p_values) < 0.75 and np.mean(np.array(p_values) < 0.05) < 0.2


def test_the_model_similarities_of_a_tiny_model() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset)
    features = model_class_similarity(model, dataset.train_images, dataset.train_labels, dataset.num_classes)
    assert features.shape == (4, 4) and torch.allclose(features, features.T, atol=1e-6)
    assert torch.allclose(features.diagonal(), torch.ones(4), atol=1e-5)
    confusion = soft_confusion(model, dataset.test_images, dataset.test_labels, dataset.num_classes)
    assert confusion.shape == (4, 4) and torch.allclose(confusion.sum(1), torch.ones(4, dtype=torch.float64))
    anchors = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    results = anchor_model_agreement(anchors, model, dataset, permutations=100)
    assert list(results) == list(MODEL_VIEWS) == ["features", "confusion"]
    symmetrised = results["confusion"].model_matrix
    assert np.allclose(symmetrised, (confusion + confusion.T).numpy() / 2)
    assert all(-1 <= r.rho <= 1 and 0 < r.p_value <= 1 and r.n_pairs == 6 for r in results.values())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: anchor_model_agreement(torch.randn(3, 8), tiny_model(tiny_dataset()), tiny_dataset()),
         "the anchors have shape (3, 8) but the dataset has 4 classes"),
        (lambda: anchor_agreement(torch.eye(2), torch.eye(2)), "2 classes are too few for the permutation test"),
        (lambda: anchor_agreement(clustered(1), clustered(2), permutations=0), "permutations must be a whole number"),
        (lambda: anchor_agreement(clustered(1), clustered(2)[:11, :11]), "must cover the same classes"),
        (lambda: anchor_agreement(clustered(1), torch.randn(12, 12)), "the model similarity is not symmetric"),
        (lambda: anchor_agreement(torch.ones(5, 5), clustered(1)[:5, :5]), "the same for every class pair"),
        (lambda: anchor_agreement(torch.ones(5), torch.ones(5)), "must be a square class × class matrix"),
    ],
)
def test_bad_input_says_what_is_wrong_in_one_line(call, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        call()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_soft_confusion_needs_every_class() -> None:
    dataset = tiny_dataset()
    keep = dataset.test_labels != 2
    with pytest.raises(ValueError, match=r"none of class \[2\]"):
        soft_confusion(tiny_model(dataset), dataset.test_images[keep], dataset.test_labels[keep], 4)


@pytest.mark.parametrize("view", list(MODEL_VIEWS))
def test_the_figure_has_both_matrices_and_the_scatter(view: str) -> None:
    dataset = tiny_dataset()
    anchors = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    result = anchor_model_agreement(anchors, tiny_model(dataset), dataset, permutations=50)[view]
    figure = anchor_agreement_figure(result, dataset.classes, view, "random:8")
    assert [trace.type for trace in figure.data] == ["heatmap", "heatmap", "scatter"]
    assert len(figure.layout.annotations) == 3  # one title per panel
    for heatmap in figure.data[:2]:
        assert list(heatmap.x) == list(heatmap.y) == dataset.classes  # the same class order in both
        assert np.isnan(np.diagonal(np.array(heatmap.z, dtype=float))).all()  # the diagonal is not compared
    assert len(figure.data[2].x) == result.n_pairs == 6
    assert f"ρ = {result.rho:.2f}" in figure.layout.title.text and "p = " in figure.layout.title.text


def test_the_reports_file_names_are_taken() -> None:
    for name in ("anchor_agreement_features", "anchor_agreement_confusion"):
        with pytest.raises(ConfigError, match="taken by the report's own figures"):
            register_figure(name, lambda run: None)
