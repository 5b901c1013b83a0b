"""Affinities, the random projection and the structural-collapse metric."""

from __future__ import annotations

import copy

import pytest
import torch

from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.structure import (
    StructureProbe,
    affinities,
    backbone_embedder,
    projection_for,
    random_projection,
    structure_discrepancy,
)
from tests.helpers import tiny_dataset, tiny_model


def test_affinities_are_cosines_to_unit_anchors() -> None:
    anchors = torch.eye(3)
    embeddings = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    expected = torch.tensor([[1.0, 0.0, 0.0], [2**-0.5, 2**-0.5, 0.0]])
    assert torch.allclose(affinities(embeddings, anchors), expected)
    with pytest.raises(ValueError, match="does not match anchor width"):
        affinities(torch.ones(2, 4), anchors)


def test_discrepancy_is_zero_for_equal_structure_and_known_otherwise() -> None:
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert structure_discrepancy(s, s * 3).item() == pytest.approx(0.0, abs=1e-7)
    flipped = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # row 0 orthogonal (cos 0), row 1 equal (cos 1)
    assert structure_discrepancy(s, flipped).item() == pytest.approx(0.5)


def test_loss_sees_anchors_only_through_their_gram_matrix() -> None:
    """anchors.md: orthogonal mixing (a permutation included) of the anchors changes nothing."""
    generator = torch.Generator().manual_seed(0)
    anchors = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator, dtype=torch.float64), dim=1)
    v0 = torch.randn(7, 8, generator=generator, dtype=torch.float64)
    v1 = torch.randn(7, 8, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))
    for mixed in (anchors[torch.randperm(5, generator=generator)], q @ anchors):
        a = structure_discrepancy(affinities(v0, anchors), affinities(v1, anchors))
        b = structure_discrepancy(affinities(v0, mixed), affinities(v1, mixed))
        assert a.item() == pytest.approx(b.item(), abs=1e-12)


def test_random_projection_has_unit_columns_and_is_seeded() -> None:
    r = random_projection(16, 4, seed=3)
    assert r.shape == (16, 4)
    assert torch.allclose(r.norm(dim=0), torch.ones(4))
    assert torch.equal(r, random_projection(16, 4, seed=3))
    assert not torch.equal(r, random_projection(16, 4, seed=4))
    assert projection_for(512, 512, 0) is None and projection_for(64, 384, 0).shape == (64, 384)


def test_probe_collapse_is_zero_for_the_original_and_positive_after_a_change() -> None:
    dataset = tiny_dataset()
    model = tiny_model(dataset).eval()
    anchors = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    projection = projection_for(model.feature_dim, 8, 0)
    probe = StructureProbe(dataset.train_images[:20], anchors, model, projection)
    assert probe.collapse(backbone_embedder(model, projection), model) == pytest.approx(0.0, abs=1e-6)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        bias = changed.layer4[1].bn2.bias
        bias.copy_(torch.randn(bias.shape, generator=torch.Generator().manual_seed(1)))
    assert probe.collapse(backbone_embedder(changed, projection), changed) > 1e-2
    assert not model.training  # the probe restores the mode it found


def test_eval_mode_restores_each_submodule_s_own_mode() -> None:
    """A model with a frozen (eval-mode) batch norm inside a training model comes back mixed."""
    dataset = tiny_dataset()
    model = tiny_model(dataset)
    frozen = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    model.train()
    frozen.eval()
    before = [m.training for m in model.modules()]
    with eval_mode(model) as inside:
        assert inside is model and not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert [m.training for m in model.modules()] == before
    probe = StructureProbe(dataset.train_images[:8], torch.eye(model.feature_dim)[:3], model, None)
    assert [m.training for m in model.modules()] == before and probe.reference.shape == (8, 3)
