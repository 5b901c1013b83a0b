"""The shared unlearning loop: every method is a small subclass of :class:`UnlearningMethod`.

The base class owns what all methods share: seeding, the epoch/step loop, the stopping rule
(stop once forget accuracy is 0, checked after every step or every epoch), per-step records
of forget accuracy and structural collapse, step callbacks and a timing breakdown. A subclass
says how to prepare (``setup``), what one epoch's batches are (``epoch_batches``) and what one
step's loss is (``loss``); a few override ``deployed`` or ``structure_views``.

On an accelerator the loop waits for the device once per step: the step's record (loss,
terms, forget accuracy, collapse) is computed on the device and copied to the host in one
transfer, which the stopping rule needs anyway. Work the device still has queued is charged
to the phase that waits for it (``"evaluation"``), so the phases add up to the request's wall
time but the split between steps and evaluation is approximate on a GPU.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from stakes_core.data import ImageDataset, to_float
from stakes_core.infra.accel import DEFAULT, Acceleration
from stakes_core.methods.attacks import PGDConfig, draw_targets, targeted_l2_pgd
from stakes_core.metrics.accuracy import correct_fraction
from stakes_core.metrics.structure import Embedder, StructureProbe, backbone_embedder, structure_discrepancy


@dataclass
class MethodConfig:
    """Hyperparameters every method has. ``max_epochs`` caps the loop (the paper: 101 epochs,
    ``range(0, max_iter + 1)`` with max_iter 100); ``stop_from_epoch`` is the first epoch in
    which the stopping rule may fire."""

    lr: float = 1e-3
    batch_size: int = 128
    max_epochs: int = 101
    stop_from_epoch: int = 0


@dataclass
class StepRecord:
    """What was measured right after one unlearning step (step 0 is the original model)."""

    step: int
    epoch: int
    forget_acc: float
    collapse: float
    collapse_projector: float
    loss: float
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)


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


@dataclass
class UnlearnContext:
    """What every method of one run starts from. The full ``dataset`` is here for evaluation
    and for the oracle; the instance-wise methods use only the forget set (and the count
    ``num_retained``), never the retained images. ``accel`` holds the opt-in bf16 autocast and
    channels_last settings (off by default)."""

    original: torch.nn.Module
    dataset: ImageDataset
    forget_idx: torch.Tensor
    anchors: torch.Tensor
    probe: StructureProbe
    projection: torch.Tensor | None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    record_every: int = 1
    probe_idx: torch.Tensor | None = None
    proxy_cache: dict[Any, tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=dict)
    unlearned: dict[str, torch.nn.Module] = field(default_factory=dict)
    accel: Acceleration = DEFAULT

    @cached_property
    def forget_images(self) -> torch.Tensor:
        return to_float(self.dataset.train_images[self.forget_idx]).to(self.device)

    @cached_property
    def forget_labels(self) -> torch.Tensor:
        return self.dataset.train_labels[self.forget_idx].to(self.device)

    @property
    def num_retained(self) -> int:
        return self.dataset.num_train - self.forget_idx.numel()

    def proxy_set(
        self,
        n_adv: int,
        pgd: PGDConfig,
        target_rule: str,
        timer: "Timer",
        attacked: torch.nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targeted L2-PGD examples of the forget set, ``n_adv`` per instance, labelled with their
        targets (the retain-set stand-in). Cached per settings, so methods sharing them share
        one set; a method served from the cache is still charged the generation time in its
        ``"proxy"`` phase, so its seconds are those of a request that ran alone. ``attacked``
        defaults to the original model."""
        attacked = attacked if attacked is not None else self.original
        key = (n_adv, pgd, target_rule, id(attacked), self.accel)
        if key in self.proxy_cache:
            images, targets, seconds = self.proxy_cache[key]
            timer.seconds["proxy"] += seconds
            return images, targets
        with timer.phase("proxy"):
            start = time.perf_counter()
            images, targets = build_proxy_set(
                attacked,
                self.forget_images,
                self.forget_labels,
                n_adv,
                self.dataset.num_classes,
                pgd,
                target_rule,
                torch.Generator().manual_seed(self.seed),
                progress=self.progress,
                accel=self.accel,
            )
            self.proxy_cache[key] = (images, targets, time.perf_counter() - start)
        return images, targets


