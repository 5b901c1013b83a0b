"""FT: fine-tune the original model on the retained images D_r (a reference; the protocol forbids D_r).

Published algorithm (FT as run by Jia et al., "Model Sparsity Can Simplify Machine Unlearning",
NeurIPS 2023, and by SalUn): starting from the original weights θ₀, minimise the cross-entropy
on D_r alone, ``θ ← θ − η ∇θ CE(f_θ(x_r), y_r)``, for a few epochs, so that the forget set is
forgotten only through catastrophic forgetting of what it alone taught the model. Source:
OPTML-Group/Unlearn-Sparse, ``unlearn/FT.py`` (README: lr 0.01, 10 epochs; SGD momentum 0.9,
weight decay 5e-4 from ``arg_parser.py``). Here: the same update with this package's SGD, one
shuffled pass over D_r per epoch from the method's own generator, batches of ``batch_size``
(128; the repository's default is 256) and the shared stopping rule checked after every epoch;
FT rarely reaches forget accuracy 0, so it usually runs its ``max_epochs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import SGDMethodConfig, hyperparameter, new_default
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import Batch, LossAndTerms, retain_batches, sgd_for, trainable_copy


@dataclass
class FinetuneConfig(SGDMethodConfig):
    """FT's published values: lr 0.01, 10 epochs over D_r, SGD momentum 0.9, weight decay 5e-4."""

    lr: float = new_default(SGDMethodConfig, "lr", 0.01)
    max_epochs: int = hyperparameter(
        10, "cap on passes over the retained images D_r (published: 10); higher fine-tunes longer and forgets more "
        "by drift; unit: epochs", key=True
    )
    weight_decay: float = new_default(SGDMethodConfig, "weight_decay", 5e-4)


class Finetune(UnlearningMethod[FinetuneConfig]):
    name = "finetune"
    config_class = FinetuneConfig
    data_access = "retain"
    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[Batch]:
        return retain_batches(ctx, self, self.config.batch_size, self.generator)

    def loss(self, ctx: UnlearnContext, batch: Batch, epoch: int, index: int, step: int) -> LossAndTerms:
        xr, yr = batch
        retain_ce = F.cross_entropy(self.model(xr), yr)
        return retain_ce, {"retain_ce": retain_ce.detach()}
