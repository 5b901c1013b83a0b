"""Adv: L2UL's adversarial-example proxy without its weight-importance term.

The retain set is replaced by targeted L2-PGD examples of the forget instances made on the
original model, each labelled with its attack target. Every step ascends the forget loss and
descends the proxy loss, weighted by batch sizes; the stopping rule is checked every step.
"""

from __future__ import annotations

from typing import Iterator

import torch.nn.functional as F

from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import ProxyConfig
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import (
    LossAndTerms,
    ProxyBatch,
    forget_and_proxy_loss,
    paired_with_forget,
    sgd_for,
    trainable_copy,
)


class Adv(UnlearningMethod[ProxyConfig]):
    name = "adv"
    config_class = ProxyConfig
    uses_global_rng = False

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)
        self.proxy_images, self.proxy_targets = ctx.proxy_set(
            self.config.n_adv, self.config.pgd, self.config.target_rule, self.timer, target_tau=self.config.target_tau
        )

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[ProxyBatch]:
        return paired_with_forget(ctx, self.proxy_images, self.proxy_targets, self.config.batch_size)

    def loss(self, ctx: UnlearnContext, batch: ProxyBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        xa, ta, xf, yf = batch
        forget_ce = F.cross_entropy(self.model(xf), yf)
        proxy_ce = F.cross_entropy(self.model(xa), ta)
        total = forget_and_proxy_loss(forget_ce, proxy_ce, xf.shape[0], xa.shape[0])
        return total, {"forget_ce": forget_ce.detach(), "proxy_ce": proxy_ce.detach()}
