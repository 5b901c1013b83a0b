"""SCRUB: a student distilled from the original model away from it on D_f and towards it on D_r (a reference; uses D_r).

Published algorithm (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023):
the student starts as a copy of the original model (the teacher, frozen). With the distillation
divergence ``d_T(x) = T² · KL(softmax(t(x)/T) ‖ softmax(s(x)/T))`` (teacher logits ``t``, student
logits ``s``, averaged over the batch), each epoch ``e < msteps`` first takes a *max-pass* over
the forget batches, minimising ``−d_T`` (pushing the student away from the teacher on D_f), then
a *min-pass* over the retain batches minimising ``γ·CE(s(x_r), y_r) + α·d_T(x_r)``; later epochs
take the min-pass only. Source: meghdadk/SCRUB, ``thirdparty/repdistiller/helper/loops.py``
(``train_distill``, its ``DistillKL``) and the small-scale notebooks, whose values are this
method's defaults: Adam, lr 5e-4, 10 epochs, msteps 3, T 2, γ 1, α 0.5.

What differs here: the optimiser is ``torch.optim.Adam`` without weight decay or learning-rate
decay (copies of the small-scale notebook add Adam weight decay and ×0.1 steps late in the run),
there is no β·KD term (zero in the ``kd`` setting) and no averaged (SWA) model; the forget and
retain batches both have ``batch_size`` images, the forget set in fixed order and D_r reshuffled
every epoch from the method's own generator. The shared stopping rule is checked after every
epoch, as the published loop evaluates per epoch: checking per step could stop inside a max-pass,
before the min-pass that repairs D_r, leaving a model the published algorithm never returns.
There is no retain-free SCRUB: without D_r only the max-pass (KL ascent on D_f) would remain,
which is not SCRUB, so none is offered.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import MethodConfig, hyperparameter
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import LossAndTerms, forget_batches, retain_batches, trainable_copy

ScrubBatch = tuple[str, torch.Tensor, torch.Tensor]
"""The pass (``"max"`` on D_f or ``"min"`` on D_r), images and labels."""


@dataclass
class SCRUBConfig(MethodConfig):
    """SCRUB's small-scale values (Adam lr 5e-4, 10 epochs, msteps 3, T 2, γ 1, α 0.5)."""

    lr: float = hyperparameter(
        5e-4, "Adam learning rate of the student (published small scale: 5e-4); higher moves it further per step; "
        "unit: none (a step-size multiplier)",
        key=True,
    )
    max_epochs: int = hyperparameter(
        10, "cap on SCRUB epochs, each a min-pass over D_r after a max-pass over D_f while the epoch is below msteps "
        "(published: 10); higher distils longer; unit: epochs", key=True
    )
    msteps: int = hyperparameter(
        3, "epochs (counted from 0) that start with a max-pass over the forget set (published: 3); higher pushes "
        "the student further from the teacher on D_f; unit: epochs"
    )
    temperature: float = hyperparameter(
        2.0, "distillation temperature T of both KL terms, which are scaled by T² (published small scale: 2); higher "
        "compares softer output distributions; unit: none (divides the logits)"
    )
    gamma: float = hyperparameter(
        1.0, "weight γ of the cross-entropy on D_r in the min-pass (published: 1); higher fits the retained labels "
        "more; unit: none (a loss weight)"
    )
    alpha: float = hyperparameter(
        0.5, "weight α of the KL to the teacher on D_r in the min-pass (published small scale: 0.5); higher keeps "
        "the student closer to the original on D_r; unit: none (a loss weight)"
    )


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))`` averaged over the batch: SCRUB's (and Hinton's)
    distillation divergence of the student from the teacher."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="batchmean") * temperature**2


class SCRUB(UnlearningMethod[SCRUBConfig]):
    name = "scrub"
    config_class = SCRUBConfig
    data_access = "retain"
    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        if self.config.msteps < 0 or self.config.temperature <= 0:
            raise ConfigError(
                f"scrub needs msteps ≥ 0 and temperature > 0, got {self.config.msteps} and {self.config.temperature}"
            )
        self.model = trainable_copy(ctx.original)
        self.teacher = copy.deepcopy(ctx.original).eval()  # its own copy: the shared original is never touched
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.lr)
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[ScrubBatch]:
        if epoch < self.config.msteps:
            for xf, yf in forget_batches(ctx, self.config.batch_size):
                yield "max", xf, yf
        for xr, yr in retain_batches(ctx, self, self.config.batch_size, self.generator):
            yield "min", xr, yr

    def loss(self, ctx: UnlearnContext, batch: ScrubBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        phase, x, y = batch
        logits = self.model(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        divergence = distillation_kl(logits, teacher_logits, self.config.temperature)
        if phase == "max":
            return -divergence, {"forget_kl": divergence.detach()}
        retain_ce = F.cross_entropy(logits, y)
        total = self.config.gamma * retain_ce + self.config.alpha * divergence
        return total, {"retain_ce": retain_ce.detach(), "retain_kl": divergence.detach()}
