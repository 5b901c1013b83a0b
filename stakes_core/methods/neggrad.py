"""NegGrad: gradient ascent on the forget set (Golatkar et al. 2020, as run by L2UL).

Maximises the cross-entropy of the forget instances with SGD (momentum 0.9, weight decay
1e-4); the stopping rule is checked once per epoch over the forget loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from stakes_core.methods.base import (
    MethodConfig,
    UnlearnContext,
    UnlearningMethod,
    forget_batches,
    trainable_copy,
)


@dataclass
class SGDMethodConfig(MethodConfig):
    """The baselines' optimiser: SGD with momentum and weight decay."""

    momentum: float = 0.9
    weight_decay: float = 1e-4


class NegGrad(UnlearningMethod):
    name = "neggrad"
    config_class = SGDMethodConfig
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Any]:
        return forget_batches(ctx, self.config.batch_size)

    def loss(self, ctx, batch, epoch, index, step):
        xf, yf = batch
        ascent = -F.cross_entropy(self.model(xf), yf)
        return ascent, {"forget_ce": -ascent.detach()}


def sgd_for(parameters, config: SGDMethodConfig) -> torch.optim.SGD:
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
