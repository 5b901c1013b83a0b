"""l1-sparse: unlearning with a decaying L1 penalty on the weights, on D_f alone or (as published) on D_r.

Published algorithm (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023):
fine-tune the original model on D_r with ``CE(f_θ(x_r), y_r) + α_t‖θ‖₁``, where the L1 weight
decays linearly over the epochs, ``α_t = α·(1 − t/(T − no_l1_epochs))`` in epoch ``t`` (from 0) of
``T``, and is 0 in the last ``no_l1_epochs``: sparsity is promoted early, then the model is left to
recover. ``‖θ‖₁`` runs over every parameter (convolutions, batch-norm affine weights, biases).
Source: OPTML-Group/Unlearn-Sparse, ``unlearn/FT.py::FT_l1`` (README: lr 0.01, 10 epochs; SGD
momentum 0.9, weight decay 5e-4 from ``arg_parser.py``; the README leaves ``--alpha`` open, and
scripts built on the repository, such as JingWu321/Scissorhands ``Classification/sh/``, pass
1e-4, this package's default). The same repository's ``unlearn/GA.py`` has the retain-free
form ``GA_l1``: ``−CE(f_θ(x_f), y_f) + α_t‖θ‖₁`` on D_f.

Two methods here, sharing the schedule (:func:`l1_weight`):

- ``l1_sparse`` (retain-free, D_f only): GA_l1 with NegGrad's settings (SGD momentum 0.9, weight
  decay 1e-4, the forget set in fixed order) and the paper's cap of 101 epochs as ``T``. It
  usually stops at the shared target well before ``T``, when α_t has fallen only part of the way.
- ``l1_sparse_dr`` (uses D_r, as published): FT_l1 with lr 0.01, 10 epochs, weight decay 5e-4, one
  shuffled pass over D_r per epoch from the method's own generator, batches of ``batch_size``
  (128; the repository's default is 256). Like FT it rarely reaches forget accuracy 0.

Both check the shared stopping rule after every epoch, the unit of the schedule and of the
published evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import SGDMethodConfig, hyperparameter, new_default
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import Batch, LossAndTerms, forget_batches, retain_batches, sgd_for, trainable_copy


@dataclass
class L1SparseConfig(SGDMethodConfig):
    """NegGrad's optimiser with the L1 weight α and its schedule."""

    alpha: float = hyperparameter(
        1e-4, "L1 weight α at epoch 0, decaying linearly to 0 (published scripts: 1e-4); higher pushes more weights "
        "towards 0; unit: none (a loss weight on the sum of |θ|)",
        key=True,
    )
    no_l1_epochs: int = hyperparameter(
        0, "last epochs of max_epochs in which the L1 weight is already 0 (published default: 0); higher ends the "
        "decay earlier; unit: epochs"
    )


@dataclass
class L1SparseRetainConfig(L1SparseConfig):
    """FT_l1's published values: lr 0.01, 10 epochs over D_r, weight decay 5e-4."""

    lr: float = new_default(SGDMethodConfig, "lr", 0.01)
    max_epochs: int = hyperparameter(
        10, "cap on passes over the retained images D_r, also the T of the L1 schedule (published: 10); higher "
        "fine-tunes longer and decays the L1 weight more slowly; unit: epochs", key=True
    )
    weight_decay: float = new_default(SGDMethodConfig, "weight_decay", 5e-4)


def l1_weight(alpha: float, epoch: int, max_epochs: int, no_l1_epochs: int) -> float:
    """``α·(1 − epoch/(max_epochs − no_l1_epochs))``, clamped at 0: the L1 weight of ``epoch``
    (from 0), falling linearly from α to 0 at epoch ``max_epochs − no_l1_epochs``."""
    decay_epochs = max_epochs - no_l1_epochs
    if no_l1_epochs < 0 or decay_epochs < 1:
        raise ConfigError(f"no_l1_epochs must be in [0, max_epochs), got {no_l1_epochs} with max_epochs {max_epochs}")
    return alpha * max(0.0, 1.0 - epoch / decay_epochs)


def l1_norm(model: torch.nn.Module) -> torch.Tensor:
    """``‖θ‖₁`` over every parameter of ``model``."""
    return torch.stack([parameter.abs().sum() for parameter in model.parameters()]).sum()


class L1Sparse(UnlearningMethod[L1SparseConfig]):
    name = "l1_sparse"
    config_class = L1SparseConfig
    data_access = "forget"
    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        l1_weight(self.config.alpha, 0, self.config.max_epochs, self.config.no_l1_epochs)  # a bad schedule fails now
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Batch]:
        return forget_batches(ctx, self.config.batch_size)

    def data_loss(self, x: torch.Tensor, y: torch.Tensor) -> LossAndTerms:
        """The data term: the forget cross-entropy, ascended."""
        forget_ce = F.cross_entropy(self.model(x), y)
        return -forget_ce, {"forget_ce": forget_ce.detach()}

    def loss(self, ctx: UnlearnContext, batch: Batch, epoch: int, index: int, step: int) -> LossAndTerms:
        data, terms = self.data_loss(*batch)
        weight = l1_weight(self.config.alpha, epoch, self.config.max_epochs, self.config.no_l1_epochs)
        norm = l1_norm(self.model)
        terms.update(l1=norm.detach(), l1_weight=torch.tensor(weight, device=norm.device))
        return data + weight * norm, terms


class L1SparseRetain(L1Sparse):
    name = "l1_sparse_dr"
    config_class = L1SparseRetainConfig
    config: L1SparseRetainConfig
    data_access = "retain"

    def setup(self, ctx: UnlearnContext) -> None:
        super().setup(ctx)
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Batch]:
        return retain_batches(ctx, self, self.config.batch_size, self.generator)

    def data_loss(self, x: torch.Tensor, y: torch.Tensor) -> LossAndTerms:
        """The data term: the retain cross-entropy, descended."""
        retain_ce = F.cross_entropy(self.model(x), y)
        return retain_ce, {"retain_ce": retain_ce.detach()}
