"""Targeted L2-PGD: advertorch's semantics, batching that does not change results, targets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stakes_core.methods.attacks import PGDConfig, clamp_to_ball, draw_targets, targeted_l2_pgd
from tests.helpers import tiny_context


def reference_attack(model, x, target, eps, step, iterations, delta):
    """advertorch 0.2.3's perturb_iterative for ord=2, one image at a time, written out literally."""
    delta = delta.clone()
    for _ in range(iterations):
        delta.requires_grad_(True)
        loss = -F.cross_entropy(model(x + delta), target, reduction="sum")
        loss.backward()
        grad = delta.grad.detach()
        grad = grad / max(grad.norm().item(), 1e-6)
        delta = delta.detach() + step * grad
        delta = torch.clamp(x + delta, 0, 1) - x
        norm = delta.norm().item()
        if norm > eps:
            delta = delta * (eps / norm)
    return torch.clamp(x + delta, 0, 1)


@pytest.fixture(scope="module")
def context():
    return tiny_context()


def test_batched_attack_matches_a_literal_per_image_reference(context) -> None:
    model = context.original
    x = context.forget_images
    targets = (context.forget_labels + 1) % context.dataset.num_classes
    config = PGDConfig(eps=1.5, step=0.3, iterations=6, random_init=False)
    batched = targeted_l2_pgd(model, x, targets, config)
    for i in range(x.shape[0]):
        single = reference_attack(model, x[i : i + 1], targets[i : i + 1], 1.5, 0.3, 6, torch.zeros_like(x[i : i + 1]))
        assert torch.allclose(batched[i : i + 1], single, atol=1e-5)


def test_random_start_is_uniform_in_the_box_projected_to_the_ball(context) -> None:
    x = context.forget_images
    config = PGDConfig(eps=0.5, iterations=0)
    out = targeted_l2_pgd(context.original, x, context.forget_labels, config, torch.Generator().manual_seed(7))
    uniform = torch.rand(x.shape, generator=torch.Generator().manual_seed(7))
    expected = torch.clamp(x + clamp_to_ball(uniform - x, 0.5), 0, 1)
    assert torch.allclose(out, expected)


def test_adversarial_images_stay_in_the_ball_and_the_box_and_hit_targets(context) -> None:
    x = context.forget_images
    targets = (context.forget_labels + 1) % context.dataset.num_classes
    out = targeted_l2_pgd(context.original, x, targets, PGDConfig(eps=2.0, step=0.4, iterations=30),
        torch.Generator().manual_seed(0))
    assert ((out - x).flatten(1).norm(dim=1) <= 2.0 + 1e-5).all()
    assert out.min() >= 0 and out.max() <= 1
    assert (context.original(out).argmax(1) == targets).float().mean() >= 0.75


def test_attack_is_deterministic_for_a_seeded_generator(context) -> None:
    x, y = context.forget_images, context.forget_labels
    config = PGDConfig(eps=1.0, step=0.2, iterations=3)
    a = targeted_l2_pgd(context.original, x, y, config, torch.Generator().manual_seed(1))
    b = targeted_l2_pgd(context.original, x, y, config, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_invalid_settings_are_rejected(context) -> None:
    with pytest.raises(ValueError, match="invalid PGD settings"):
        targeted_l2_pgd(context.original, context.forget_images, context.forget_labels, PGDConfig(eps=0.0))


def test_target_rules() -> None:
    labels = torch.arange(10).repeat(200)
    other = draw_targets(labels, 10, "uniform_other", torch.Generator().manual_seed(0))
    assert (other != labels).all()
    assert set(other[labels == 3].tolist()) == set(range(10)) - {3}
    authors = draw_targets(labels, 10, "authors", torch.Generator().manual_seed(0))
    collided = authors[labels != 5] == labels[labels != 5]
    assert not collided.any()
    assert (authors[labels == 5] == 5).any()  # quirk Q5: class C//2 can be its own target
    with pytest.raises(ValueError, match="unknown target rule"):
        draw_targets(labels, 10, "nope", torch.Generator())
