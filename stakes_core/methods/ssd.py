"""SSD: Selective Synaptic Dampening, one-shot shrinking of the weights the forget set leans on.

Published algorithm (Foster et al., "Fast Machine Unlearning Without Retraining Through Selective
Synaptic Dampening", AAAI 2024): no training. On the original model, in eval mode, the diagonal
Fisher-style importance of a set of batches is the mean over its batches of the squared gradient
of the batch's mean cross-entropy, ``I = mean_b (∇θ CE_b)²``, computed for the training data D
(``I_D``) and for the forget set (``I_Df``). Every parameter entry with ``I_Df > α·I_D`` is scaled
by ``min(λ·I_D/I_Df, 1)`` (α the selection weighting, λ the dampening constant); all others are
left alone, and no factor exceeds 1, so no |θ| grows. Source: if-loops/selective-synaptic-dampening,
``src/ssd.py`` (``ParameterPerturber.calc_importance``, ``modify_weight``) with the random
forgetting values of ``forget_random_main.py``: α 10, λ 1, and D the whole training set D_r ∪ D_f.

Two methods here, sharing :func:`squared_gradient_importance` and :func:`dampen`:

- ``ssd`` (retain-free, D_f only) is THIS PROJECT's adaptation, in no published code: ``I_D`` is
  computed over an accessible stand-in for D, D_f ∪ the shared proxy set (targeted L2-PGD
  examples of the forget images labelled with their attack targets, ``ctx.proxy_set``).
- ``ssd_dr`` (uses D_r, as published): ``I_D`` over D_r ∪ D_f.

What differs here: the batches of D are drawn in an order shuffled once by the method's own
generator, ``batch_size`` images each (the last may be smaller and still counts as one batch, as
in the published mean over the loader), the forget batches in fixed order; everything runs in
fp32. The importances are computed in ``setup``; the loop's single step (one epoch, one update)
applies the dampening without an optimiser, and later epochs, if ``max_epochs`` asks for them,
are empty. With one shot SSD may leave forget accuracy above the stopping target: the run then
ends with ``reached_zero`` False, which is reported as it is.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, TypeVar

import torch
import torch.nn.functional as F

from stakes_core.data import to_float
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import MethodConfig, ProxyConfig, hyperparameter
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import Batch, LossAndTerms, forget_batches, trainable_copy

UNUSED = "not used by SSD, which takes no gradient step (one-shot dampening): changing it changes nothing; unit: none"


def _selection_weighting() -> Any:
    return hyperparameter(
        10.0, "selection weighting α: an entry is dampened when its forget importance exceeds α times its importance "
        "on D (published: 10); higher dampens fewer entries; unit: none (a ratio of importances)",
        key=True,
    )


def _dampening(help_tail: str) -> Any:
    return hyperparameter(
        1.0, "dampening constant λ: a selected entry is scaled by min(λ·I_D/I_Df, 1) (published: 1); higher "
        f"shrinks it less; unit: none (a ratio of importances){help_tail}",
        key=True,
    )


def _one_shot() -> Any:
    return hyperparameter(
        1, "SSD is one shot: the dampening happens in epoch 0 and later epochs are empty, so raising it changes "
        "nothing; unit: epochs"
    )


def _eval_only() -> Any:
    return hyperparameter(
        "train", "not used by SSD, whose every pass runs in eval mode (the published importances), so batch norm "
        "never updates: changing it changes nothing; unit: a choice",
        choices=("train", "frozen"),
    )


@dataclass
class SSDRetainConfig(MethodConfig):
    """SSD as published: α 10, λ 1, I_D over D_r ∪ D_f."""

    lr: float = hyperparameter(1e-3, UNUSED)
    max_epochs: int = _one_shot()
    bn_stats: str = _eval_only()
    selection_weighting: float = _selection_weighting()
    dampening: float = _dampening("; I_D over D_r ∪ D_f as published")


@dataclass
class SSDConfig(ProxyConfig, SSDRetainConfig):
    """This project's retain-free SSD: the published α and λ, and the proxy set that stands in for D_r."""

    lr: float = hyperparameter(1e-3, UNUSED)
    max_epochs: int = _one_shot()
    bn_stats: str = _eval_only()
    momentum: float = hyperparameter(0.9, UNUSED)
    weight_decay: float = hyperparameter(1e-4, UNUSED)
    dampening: float = _dampening("; here I_D is this project's stand-in, over D_f and the proxy set (unpublished)")


DampeningConfigT = TypeVar("DampeningConfigT", bound=SSDRetainConfig)


