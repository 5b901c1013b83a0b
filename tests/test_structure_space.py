"""StructGuard's structure spaces and the semantic attack targets: where the anchors' meaning
enters the loss, and where it cannot."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from stakes_core.anchors.build import anchor_similarity
from stakes_core.anchors.variants import derangement, permuted_anchors, random_anchors, rotated_anchors
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import UnlearnContext, create_method
from stakes_core.methods.attacks import draw_targets
from stakes_core.methods.structure_space import conse_embedding, fit_text_map, space_embedder, text_map_logits
from stakes_core.run.runstore import canonical_config
from tests.helpers import tiny_context

FAST = {"max_epochs": 2, "n_adv": 6, "pgd_iterations": 3, "pgd_eps": 1.0, "pgd_step": 0.3}


@pytest.fixture(scope="module")
def trained() -> UnlearnContext:
    """One tiny context for the module (its model takes seconds to train)."""
    return tiny_context()


def fresh(context: UnlearnContext, **changes) -> UnlearnContext:
    """A copy of ``context`` with ``changes`` and its own proxy-set cache."""
    return dataclasses.replace(context, proxy_cache={}, proxy_locks={}, unlearned={}, **changes)


def alignment_loss(context: UnlearnContext, space: str, permute: bool = False, rotate: bool = False) -> float:
    """StructGuard's ``L_align`` on its proxy set right after setup, with the context's anchors,
    the same anchors given to other classes (``permute``) or turned by a random rotation (``rotate``)."""
    anchors = permuted_anchors(context.anchors, seed=1) if permute else context.anchors
    anchors = rotated_anchors(anchors, seed=2) if rotate else anchors
    context = fresh(context, anchors=anchors)
    method = create_method("structguard", structure_space=space, **FAST)
    method.setup(context)
    with torch.no_grad():
        loss, _ = method.alignment_loss(context, method.proxy_images, method.projector)
    return float(loss)


def test_only_the_semantic_spaces_see_which_anchor_belongs_to_which_class(trained: UnlearnContext) -> None:
    same = alignment_loss(trained, "paper", permute=False)
    assert alignment_loss(trained, "paper", permute=True) == pytest.approx(same, abs=1e-6)
    for space in ("conse", "text_map"):
        change = alignment_loss(trained, space, permute=True) - alignment_loss(trained, space, permute=False)
        assert abs(change) > 1e-4, space


def test_conse_sees_the_anchors_only_through_their_similarities(trained: UnlearnContext) -> None:
    """ConSE's S = norm(pᵀA)·Aᵀ depends on A only through AAᵀ, so a rotation of the anchor space
    changes nothing there. The paper's space sees AᵀA, which a rotation changes for the run's
    fixed random projection R (over draws of R it is the same as another R)."""
    conse = alignment_loss(trained, "conse")
    assert alignment_loss(trained, "conse", rotate=True) == pytest.approx(conse, abs=1e-5)
    assert abs(alignment_loss(trained, "paper", rotate=True) - alignment_loss(trained, "paper")) > 1e-4


def test_conse_mixes_the_anchors_of_the_top_classes() -> None:
    probabilities = torch.tensor([[0.6, 0.3, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4]])
    anchors = torch.eye(4)
    assert torch.allclose(conse_embedding(probabilities, anchors, top=4), probabilities)
    assert torch.allclose(conse_embedding(probabilities, anchors, top=2),
                          torch.tensor([[0.6, 0.3, 0.0, 0.0], [0.0, 0.0, 0.3, 0.4]]))
    with pytest.raises(ConfigError, match="between 1 and the 4 classes"):
        conse_embedding(probabilities, anchors, top=5)
    with pytest.raises(ConfigError, match="one anchor per class"):
        conse_embedding(probabilities, torch.eye(5), top=2)


def test_the_text_map_learns_to_classify_like_the_model() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 16, generator=generator)
    targets = F.softmax(features[:, :4] * 3, dim=1)
    anchors = random_anchors(4, 8, seed=0)
    mapping = fit_text_map(features, targets, anchors, tau=0.1, steps=300, generator=generator)
    agreement = (text_map_logits(mapping(features), anchors, 0.1).argmax(1) == targets.argmax(1)).float().mean()
    assert agreement > 0.9
    assert not any(p.requires_grad for p in mapping.parameters())


def test_bad_spaces_and_fitting_data_are_refused_in_one_line(trained: UnlearnContext) -> None:
    anchors = random_anchors(4, 8, seed=0)
    features, targets = torch.randn(7, 16), F.softmax(torch.randn(7, 4), dim=1)
    with pytest.raises(ConfigError, match="at least 8 images") as error:
        fit_text_map(features, targets, anchors, tau=0.1, steps=5, generator=torch.Generator())
    assert "raise k or n_adv" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="one anchor per class"):
        fit_text_map(torch.randn(20, 16), F.softmax(torch.randn(20, 4), 1), random_anchors(5, 8, 0), 0.1, 5,
                     torch.Generator())
    with pytest.raises(ConfigError, match="16-wide embeddings; the anchors are 8 wide"):
        space_embedder("text_map", anchors, 4, text_map=torch.nn.Linear(3, 16))
    with pytest.raises(ConfigError, match="unknown structure space"):
        space_embedder("nope", anchors, 4)
    for key, value, message in [("conse_top", 0, "conse_top must be ≥ 1"), ("text_map_tau", 0.0, "> 0"),
                                ("text_map_steps", 0, "≥ 1"), ("target_tau", -1.0, "> 0"),
                                ("structure_space", "nope", "is not one of")]:
        with pytest.raises(ConfigError, match=message):
            create_method("structguard", **{key: value})
    with pytest.raises(ConfigError, match="between 1 and the 4 classes"):
        create_method("structguard", structure_space="conse", conse_top=5, **FAST).setup(fresh(trained))
    with pytest.raises(ConfigError, match="at least 8 images"):
        few = fresh(trained, forget_idx=trained.forget_idx[:2])
        create_method("structguard", structure_space="text_map", **{**FAST, "n_adv": 1}).setup(few)


@pytest.mark.parametrize("space", ["conse", "text_map"])
def test_every_space_unlearns_and_records(trained: UnlearnContext, space: str) -> None:
    outcome = create_method("structguard", structure_space=space, **FAST).run(fresh(trained))
    assert outcome.steps >= 1 and all(torch.isfinite(torch.tensor(r.loss)) for r in outcome.records[1:])
    assert all(0 <= r.terms["align"] <= 2 for r in outcome.records[1:])
    assert ("text_map" in outcome.timings) == (space == "text_map")


def test_semantic_targets_follow_the_anchor_similarity() -> None:
    similarity = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.zeros(4000, dtype=torch.long)
    targets = draw_targets(labels, 3, "semantic", torch.Generator().manual_seed(0), similarity, tau=0.1)
    assert (targets != labels).all()
    share = float((targets == 1).float().mean())
    assert share == pytest.approx(1 / (1 + math.exp(-9.0)), abs=0.01)
    flat = draw_targets(labels, 3, "semantic", torch.Generator().manual_seed(0), similarity, tau=100.0)
    assert float((flat == 1).float().mean()) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError, match="3 × 3 anchor similarity"):
        draw_targets(labels, 3, "semantic", torch.Generator(), None)
    with pytest.raises(ValueError, match="tau > 0"):
        draw_targets(labels, 3, "semantic", torch.Generator(), similarity, tau=0.0)


def test_proxy_methods_draw_semantic_targets_from_the_runs_anchors(trained: UnlearnContext) -> None:
    context = fresh(trained)
    adv = create_method("adv", target_rule="semantic", target_tau=0.01, max_epochs=1, n_adv=5, pgd_iterations=2)
    adv.setup(context)
    labels = context.forget_labels.repeat(5)
    similarity = anchor_similarity(context.anchors) - 2 * torch.eye(4)
    assert torch.equal(adv.proxy_targets, similarity.argmax(1)[labels])  # τ → 0: the nearest other class


def test_permuted_anchors_move_every_class_and_random_anchors_are_unit_and_seeded() -> None:
    for seed in range(20):
        order = derangement(5, torch.Generator().manual_seed(seed))
        assert sorted(order.tolist()) == list(range(5)) and (order != torch.arange(5)).all()
    anchors = random_anchors(4, 8, seed=0)
    assert torch.allclose(anchors.norm(dim=1), torch.ones(4))
    assert torch.equal(anchors, random_anchors(4, 8, seed=0)) and not torch.equal(anchors, random_anchors(4, 8, 1))
    assert torch.allclose(anchor_similarity(permuted_anchors(anchors, 3)).sum(), anchor_similarity(anchors).sum())


def test_options_added_later_keep_the_keys_of_stored_runs() -> None:
    def methods(**structguard) -> dict:
        config = {"methods": ["structguard"], "method_configs": {"structguard": structguard}}
        return canonical_config(config)["method_configs"]["structguard"]

    default = methods()
    assert "structure_space" not in default and "target_tau" not in default and "lr" in default
    assert methods(structure_space="paper") == default
    assert methods(structure_space="conse")["structure_space"] == "conse"
