"""Oracle: the reference that may use the retain set (method.md §4.5).

Each step ascends the forget loss and descends the loss of a shuffled batch of retained
training images; it stops once forget accuracy is 0. It is not a fair competitor — the
instance-wise setting forbids the retain set — but shows what access to it buys.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
import torch.nn.functional as F

from stakes_core.data import to_float
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import SGDMethodConfig
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import LossAndTerms, forget_batches, sgd_for, trainable_copy

RetainBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""Retained images, their labels, forget images, their labels."""


class Oracle(UnlearningMethod[SGDMethodConfig]):
    name = "oracle"
    config_class = SGDMethodConfig
    uses_global_rng = False
    data_access = "retain"

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)
        self.retain = ctx.retained(self)
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[RetainBatch]:
        order = self.retain[torch.randperm(self.retain.numel(), generator=self.generator)]
        forget = itertools.cycle(forget_batches(ctx, self.config.batch_size))
        size = self.config.batch_size
        for start in range(0, order.numel(), size):
            idx = order[start : start + size]
            xr = to_float(ctx.dataset.train_images[idx]).to(ctx.device)
            yield xr, ctx.dataset.train_labels[idx].to(ctx.device), *next(forget)

    def loss(self, ctx: UnlearnContext, batch: RetainBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        xr, yr, xf, yf = batch
        forget_ce = F.cross_entropy(self.model(xf), yf)
        retain_ce = F.cross_entropy(self.model(xr), yr)
        return retain_ce - forget_ce, {"forget_ce": forget_ce.detach(), "retain_ce": retain_ce.detach()}