def squared_gradient_importance(model: torch.nn.Module, batches: Iterable[Batch]) -> dict[str, torch.Tensor]:
    """``mean_b (∇θ CE_b)²`` per parameter of ``model`` over ``batches``, in eval mode (the
    batch-norm statistics stay as they are); ``model``'s gradients are left cleared."""
    importance = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    count = 0
    with eval_mode(model), torch.enable_grad():
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            for name, parameter in model.named_parameters():
                if parameter.grad is not None:
                    importance[name] += parameter.grad.detach() ** 2
            count += 1
    model.zero_grad(set_to_none=True)
    if count == 0:
        raise ConfigError("SSD needs at least one batch to measure importance on")
    return {name: values / count for name, values in importance.items()}


@torch.no_grad()
def dampen(
    model: torch.nn.Module,
    importance_all: dict[str, torch.Tensor],
    importance_forget: dict[str, torch.Tensor],
    selection_weighting: float,
    dampening: float,
) -> dict[str, torch.Tensor]:
    """Scale every entry of ``model`` with ``I_Df > α·I_D`` by ``min(λ·I_D/I_Df, 1)`` in place;
    returns the boolean mask of the selected entries per parameter name."""
    selected = {}
    for name, parameter in model.named_parameters():
        full, forget = importance_all[name], importance_forget[name]
        mask = forget > selection_weighting * full
        factor = (dampening * full / forget.clamp_min(torch.finfo(forget.dtype).tiny)).clamp(max=1.0)
        parameter.copy_(torch.where(mask, parameter * factor, parameter))
        selected[name] = mask
    return selected


class SelectiveDampening(UnlearningMethod[DampeningConfigT]):
    """What both SSDs share: the importances in ``setup``, one dampening step, no optimiser; a
    subclass says which batches stand for the training data D."""

    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        if self.config.selection_weighting < 0 or self.config.dampening < 0:
            raise ConfigError(
                f"{self.name} needs selection_weighting ≥ 0 and dampening ≥ 0, got "
                f"{self.config.selection_weighting} and {self.config.dampening}"
            )
        self.model = trainable_copy(ctx.original)
        batches = self.importance_batches(ctx, torch.Generator().manual_seed(ctx.seed))
        with self.timer.phase("importance"):
            self.importance_all = squared_gradient_importance(self.model, batches)
            forget = forget_batches(ctx, self.config.batch_size)
            self.importance_forget = squared_gradient_importance(self.model, forget)

    @abstractmethod
    def importance_batches(self, ctx: UnlearnContext, generator: torch.Generator) -> Iterable[Batch]:
        """The batches of the data D whose importance ``I_D`` the forget importance is weighed
        against, in an order shuffled by ``generator``."""

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> list[str]:
        return ["dampen"] if epoch == 0 else []

    def loss(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> LossAndTerms:
        raise NotImplementedError("SSD takes no gradient step: its update dampens the weights directly")

    def update(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> LossAndTerms:
        """Dampen the selected entries once; the record's loss is the forget cross-entropy after."""
        selected = dampen(
            self.model, self.importance_all, self.importance_forget,
            self.config.selection_weighting, self.config.dampening,
        )
        chosen = sum(int(mask.sum()) for mask in selected.values())
        total = sum(mask.numel() for mask in selected.values())
        with eval_mode(self.model), torch.no_grad():
            forget_ce = F.cross_entropy(self.model(ctx.forget_images), ctx.forget_labels)
        return forget_ce, {"selected_fraction": torch.tensor(chosen / total, device=forget_ce.device)}


class SSD(SelectiveDampening[SSDConfig]):
    name = "ssd"
    config_class = SSDConfig
    data_access = "forget"

    def importance_batches(self, ctx: UnlearnContext, generator: torch.Generator) -> list[Batch]:
        """The stand-in for D: the forget set and the shared proxy set, shuffled together."""
        proxy_images, proxy_targets = ctx.proxy_set(
            self.config.n_adv, self.config.pgd, self.config.target_rule, self.timer, target_tau=self.config.target_tau
        )
        images = torch.cat([ctx.forget_images, proxy_images])
        labels = torch.cat([ctx.forget_labels, proxy_targets])
        order = torch.randperm(labels.numel(), generator=generator).to(labels.device)
        size = self.config.batch_size
        return [(images[order[i : i + size]], labels[order[i : i + size]]) for i in range(0, order.numel(), size)]


class SSDRetain(SelectiveDampening[SSDRetainConfig]):
    name = "ssd_dr"
    config_class = SSDRetainConfig
    data_access = "retain"

    def importance_batches(self, ctx: UnlearnContext, generator: torch.Generator) -> Iterator[Batch]:
        """D = D_r ∪ D_f, the whole training set as published, loaded one batch at a time."""
        indices = torch.cat([ctx.retained(self), ctx.forget_idx])
        order = indices[torch.randperm(indices.numel(), generator=generator)]
        for start in range(0, order.numel(), self.config.batch_size):
            idx = order[start : start + self.config.batch_size]
            yield to_float(ctx.dataset.train_images[idx]).to(ctx.device), ctx.dataset.train_labels[idx].to(ctx.device)
