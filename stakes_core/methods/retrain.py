"""Retrain: the field's gold reference, a model trained from scratch without the forget set.

Not an unlearning method: it trains a new backbone on D_r = train \\ D_f with the preset's
pretraining recipe and seed (cached, :mod:`stakes_core.models.retrain`) and is measured like
every method, so each table has a retrain row and each method a gap to it. Its record has one
step (step 0, the retrained model): forget accuracy, and the collapse of its structure against
the original's, which says how far an honest retrain moves the retained instances. Its seconds
are the training time, as measured by the process that trained it (this run, before its methods
for ``stop_at="retrain"``, or an earlier one whose model came from the cache), as a method served
a shared proxy set is charged its generation time.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.base import MethodOutcome, StepCallback, UnlearningMethod
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import LossAndTerms


@dataclass
class RetrainConfig:
    """Retrain has no hyperparameters of its own: the preset's pretraining recipe decides it."""


class Retrain(UnlearningMethod[RetrainConfig]):  # type: ignore[type-var]
    name = "retrain"
    config_class = RetrainConfig
    data_access = "retrain"
    uses_global_rng = False

    def setup(self, ctx: UnlearnContext) -> None:
        if ctx.retrain is None:
            raise ConfigError("this run has no retrain reference (its context was built without a pretraining recipe)")
        reference = ctx.retrain.model(progress=ctx.progress)
        self.model = copy.deepcopy(reference.model).to(ctx.device).eval()
        self.training_seconds = reference.seconds

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Any]:
        return ()

    def loss(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> LossAndTerms:
        raise NotImplementedError("retrain takes no unlearning steps")

    def run(self, ctx: UnlearnContext, on_step: StepCallback | None = None) -> MethodOutcome:
        """Retrain (or load the cached retrain), then record the model once, as step 0."""
        self.setup(ctx)
        self.timer.seconds["retrain"] = self.training_seconds  # wherever and whenever it was trained
        record = self._record(ctx, 0, 0, math.nan, {}, 0.0, force=True)
        if on_step is not None:
            on_step(self.name, record)
        ctx.unlearned[self.name] = self.model
        return MethodOutcome(self.name, asdict(self.config), self.model, [record], dict(self.timer.seconds),
                             record.forget_acc <= ctx.stop_target)
