"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to the weights most salient for the forget set.

Published algorithm: on the original model θ₀, the saliency of every weight is the magnitude of
the forget loss's gradient, ``g = |Σ_{batches of D_f} ∇θ(−CE(f_θ₀(x_f), y_f))|``; the mask ``m``
keeps the top ``ratio`` of the entries of all parameters ranked together (ratio 0.5 in the
README's CIFAR-10 example); unlearning is then RL (:mod:`.random_label`: a pass over D_f towards
random labels and a pass over D_r with true labels per epoch) with masked updates,
``θ ← θ − η (m ⊙ ∇θ L)``, the masked-out weights put back to θ₀ after every step and their
momentum zeroed, so neither weight decay nor momentum moves them. Source:
OPTML-Group/Unlearn-Saliency, ``Classification/generate_mask.py`` (the mask) and
``Classification/unlearn/RL.py`` (the masked RL); 10 epochs, lr 0.013, SGD momentum 0.9,
weight decay 5e-4. Here: ``salun_dr`` is the published form (a reference that reads D_r);
``salun`` the retain-free form (D_f only) with ``forget_loss`` ``rl`` (masked random labels,
default) or ``ga`` (masked gradient ascent on the true labels, the repository's GA accepts the
same mask), which stops by the shared rule and so may run up to 101 epochs to reach forget
accuracy 0 instead of the published 10. The saliency gradients are taken in eval mode (as the
repository does) on a copy, without the optimiser step its mask script takes after each batch;
ties at the threshold are broken by a stable sort so that exactly ``round(ratio · N)`` entries
are kept. The stored ``generate_mask.py`` (commit 2b0a8a1) ranks ascending and keeps ranks below
``ratio · N``, i.e. the least salient entries; this file keeps the most salient, as the paper
describes. Random labels are wrong labels, as in :mod:`.random_label`; batch-norm running
statistics are buffers, not parameters, and move with every train-mode forward pass as in RL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.config import hyperparameter, new_default
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.random_label import (
    PartBatch,
    RandomLabel,
    RandomLabelConfig,
    RandomLabelDRConfig,
)
from stakes_core.methods.sgd import SGD
from stakes_core.methods.training import Batch, LossAndTerms, forget_batches, sgd_for, trainable_copy


def saliency_mask(model: torch.nn.Module, batches: list[Batch], ratio: float) -> dict[str, torch.Tensor]:
    """SalUn's mask: per parameter, a boolean tensor that is True on the ``ratio`` share of all
    entries (ranked together over every parameter) with the largest ``|Σ_b ∇θ(−CE_b)|`` on
    ``batches``, the gradients taken in eval mode on a copy of ``model``."""
    probe = trainable_copy(model).eval()
    for images, labels in batches:
        (-F.cross_entropy(probe(images), labels)).backward()  # gradients add up over the batches
    named = list(probe.named_parameters())
    scores = torch.cat([
        (p.grad.abs() if p.grad is not None else torch.zeros_like(p)).flatten() for _, p in named
    ])
    keep = round(ratio * scores.numel())
    chosen = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    chosen[torch.sort(scores, descending=True, stable=True).indices[:keep]] = True
    return {name: part.view_as(p) for (name, p), part in zip(named, chosen.split([p.numel() for _, p in named]))}


class MaskedSGD:
    """SGD that moves only the entries a mask keeps: gradients are multiplied by the mask before
    the step, and after it the masked-out entries are put back to their values at creation (θ₀)
    and their momentum zeroed, so weight decay and momentum cannot move them either."""

    def __init__(self, model: torch.nn.Module, sgd: SGD, mask: dict[str, torch.Tensor]) -> None:
        self.sgd = sgd
        self.mask = mask
        self.named = list(model.named_parameters())
        self.initial = {name: p.detach().clone() for name, p in self.named}

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sgd.zero_grad(set_to_none)

    @torch.no_grad()
    def step(self) -> None:
        """Masked gradients, one SGD step, then the masked-out entries back to θ₀."""
        for name, parameter in self.named:
            if parameter.grad is not None:
                parameter.grad.masked_fill_(~self.mask[name], 0.0)
        self.sgd.step()
        for name, parameter in self.named:
            keep = self.mask[name]
            parameter.copy_(torch.where(keep, parameter, self.initial[name]))
            buffer = self.sgd.momentum_buffers.get(parameter)
            if buffer is not None:
                buffer.masked_fill_(~keep, 0.0)


@dataclass
class SalUnConfig(RandomLabelConfig):
    """RL's values, the share of weights the saliency mask keeps and the forget loss."""

    mask_ratio: float = hyperparameter(
        0.5, "share of all weights (ranked together by forget-loss gradient magnitude) that may move, the rest stay "
        "at their original values; higher frees more weights; unit: fraction, above 0 up to 1", key=True
    )
    forget_loss: str = hyperparameter(
        "rl", "loss on the forget set under the mask: rl (cross-entropy towards random wrong labels, SalUn's) or ga "
        "(gradient ascent on the true labels); unit: a choice", choices=("rl", "ga")
    )


@dataclass
class SalUnDRConfig(SalUnConfig):
    """The published SalUn: 10 epochs, each a masked pass over the relabelled D_f and one over D_r."""

    max_epochs: int = new_default(RandomLabelDRConfig, "max_epochs", 10)


class SalUn(RandomLabel):
    name = "salun"
    config_class = SalUnConfig
    config: SalUnConfig

    def __init__(self, config: SalUnConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        if not 0 < self.config.mask_ratio <= 1:
            raise ConfigError(f"{self.name}.mask_ratio must be above 0 and at most 1, got {self.config.mask_ratio}")

    def setup(self, ctx: UnlearnContext) -> None:
        super().setup(ctx)
        with self.timer.phase("saliency"):
            self.mask = saliency_mask(ctx.original, forget_batches(ctx, self.config.batch_size), self.config.mask_ratio)
        self.optimizer = MaskedSGD(self.model, sgd_for(self.model.parameters(), self.config), self.mask)

    def forget_targets(self, ctx: UnlearnContext) -> torch.Tensor:
        """Random wrong labels under ``rl``; the true labels under ``ga``, whose loss ascends them."""
        return ctx.forget_labels if self.config.forget_loss == "ga" else super().forget_targets(ctx)

    def loss(self, ctx: UnlearnContext, batch: PartBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        images, labels, part = batch
        if part == "forget" and self.config.forget_loss == "ga":
            forget_ce = F.cross_entropy(self.model(images), labels)
            return -forget_ce, {"forget_ce": forget_ce.detach()}
        return super().loss(ctx, batch, epoch, index, step)


class SalUnDR(SalUn):
    name = "salun_dr"
    config_class = SalUnDRConfig
    data_access = "retain"
