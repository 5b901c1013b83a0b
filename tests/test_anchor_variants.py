"""The ablation's anchor sources: rotated text anchors keep their Gram matrix, prototypes are
class means, and a run with each source records and reloads it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_dataset, tiny_model

from stakes_core.analysis import load_run
from stakes_core.anchors.variants import check_anchor_source, prototype_anchors, rotated_anchors
from stakes_core.metrics.structure import affinities, structure_discrepancy
from stakes_core.run.config import experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_experiment


def test_rotation_keeps_the_gram_matrix_and_changes_the_anchors() -> None:
    anchors = F.normalize(torch.randn(10, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    rotated = rotated_anchors(anchors, seed=3)
    assert torch.allclose(rotated @ rotated.T, anchors @ anchors.T, atol=1e-5)
    assert (rotated - anchors).abs().max() > 0.1
    assert torch.equal(rotated, rotated_anchors(anchors, seed=3))
    assert not torch.allclose(rotated, rotated_anchors(anchors, seed=4))


def test_rotation_changes_the_alignment_loss_unlike_a_permutation() -> None:
    generator = torch.Generator().manual_seed(1)
    anchors = F.normalize(torch.randn(6, 16, generator=generator), dim=1)
    before, after = torch.randn(20, 16, generator=generator), torch.randn(20, 16, generator=generator)

    def loss(a: torch.Tensor) -> float:
        return float(structure_discrepancy(affinities(before, a), affinities(after, a)))

    assert loss(anchors[torch.randperm(6, generator=generator)]) == pytest.approx(loss(anchors), abs=1e-6)
    assert abs(loss(rotated_anchors(anchors, seed=0)) - loss(anchors)) > 1e-4


def test_prototypes_are_unit_class_means_of_the_features() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset)
    anchors = prototype_anchors(model, dataset.train_images, dataset.train_labels, dataset.num_classes)
    with torch.no_grad():
        features = model.eval().features(dataset.train_images.float() / 255)
    expected = torch.stack([features[dataset.train_labels == c].mean(0) for c in range(dataset.num_classes)])
    assert torch.allclose(anchors, F.normalize(expected, dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="class"):
        prototype_anchors(model, dataset.train_images[:5], dataset.train_labels[:5], dataset.num_classes)


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError, match="text, permuted, rotated, random, prototypes"):
        check_anchor_source("clip")
    with pytest.raises(ValueError, match="anchor source"):
        experiment_config("digits", k=4, anchor_source="visual")


@pytest.mark.slow
@pytest.mark.parametrize("source", ["permuted", "random", "prototypes"])
def test_a_run_records_its_anchor_source_and_reloads_it(source: str, tmp_path) -> None:
    config = experiment_config(
        "digits", k=4, seed=0, methods=["structguard"], device="cpu", anchor_source=source,
        overrides=["structguard.max_epochs=1", "structguard.stop_from_epoch=0"],
    )
    run_experiment(config, progress=False).save(tmp_path)
    loaded = load_run(tmp_path)
    assert loaded.result.config["anchor_source"] == source
    width = loaded.context.original.feature_dim if source == "prototypes" else 384
    assert loaded.context.anchors.shape == (10, width)
    assert (loaded.context.projection is None) == (source == "prototypes")
    text = experiment_config("digits", k=4, seed=0, methods=["structguard"], device="cpu")
    text_anchors = prepare_context(text, progress=False)[0].anchors
    if source == "permuted":  # the same anchors, every class given another's
        assert sorted(map(tuple, loaded.context.anchors.tolist())) == sorted(map(tuple, text_anchors.tolist()))
        assert not torch.isclose(loaded.context.anchors, text_anchors).all(dim=1).any()
    if source == "random":
        assert torch.allclose(loaded.context.anchors.norm(dim=1), torch.ones(10))
