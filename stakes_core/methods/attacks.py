"""Targeted L2 PGD, batched: the proxy set that stands in for the inaccessible retain set.

Reproduces advertorch 0.2.3's ``L2PGDAttack(targeted=True, rand_init=True)`` as used by the
L2UL and StructGuard code: summed cross-entropy towards the target, random start drawn
uniformly in the image box and projected onto the ε-ball, steps of ``step`` along the
L2-normalised gradient, clipping to [0, 1] then projection onto the ε-ball after each step.
Only the input gradient is computed (the model's parameters are frozen during the attack, so
autograd records no parameter-gradient work), and many attacks run as one batch.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from stakes_core.infra.accel import DEFAULT, Acceleration

_TINY = 1e-6  # advertorch's floor for the gradient norm


@dataclass(frozen=True)
class PGDConfig:
    """Targeted L2-PGD settings (the paper: step 0.1, 100 iterations, random init)."""

    eps: float
    step: float = 0.1
    iterations: int = 100
    random_init: bool = True


def _per_sample_norm(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))


def clamp_to_ball(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """Scale each perturbation down onto the L2 ball of radius ``eps`` (no-op inside it)."""
    norm = _per_sample_norm(delta)
    return delta * torch.clamp(eps / norm, max=1.0).nan_to_num(1.0)


@contextlib.contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Parameters without gradients for the duration of the block (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def targeted_l2_pgd(
    model: torch.nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    config: PGDConfig,
    generator: torch.Generator | None = None,
    accel: Acceleration = DEFAULT,
) -> torch.Tensor:
    """Adversarial images near ``images`` (float in [0, 1]) that ``model`` should call ``targets``.

    The model is used as it is (callers put it in eval mode, and in channels_last when
    ``accel`` asks for it); the random start is drawn on the CPU from ``generator`` so results
    do not depend on the device. ``accel`` may autocast the forward pass to bf16.
    """
    if config.eps <= 0 or config.step <= 0 or config.iterations < 0:
        raise ValueError(f"invalid PGD settings {config}")
    x = accel.images(images.detach())
    if config.random_init:
        start = torch.rand(x.shape, generator=generator).to(x.device)
        delta = clamp_to_ball(start - x, config.eps)
        delta = torch.clamp(x + delta, 0.0, 1.0) - x
    else:
        delta = torch.zeros_like(x)
    with frozen(model):
        for _ in range(config.iterations):
            delta.requires_grad_(True)
            with accel.autocast(x.device.type):
                logits = model(x + delta)
            loss = -F.cross_entropy(logits.float(), targets, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            delta = _step(x, delta.detach(), grad, config)
    return torch.clamp(x + delta, 0.0, 1.0).contiguous()


@torch.no_grad()
def _step(x: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor, config: PGDConfig) -> torch.Tensor:
    """One advertorch L2 step: normalised ascent, clip to the image box, project to the ε-ball."""
    grad = grad / torch.clamp(_per_sample_norm(grad), min=_TINY)
    delta = delta + config.step * grad
    delta = torch.clamp(x + delta, 0.0, 1.0) - x
    return clamp_to_ball(delta, config.eps)


def draw_targets(
    labels: torch.Tensor,
    num_classes: int,
    rule: str,
    generator: torch.Generator,
    similarity: torch.Tensor | None = None,
    tau: float = 0.1,
) -> torch.Tensor:
    """Random attack targets that differ from ``labels``.

    ``"uniform_other"`` (default) draws uniformly among the other classes. ``"authors"``
    reproduces the official code (quirk Q5): a uniform draw, replaced by ``num_classes // 2``
    when it hits the label — which can still equal the label for class ``num_classes // 2``.
    ``"semantic"`` draws class j ≠ y with probability ∝ exp(similarity[y, j] / tau), where
    ``similarity`` is the anchors' ``C × C`` cosine matrix: a forgotten image is pushed towards
    the classes whose descriptions are nearest its own, as a retrained model tends to err.
    """
    if rule == "uniform_other":
        offset = torch.randint(1, num_classes, labels.shape, generator=generator)
        return (labels + offset) % num_classes
    if rule == "authors":
        draw = torch.randint(0, num_classes, labels.shape, generator=generator)
        return torch.where(draw == labels, torch.full_like(draw, num_classes // 2), draw)
    if rule == "semantic":
        if similarity is None or similarity.shape != (num_classes, num_classes):
            raise ValueError(f"semantic targets need the {num_classes} × {num_classes} anchor similarity matrix")
        if tau <= 0:
            raise ValueError(f"semantic targets need a temperature tau > 0, got {tau}")
        logits = similarity.double().cpu()[labels.cpu()] / tau
        logits[torch.arange(labels.numel()), labels.cpu()] = -math.inf
        return torch.multinomial(torch.softmax(logits, dim=1), 1, generator=generator).flatten()
    raise ValueError(f"unknown target rule '{rule}' (choose 'uniform_other', 'authors' or 'semantic')")
