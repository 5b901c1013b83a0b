"""The shared unlearning loop: every method is a small subclass of :class:`UnlearningMethod`.

The base class owns what all methods share: seeding, the epoch/step loop, the stopping rule
(stop once forget accuracy is at most the run's target: 0 as in the paper, or the retrained model's
forget accuracy; checked after every step or every epoch), per-step records
of forget accuracy and structural collapse, step callbacks and a timing breakdown. A subclass
says how to prepare (``setup``), what one epoch's batches are (``epoch_batches``) and what one
step's loss is (``loss``); a few override ``deployed``, ``structure_views``, ``train_mode`` or
``update`` (one step without a gradient), and every method declares the data it reads
(``data_access``, :mod:`stakes_core.methods.access`).

Every step runs in train mode, as in the paper, so the batch-norm running statistics of the
backbone move with every forward pass on the small forget and proxy batches, even where no
parameter moves. The option ``bn_stats`` every method has (:class:`MethodConfig`) keeps that
(``"train"``, the default) or freezes them (``"frozen"``): :meth:`UnlearningMethod.step_mode`
puts the batch-norm layers of ``self.model`` in eval mode after the method's own
``train_mode``, so a user's method gets the option without code of its own.

On an accelerator the loop waits for the device once per step: the step's record (loss,
terms, forget accuracy, collapse) is computed on the device and copied to the host in one
transfer, which the stopping rule needs anyway. Work the device still has queued is charged
to the phase that waits for it (``"evaluation"``), so the phases add up to the request's wall
time but the split between steps and evaluation is approximate on a GPU.
"""

from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Generic, Iterable, Protocol, TypeVar

import torch
from tqdm.auto import tqdm

from stakes_core.infra.modules import eval_mode
from stakes_core.methods.config import MethodConfig, checked_overrides
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.timing import Timer
from stakes_core.methods.training import LossAndTerms, freeze_batch_norm
from stakes_core.metrics.accuracy import correct_fraction
from stakes_core.metrics.records import StepRecord
from stakes_core.metrics.structure import Embedder, backbone_embedder, structure_discrepancy

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

LOOP_VERSION = 1
"""Version of the shared loop and its evaluation; bump it when a change here alters every
method's results (stored runs of the old version are then recomputed)."""

ConfigT = TypeVar("ConfigT", bound=MethodConfig)

StepCallback = Callable[[str, StepRecord], None]


class Optimizer(Protocol):
    """What the loop asks of ``self.optimizer``: a ``torch.optim`` optimiser or
    :class:`~stakes_core.methods.sgd.SGD`."""

    def zero_grad(self, set_to_none: bool = ...) -> None: ...

    def step(self) -> Any: ...


@dataclass
class MethodOutcome:
    """The unlearned model and the history of one method's run."""

    method: str
    config: dict[str, Any]
    model: torch.nn.Module
    records: list[StepRecord]
    timings: dict[str, float]
    reached_zero: bool

    @property
    def steps(self) -> int:
        return self.records[-1].step

    @property
    def epochs(self) -> int:
        return self.records[-1].epoch + 1 if self.steps else 0


