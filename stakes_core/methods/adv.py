"""Adv: L2UL's adversarial-example proxy without its weight-importance term.

The retain set is replaced by targeted L2-PGD examples of the forget instances made on the
original model, each labelled with its attack target. Every step ascends the forget loss and
descends the proxy loss, weighted by batch sizes; the stopping rule is checked every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from stakes_core.methods.attacks import PGDConfig
from stakes_core.methods.base import (
    UnlearnContext,
    UnlearningMethod,
    paired_with_forget,
    trainable_copy,
)
from stakes_core.methods.neggrad import SGDMethodConfig, sgd_for


@dataclass
class ProxyConfig(SGDMethodConfig):
    """Proxy-set settings. ``target_rule``: ``"uniform_other"`` (paper intent) or ``"authors"``
    (the official code's fallback to class C//2, quirk Q5)."""

    n_adv: int = 20
    pgd_eps: float = 4.0
    pgd_step: float = 0.1
    pgd_iterations: int = 100
    target_rule: str = "uniform_other"

    @property
    def pgd(self) -> PGDConfig:
        return PGDConfig(self.pgd_eps, self.pgd_step, self.pgd_iterations)


def proxy_and_forget_loss(model: torch.nn.Module, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``−CE(forget)·n_f/(n_f+n_a) + CE(proxy → target)·n_a/(n_f+n_a)``, as in L2UL."""
    xa, ta, xf, yf = batch
    nf, na = xf.shape[0], xa.shape[0]
    forget_ce = F.cross_entropy(model(xf), yf)
    proxy_ce = F.cross_entropy(model(xa), ta)
    total = -forget_ce * nf / (nf + na) + proxy_ce * na / (nf + na)
    return total, {"forget_ce": forget_ce.detach(), "proxy_ce": proxy_ce.detach()}


class Adv(UnlearningMethod):
    name = "adv"
    config_class = ProxyConfig

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)
        self.proxy_images, self.proxy_targets = ctx.proxy_set(
            self.config.n_adv, self.config.pgd, self.config.target_rule, self.timer
        )

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Any]:
        return paired_with_forget(ctx, self.proxy_images, self.proxy_targets, self.config.batch_size)

    def loss(self, ctx, batch, epoch, index, step):
        return proxy_and_forget_loss(self.model, batch)
