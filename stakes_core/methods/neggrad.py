"""NegGrad: gradient ascent on the forget set (Golatkar et al. 2020, as run by L2UL).

Maximises the cross-entropy of the forget instances with SGD (momentum 0.9, weight decay
1e-4); the stopping rule is checked once per epoch over the forget loader.
"""

from __future__ import annotations

import torch.nn.functional as F

from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import SGDMethodConfig
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import Batch, LossAndTerms, forget_batches, sgd_for, trainable_copy


class NegGrad(UnlearningMethod[SGDMethodConfig]):
    name = "neggrad"
    config_class = SGDMethodConfig
    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> list[Batch]:
        return forget_batches(ctx, self.config.batch_size)

    def loss(self, ctx: UnlearnContext, batch: Batch, epoch: int, index: int, step: int) -> LossAndTerms:
        xf, yf = batch
        ascent = -F.cross_entropy(self.model(xf), yf)
        return ascent, {"forget_ce": -ascent.detach()}