def build_proxy_set(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_adv: int,
    num_classes: int,
    pgd: PGDConfig,
    target_rule: str,
    generator: torch.Generator,
    batch_size: int = 128,
    attack_chunk: int = 2048,
    progress: bool = False,
    accel: Acceleration = DEFAULT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy set in the authors' order (per forget batch of ``batch_size``, ``n_adv``
    repetitions of that batch), attacked ``attack_chunk`` images at a time in eval mode (all
    k·n_adv attacks in one batch up to that size; with ``accel.channels_last``, on a
    channels_last copy of ``model``)."""
    if n_adv < 1:
        raise ValueError(f"n_adv must be ≥ 1, got {n_adv}")
    sources, targets = [], []
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        for _ in range(n_adv):
            sources.append(x)
            targets.append(draw_targets(y.cpu(), num_classes, target_rule, generator).to(y.device))
    sources_all, targets_all = torch.cat(sources), torch.cat(targets)
    was_training = model.training
    model.eval()
    attacked = accel.model(copy.deepcopy(model)) if accel.channels_last else model
    adversarial = []
    try:
        chunks = range(0, sources_all.shape[0], attack_chunk)
        for start in tqdm(chunks, desc="proxy set (targeted L2-PGD)", disable=not progress, leave=False):
            stop = start + attack_chunk
            adversarial.append(
                targeted_l2_pgd(attacked, sources_all[start:stop], targets_all[start:stop], pgd, generator, accel)
            )
    finally:
        model.train(was_training)
    return torch.cat(adversarial), targets_all


def trainable_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of the (frozen) original model with gradients enabled, in train mode."""
    clone = copy.deepcopy(model).train()
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone


