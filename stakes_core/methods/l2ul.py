"""L2UL (Cha et al., AAAI 2024): Adv plus a weight-importance regulariser.

Importance is MAS on the forget set (mean |∂ mean_b ‖f(x_b)‖₂ / ∂θ| in train mode, on a copy),
min-max normalised per parameter tensor and inverted, so parameters that matter for the forget
instances are free to move and the others are held near their original values:
``loss = Adv loss + λ · ½ Σ I (θ − θ⁰)²``. The copy leaves the model's batch-norm statistics
alone either way; under ``bn_stats="frozen"`` its batch norm runs in eval mode too, so the
gradients are those of the function the update steps change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stakes_core.methods.adv import Adv
from stakes_core.methods.config import ProxyConfig, hyperparameter
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import (
    Batch,
    LossAndTerms,
    ProxyBatch,
    distance_penalty,
    forget_batches,
    freeze_batch_norm,
    trainable_copy,
)


@dataclass
class L2ULConfig(ProxyConfig):
    """Adv's hyperparameters and the weight of the importance regulariser."""

    reg_lambda: float = hyperparameter(
        1.0, "weight λ of the importance-weighted distance to the original weights; higher holds the model closer; "
        "unit: none (a loss weight)",
        key=True,
    )


def mas_importance(model: torch.nn.Module, batches: list[Batch], bn_stats: str = "train") -> dict[str, torch.Tensor]:
    """L2UL's importance: MAS gradients on the forget set, normalised to [0, 1] and inverted,
    on a copy of ``model`` whose batch norm is frozen when ``bn_stats`` is ``"frozen"``."""
    probe = trainable_copy(model)
    if bn_stats == "frozen":
        freeze_batch_norm(probe)
    raw = {name: torch.zeros_like(p) for name, p in probe.named_parameters()}
    for x, _ in batches:
        probe.zero_grad(set_to_none=True)
        probe(x).norm(dim=1).mean().backward()
        for name, parameter in probe.named_parameters():
            if parameter.grad is not None:
                raw[name] += parameter.grad.abs() / len(batches)
    importance = {}
    for name, values in raw.items():
        spread = values.max() - values.min()
        scaled = (values - values.min()) / spread if spread > 0 else torch.zeros_like(values)
        importance[name] = 1.0 - scaled
    return importance


class L2UL(Adv):
    name = "l2ul"
    config_class = L2ULConfig
    config: L2ULConfig

    def setup(self, ctx: UnlearnContext) -> None:
        super().setup(ctx)
        with self.timer.phase("importance"):
            self.importance = mas_importance(
                self.model, forget_batches(ctx, self.config.batch_size), self.config.bn_stats
            )
        self.reference = {name: p.detach().clone() for name, p in self.model.named_parameters()}

    def loss(self, ctx: UnlearnContext, batch: ProxyBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        total, terms = super().loss(ctx, batch, epoch, index, step)
        penalty = distance_penalty(self.model, self.reference, self.importance)
        terms["reg"] = penalty.detach()
        return total + self.config.reg_lambda * penalty, terms