class UnlearningMethod(ABC, Generic[ConfigT]):
    """Base class of every unlearning method (one file per method in this package).

    Subclasses set ``name``, ``config_class`` (the ``ConfigT`` they are parameterised with; a
    method without hyperparameters of its own keeps :class:`MethodConfig`) and ``stop_every``
    (``"step"`` or ``"epoch"``), and create ``self.model`` and ``self.optimizer`` in ``setup``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[ConfigT]] = MethodConfig  # type: ignore[assignment]
    stop_every: ClassVar[str] = "step"
    version: ClassVar[int] = 1
    """Bump it in a method's class when a change alters that method's results; stored runs of
    the old version are then recomputed."""
    data_access: ClassVar[str] = "forget"
    """What the method reads (:mod:`stakes_core.methods.access`): ``"forget"`` (D_f only, the
    paper's protocol), ``"retain"`` (D_f and the retained images D_r, which it gets from
    :meth:`UnlearnContext.retained`) or ``"retrain"`` (a new model trained on D_r)."""
    uses_global_rng: ClassVar[bool] = True
    """Whether the method draws from torch's process-wide random generator (seeded with the
    run's seed before ``setup``). Set it to ``False`` when every random draw uses an explicit
    ``torch.Generator``: the loop then leaves the global generator alone, and the method may run
    in a thread beside the other methods of a request (:mod:`stakes_core.run.parallel`)."""

    def __init__(self, config: ConfigT | None = None, **overrides: Any) -> None:
        self.config: ConfigT = checked_overrides(
            self.name, config if config is not None else self.config_class(), overrides
        )
        self.timer = Timer()
        self.model: BackboneModule
        self.optimizer: Optimizer

    # --- what a method defines -------------------------------------------------------------
    @abstractmethod
    def setup(self, ctx: UnlearnContext) -> None:
        """Prepare ``self.model`` (a copy of ``ctx.original``), the optimiser and any proxy set."""

    @abstractmethod
    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Any]:
        """The batches of one epoch."""

    @abstractmethod
    def loss(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> LossAndTerms:
        """The loss of one step and its named terms (for the records)."""

    def update(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> LossAndTerms:
        """One update of ``self.model`` from ``batch``: by default a gradient step on
        :meth:`loss`; a method that does not train by gradient (SSD's one-shot dampening)
        overrides this and returns its step's loss and terms for the records."""
        self.optimizer.zero_grad(set_to_none=True)
        with ctx.accel.autocast(ctx.device):
            total, terms = self.loss(ctx, batch, epoch, index, step)
        total.backward()
        self.optimizer.step()
        return total, terms

    def needs(self) -> tuple[str, ...]:
        """Methods whose unlearned model this one reads from ``ctx.unlearned`` in ``setup``; in
        a request that holds them, it starts after they have finished."""
        return ()

    def deployed(self) -> torch.nn.Module:
        """The classifier that is evaluated and shipped after unlearning."""
        return self.model

    @classmethod
    def deployed_architecture(cls, original: BackboneModule, anchor_dim: int) -> torch.nn.Module:
        """An untrained module shaped like this method's deployed model, into which its saved
        ``state_dict`` loads (how analyses rebuild unlearned models from a run directory)."""
        return copy.deepcopy(original)

    def structure_views(self, ctx: UnlearnContext) -> dict[str, Embedder]:
        """Embeddings whose collapse is recorded, each under its view's name (the ``steps.csv``
        column ``collapse_<view>``); ``"backbone"`` is the same for every method."""
        return {"backbone": backbone_embedder(self.model, ctx.projection)}

    def train_mode(self) -> None:
        """Put the trained modules in train mode before a step (the paper trains in train mode);
        an override need not handle ``bn_stats``, which :meth:`step_mode` applies afterwards."""
        self.model.train()

    def step_mode(self) -> None:
        """The modes of an update step: :meth:`train_mode`, then, under ``bn_stats="frozen"``,
        the batch-norm layers of ``self.model`` (the backbone being unlearned) in eval mode."""
        self.train_mode()
        if self.config.bn_stats == "frozen":
            freeze_batch_norm(self.model)

    # --- the loop ----------------------------------------------------------------------------
    def run(self, ctx: UnlearnContext, on_step: StepCallback | None = None) -> MethodOutcome:
        """Unlearn ``ctx.forget_idx`` until forget accuracy is at most ``ctx.stop_target`` (0, the
        paper's target, unless the run stops at the retrained model's) or ``max_epochs`` is spent."""
        if self.uses_global_rng:
            torch.manual_seed(ctx.seed)
        with self.timer.phase("setup"):
            self.setup(ctx)
            ctx.accel.model(self.deployed())
        records = [self._record(ctx, 0, 0, math.nan, {}, 0.0)]
        start = time.perf_counter()
        reached_zero, step, epoch = False, 0, 0
        target = ctx.stop_target
        bar = tqdm(total=self.config.max_epochs, desc=self.name, disable=not ctx.progress, leave=False)
        for epoch in range(self.config.max_epochs):
            forget_acc = records[-1].forget_acc
            for index, batch in enumerate(self.epoch_batches(ctx, epoch)):
                with self.timer.phase("steps"):
                    self.step_mode()
                    total, terms = self.update(ctx, batch, epoch, index, step)
                step += 1
                record = self._record(ctx, step, epoch, total.detach(), terms, time.perf_counter() - start)
                records.append(record)
                forget_acc = record.forget_acc
                if on_step is not None:
                    on_step(self.name, record)
                if self.stop_every == "step" and epoch >= self.config.stop_from_epoch and forget_acc <= target:
                    reached_zero = True
                    break
            bar.update(1)
            bar.set_postfix(step=step, forget_acc=f"{forget_acc:.1f}")
            epoch_rule = self.stop_every == "epoch" and epoch >= self.config.stop_from_epoch and forget_acc <= target
            if reached_zero or epoch_rule:
                reached_zero = True
                break
        bar.close()
        last = records[-1]
        if math.isnan(last.collapse):
            records[-1] = self._record(ctx, last.step, last.epoch, last.loss, last.terms, last.seconds, force=True)
        timings = dict(self.timer.seconds)
        deployed = self.deployed().eval()
        ctx.unlearned[self.name] = deployed
        return MethodOutcome(self.name, asdict(self.config), deployed, records, timings, reached_zero)

    def _record(
        self,
        ctx: UnlearnContext,
        step: int,
        epoch: int,
        loss: float | torch.Tensor,
        terms: dict[str, torch.Tensor] | dict[str, float],
        seconds: float,
        force: bool = False,
    ) -> StepRecord:
        """Measure the deployed model and build the step's record with one device-to-host copy;
        collapse is measured every ``ctx.record_every`` steps (NaN on the others)."""
        with self.timer.phase("evaluation"), eval_mode(self.deployed()) as deployed:
            forget = correct_fraction(deployed, ctx.forget_images, ctx.forget_labels, device=ctx.device)
            measured = force or step % ctx.record_every == 0
            views: dict[str, float | torch.Tensor] = {
                view: structure_discrepancy(ctx.probe.reference, ctx.probe.structure(embed, deployed))
                if measured else math.nan
                for view, embed in self.structure_views(ctx).items()
            }
            host = _to_host([forget, *views.values(), loss, *terms.values()])
        collapse, rest = host[1 : 1 + len(views)], host[1 + len(views) :]
        return StepRecord(
            step, epoch, 100.0 * host[0], dict(zip(views, collapse)), rest[0], seconds, dict(zip(terms, rest[1:]))
        )


def _to_host(values: list[float | torch.Tensor]) -> list[float]:
    """Python floats of scalars, with all device tensors copied in one transfer."""
    tensors = [v.detach().float().reshape(()) for v in values if isinstance(v, torch.Tensor)]
    moved = iter(torch.stack(tensors).tolist() if tensors else [])
    return [next(moved) if isinstance(v, torch.Tensor) else float(v) for v in values]