def forget_batches(ctx: UnlearnContext, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The forget set in fixed order, in batches (the paper's loaders are not shuffled)."""
    x, y = ctx.forget_images, ctx.forget_labels
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]


def paired_with_forget(
    ctx: UnlearnContext, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of ``zip(batches(images), cycle(forget batches))`` as in the paper's loop."""
    forget = itertools.cycle(forget_batches(ctx, batch_size))
    for start in range(0, images.shape[0], batch_size):
        xf, yf = next(forget)
        yield images[start : start + batch_size], labels[start : start + batch_size], xf, yf


def distance_penalty(
    model: torch.nn.Module, reference: dict[str, torch.Tensor], importance: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``½ Σ_j I_j (θ_j − θ⁰_j)²`` over the model's parameters (the L2UL / StructGuard regulariser)."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, parameter in model.named_parameters():
        total = total + (importance[name] * (parameter - reference[name]) ** 2).sum()
    return total / 2


class Timer:
    """Accumulates wall-clock seconds per named phase; a nested phase pauses the one around
    it, so the phases add up to the total without double counting."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((name, now))
        try:
            yield
        finally:
            _, since = self._stack.pop()
            now = time.perf_counter()
            self.seconds[name] += now - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], now)


StepCallback = Callable[[str, StepRecord], None]


def _checked_value(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the hyperparameter's default (an int is a valid float), or a
    ``ValueError`` now rather than a crash in the middle of a run."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif default is None:
        return value
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), "valid")
    raise ValueError(f"{method}.{key} must be {kind}, got {value!r}")


class UnlearningMethod(ABC):
    """Base class of every unlearning method (one file per method in this package).

    Subclasses set ``name``, ``config_class`` and ``stop_every`` (``"step"`` or ``"epoch"``),
    and create ``self.model`` and ``self.optimizer`` in ``setup``.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    stop_every: ClassVar[str] = "step"

    def __init__(self, config: MethodConfig | None = None, **overrides: Any) -> None:
        config = config if config is not None else self.config_class()
        known = {f.name for f in fields(config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"{self.name} has no hyperparameter {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        defaults = {f.name: getattr(config, f.name) for f in fields(config)}
        overrides = {key: _checked_value(self.name, key, value, defaults[key]) for key, value in overrides.items()}
        self.config = replace(config, **overrides) if overrides else config
        self.timer = Timer()
        self.model: torch.nn.Module
        self.optimizer: torch.optim.Optimizer

    # --- what a method defines -------------------------------------------------------------
    @abstractmethod
    def setup(self, ctx: UnlearnContext) -> None:
        """Prepare ``self.model`` (a copy of ``ctx.original``), the optimiser and any proxy set."""

    @abstractmethod
    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterable[Any]:
        """The batches of one epoch."""

    @abstractmethod
    def loss(self, ctx: UnlearnContext, batch: Any, epoch: int, index: int, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one step and its named terms (for the records)."""

    def deployed(self) -> torch.nn.Module:
        """The classifier that is evaluated and shipped after unlearning."""
        return self.model

    @classmethod
    def deployed_architecture(cls, original: torch.nn.Module, anchor_dim: int) -> torch.nn.Module:
        """An untrained module shaped like this method's deployed model, into which its saved
        ``state_dict`` loads (how analyses rebuild unlearned models from a run directory)."""
        return copy.deepcopy(original)

    def structure_views(self, ctx: UnlearnContext) -> dict[str, Embedder]:
        """Embeddings whose collapse is recorded; ``"backbone"`` is the same for every method."""
        return {"backbone": backbone_embedder(self.model, ctx.projection)}

    def train_mode(self) -> None:
        """Put the trained modules in train mode before a step (the paper trains in train mode)."""
        self.model.train()

    # --- the loop ----------------------------------------------------------------------------
    def run(self, ctx: UnlearnContext, on_step: StepCallback | None = None) -> MethodOutcome:
        """Unlearn ``ctx.forget_idx`` until forget accuracy is 0 or ``max_epochs`` is spent."""
        torch.manual_seed(ctx.seed)
        with self.timer.phase("setup"):
            self.setup(ctx)
            ctx.accel.model(self.deployed())
        records = [self._record(ctx, 0, 0, math.nan, {}, 0.0)]
        start = time.perf_counter()
        reached_zero, step, epoch = False, 0, 0
        bar = tqdm(total=self.config.max_epochs, desc=self.name, disable=not ctx.progress, leave=False)
        for epoch in range(self.config.max_epochs):
            forget_acc = records[-1].forget_acc
            for index, batch in enumerate(self.epoch_batches(ctx, epoch)):
                with self.timer.phase("steps"):
                    self.train_mode()
                    self.optimizer.zero_grad(set_to_none=True)
                    with ctx.accel.autocast(ctx.device):
                        total, terms = self.loss(ctx, batch, epoch, index, step)
                    total.backward()
                    self.optimizer.step()
                step += 1
                record = self._record(ctx, step, epoch, total.detach(), terms, time.perf_counter() - start)
                records.append(record)
                forget_acc = record.forget_acc
                if on_step is not None:
                    on_step(self.name, record)
                if self.stop_every == "step" and epoch >= self.config.stop_from_epoch and forget_acc == 0:
                    reached_zero = True
                    break
            bar.update(1)
            bar.set_postfix(step=step, forget_acc=f"{forget_acc:.1f}")
            if reached_zero or (self.stop_every == "epoch" and epoch >= self.config.stop_from_epoch and forget_acc == 0):
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
        """Measure the deployed model and build the step's record with one device-to-host copy."""
        with self.timer.phase("evaluation"):
            deployed = self.deployed()
            was_training = deployed.training
            deployed.eval()
            scalars = {"forget_acc": correct_fraction(deployed, ctx.forget_images, ctx.forget_labels, device=ctx.device)}
            if force or step % ctx.record_every == 0:
                for view, embed in self.structure_views(ctx).items():
                    reference, current = ctx.probe.reference, ctx.probe.structure(embed, deployed)
                    scalars[view] = structure_discrepancy(reference, current)
            deployed.train(was_training)
            host = _to_host([*scalars.values(), loss, *terms.values()])
            values = dict(zip(scalars, host))
            loss, term_values = host[len(scalars)], host[len(scalars) + 1 :]
        return StepRecord(
            step, epoch, 100.0 * values["forget_acc"], values.get("backbone", math.nan),
            values.get("projector", math.nan), loss, seconds, dict(zip(terms, term_values)),
        )


def _to_host(values: list[float | torch.Tensor]) -> list[float]:
    """Python floats of scalars, with all device tensors copied in one transfer."""
    tensors = [v.detach().float().reshape(()) for v in values if isinstance(v, torch.Tensor)]
    moved = iter(torch.stack(tensors).tolist() if tensors else [])
    return [next(moved) if isinstance(v, torch.Tensor) else float(v) for v in values]
