"""Deletion requests that arrive one after another: continual unlearning, round by round.

A *sequence* is T disjoint forget sets F_1..F_T (drawn from the seed, or given). Each *arm* (a
method, and for StructGuard its reference) serves them in order: round t unlearns F_t from the
model round t−1 left, with only what the protocol allows that round — F_t, and a proxy set
recomputed on the current model (``UnlearnContext.original`` is the current model). Each arm's
sequence is independent of the others'.

StructGuard's ``reference`` (arm ``structguard`` or ``structguard@original``, and
``structguard@previous``): where ``S^ori`` and the regulariser's anchor weights ψ⁰ come from.
``original`` takes them from the pretrained model in every round (the paper's text names the
frozen *original* model g_ψ0, method.md §3); ``previous`` from the model the previous round
produced, which makes every round a fresh one-shot request. Parameters the pretrained model
lacks (projectors of earlier rounds) are anchored at their round-start values under both.

A StructGuard round deploys ``h∘p∘g``; the next round sees it as a plain backbone
(:class:`StackedModel`, features ``p(g(x))``) and adds its own projector, so after T rounds the
model holds T projectors. Collapse is measured on the innermost backbone features ``g(x)``
(through ``R``), the embedding every method shares in the one-shot runs too.

Rounds are stored and resumed by :mod:`stakes_core.run.continual_store`.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace
from numbers import Integral
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import nn

from stakes_core.data import ImageDataset, choose_probe_indices, retain_indices
from stakes_core.data.forget import check_seed
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import METHODS, ProjectedClassifier, StepRecord, UnlearnContext, create_method
from stakes_core.methods.structguard import StructGuard
from stakes_core.metrics.accuracy import accuracy
from stakes_core.metrics.structure import StructureProbe, structure_discrepancy
from stakes_core.run.config import ExperimentConfig

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

REFERENCES = ("original", "previous")
"""StructGuard's reference structure in a sequence (see the module docstring)."""

CONTINUAL_VERSION = 1
"""Version of the round protocol and its metrics; bump it when a change alters stored rounds."""


class SequenceError(ConfigError):
    """A request sequence that cannot be served (sizes, overlaps, an emptied class, T ≤ 0)."""


@dataclass(frozen=True)
class Arm:
    """One method serving the sequence; ``reference`` matters for StructGuard only."""

    method: str
    reference: str = "original"

    @property
    def name(self) -> str:
        return f"{self.method}@previous" if self.reference == "previous" else self.method


def parse_arm(text: str) -> Arm:
    """``"l2ul"`` → ``Arm("l2ul")``; ``"structguard@previous"`` → StructGuard with that reference."""
    method, _, reference = text.partition("@")
    METHODS.get(method)
    if method == "oracle":
        raise SequenceError(
            "oracle cannot serve a sequence: it retrains on the retain set, which the protocol withholds"
        )
    if reference and method != "structguard":
        raise SequenceError(f"'{text}': only structguard takes a reference (structguard@original or @previous)")
    if reference and reference not in REFERENCES:
        raise SequenceError(f"'{text}': reference '{reference}' is not one of {', '.join(REFERENCES)}")
    return Arm(method, reference or "original")


def parse_arms(texts: Sequence[str]) -> list[Arm]:
    """Arms from their names, each once (``structguard`` and ``structguard@original`` are one arm)."""
    arms = [parse_arm(text) for text in texts]
    if not arms:
        raise SequenceError("choose at least one method")
    repeated = sorted({arm.name for arm in arms if arms.count(arm) > 1})
    if repeated:
        raise SequenceError(f"method {', '.join(repeated)} is named more than once: name each once")
    return arms


# --- the sequence --------------------------------------------------------------------------------
def draw_sequence(num_train: int, k: int, rounds: int, seed: int) -> list[list[int]]:
    """T disjoint forget sets of ``k``: consecutive slices of the seeded permutation the one-shot
    runs draw from, so F_1 is the one-shot forget set of ``k`` and a longer sequence extends a
    shorter one."""
    seed = check_seed(seed)
    rounds = check_rounds(rounds)
    if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
        raise SequenceError(f"k={k!r} is invalid: choose a whole number k ≥ 1 per round")
    if rounds * k >= num_train:
        raise SequenceError(
            f"rounds × k = {rounds} × {k} = {rounds * k} is more than the {num_train} training images can give "
            f"(keep rounds × k < {num_train})"
        )
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    return [order[t * k : (t + 1) * k].tolist() for t in range(rounds)]


def check_rounds(rounds: object) -> int:
    """``rounds`` as an int ≥ 1, or a one-line error."""
    if isinstance(rounds, bool) or not isinstance(rounds, Integral) or int(rounds) < 1:
        raise SequenceError(f"rounds={rounds!r} is invalid: a sequence has at least 1 round (T ≥ 1)")
    return int(rounds)


def check_sequence(sets: Sequence[Sequence[int]], dataset: ImageDataset) -> list[list[int]]:
    """The sets as lists, refused in one line when one is empty, repeats or leaves the training
    set, when two overlap, or when together they would forget every image of a class."""
    check_rounds(len(sets))
    checked: list[list[int]] = []
    owner: dict[int, int] = {}
    for t, chosen in enumerate(sets, start=1):
        indices = [int(i) for i in chosen]
        if not indices:
            raise SequenceError(f"forget set {t} is empty: each request forgets at least one image")
        bad = [i for i in indices if not 0 <= i < dataset.num_train]
        if bad:
            raise SequenceError(
                f"forget set {t} names index {bad[0]}, outside the training set (0..{dataset.num_train - 1})"
            )
        if len(set(indices)) < len(indices):
            raise SequenceError(f"forget set {t} names an image more than once")
        for i in indices:
            if i in owner:
                raise SequenceError(
                    f"forget sets {owner[i]} and {t} overlap (image {i}): the requests of a sequence must be disjoint"
                )
            owner[i] = t
        checked.append(indices)
    union = torch.tensor(sorted(owner))
    labels = dataset.train_labels
    for c, name in enumerate(dataset.classes):
        if int((labels == c).sum()) == int((labels[union] == c).sum()):
            raise SequenceError(
                f"the {len(checked)} forget sets take every training image of class '{name}' "
                f"({int((labels == c).sum())}): no class can be forgotten whole; use fewer rounds or a smaller k"
            )
    return checked


# --- models across rounds --------------------------------------------------------------------------
class StackedModel(nn.Module):
    """A deployed ``h∘p∘g`` seen as a plain backbone for the next round: ``features`` is
    ``p(g(x))``, so ``forward == classifier(features(x))`` and a method can unlearn it."""

    def __init__(self, deployed: ProjectedClassifier) -> None:
        super().__init__()
        self.inner = deployed
        self.feature_dim = deployed.feature_dim

    @property
    def classifier(self) -> nn.Linear:
        return self.inner.classifier

    def gradcam_layer(self, stage: str | None = None) -> nn.Module:
        return self.inner.gradcam_layer(stage)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner.projector(self.inner.backbone.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def next_model(deployed: nn.Module) -> nn.Module:
    """The model a round hands to the next one (a deployed ``h∘p∘g`` is wrapped as a backbone)."""
    return StackedModel(deployed) if isinstance(deployed, ProjectedClassifier) else deployed


def innermost_backbone(model: nn.Module) -> nn.Module:
    """The pretrained architecture inside a round's model: the ``g`` every method shares."""
    while isinstance(model, (StackedModel, ProjectedClassifier)):
        model = model.inner if isinstance(model, StackedModel) else model.backbone
    return model


def round_architecture(original: BackboneModule, method: str, rounds: int, anchor_dim: int) -> nn.Module:
    """An untrained module shaped like ``method``'s model after ``rounds`` rounds, into which the
    stored ``state_dict`` of that round loads."""
    model: nn.Module = copy.deepcopy(original)
    for _ in range(rounds):
        model = next_model(METHODS.get(method).deployed_architecture(model, anchor_dim))  # type: ignore[arg-type]
    return model


def frozen(model: nn.Module) -> nn.Module:
    """``model`` in eval mode without gradients: how a round's starting model is held."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class ReferencedStructGuard(StructGuard):
    """StructGuard whose ``S^ori`` and regulariser anchors ψ⁰ come from ``reference`` (the
    pretrained model) instead of the round's starting model."""

    def __init__(self, reference: nn.Module, **overrides: Any) -> None:
        super().__init__(**overrides)
        self.reference_model = reference

    def setup(self, ctx: UnlearnContext) -> None:
        super().setup(ctx)
        names = {id(p): name for name, p in self.model.named_parameters()}
        source = dict(self.reference_model.named_parameters())
        for name, parameter in innermost_backbone(self.model).named_parameters():
            self.reference[names[id(parameter)]] = source[name].detach().clone().to(parameter.device)

    def structure_reference(self, ctx: UnlearnContext) -> BackboneModule:
        return self.reference_model  # type: ignore[return-value]


# --- one round -----------------------------------------------------------------------------------
@dataclass
class Pieces:
    """What every round of one seed shares: the dataset, the pretrained model, anchors, projection
    and the probe of retained images on which collapse is measured."""

    config: ExperimentConfig
    dataset: ImageDataset
    original: nn.Module
    anchors: torch.Tensor
    projection: torch.Tensor | None
    probe_idx: torch.Tensor
    accel: Any

    def structure(self, model: nn.Module, keep: torch.Tensor) -> torch.Tensor:
        """``S`` of the probe images in ``keep`` under ``model``'s innermost backbone ``g``."""
        probe = StructureProbe(self.dataset.train_images[keep], self.anchors, innermost_backbone(model),
                               self.projection, self.config.device)
        return probe.reference


@dataclass
class RoundRecord:
    """The measurements of one round of one arm and seed (accuracies in %, seconds of the request)."""

    arm: str
    seed: int
    round: int
    k: int
    forget_acc: float
    earlier_forget_acc: list[float]
    retain_acc: float
    test_acc: float
    collapse_original: float
    collapse_previous: float
    seconds: float
    steps: int
    reached_zero: bool

    @property
    def relapse(self) -> float:
        """Mean forget accuracy on the earlier sets F_<t (NaN in round 1): above 0 means relapse."""
        values = self.earlier_forget_acc
        return sum(values) / len(values) if values else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {**{key: getattr(self, key) for key in self.__dataclass_fields__}, "relapse": self.relapse}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RoundRecord":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def arm_config(config: ExperimentConfig, arm: Arm) -> ExperimentConfig:
    """``config`` narrowed to the arm's method and its hyperparameters."""
    return replace(config, methods=[arm.method], method_configs={arm.method: config.method_configs.get(arm.method, {})})


def run_round(
    pieces: Pieces,
    arm: Arm,
    sets: list[list[int]],
    t: int,
    current: nn.Module,
    progress: bool = False,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> tuple[nn.Module, RoundRecord]:
    """Serve request ``t`` (1-based) from ``current`` and measure the model it leaves."""
    config, dataset = pieces.config, pieces.dataset
    forget = torch.tensor(sets[t - 1])
    served = torch.tensor([i for s in sets[:t] for i in s])
    keep = pieces.probe_idx[~torch.isin(pieces.probe_idx, served)]
    start_model = frozen(current)
    probe = StructureProbe(dataset.train_images[keep], pieces.anchors, start_model, pieces.projection, config.device)
    context = UnlearnContext(
        start_model, dataset, forget, pieces.anchors, probe, pieces.projection, config.seed,  # type: ignore[arg-type]
        config.device, progress, config.record_every, keep, accel=pieces.accel,
    )
    hyperparameters = config.method_configs.get(arm.method, {})
    method = (ReferencedStructGuard(pieces.original, **hyperparameters) if arm.method == "structguard"
              and arm.reference == "original" else create_method(arm.method, **hyperparameters))
    began = time.perf_counter()
    outcome = method.run(context, on_step)
    seconds = time.perf_counter() - began
    model = outcome.model.eval()
    device = config.device
    images, labels = dataset.train_images, dataset.train_labels
    retained = retain_indices(dataset.num_train, served)
    after = pieces.structure(model, keep)
    record = RoundRecord(
        arm=arm.name, seed=config.seed, round=t, k=len(sets[t - 1]),
        forget_acc=accuracy(model, images[forget], labels[forget], device=device),
        earlier_forget_acc=[accuracy(model, images[s], labels[s], device=device) for s in sets[: t - 1]],
        retain_acc=accuracy(model, images[retained], labels[retained], device=device),
        test_acc=accuracy(model, dataset.test_images, dataset.test_labels, device=device),
        collapse_original=structure_discrepancy(pieces.structure(pieces.original, keep), after).item(),
        collapse_previous=structure_discrepancy(pieces.structure(start_model, keep), after).item(),
        seconds=seconds, steps=outcome.steps, reached_zero=outcome.reached_zero,
    )
    return next_model(model), record


def probe_indices(num_train: int, size: int, seed: int) -> torch.Tensor:
    """The seeded probe of the sequence, drawn from the whole training set so it does not depend
    on T; each round measures on the probe images not forgotten yet."""
    return choose_probe_indices(num_train, torch.empty(0, dtype=torch.long), size, seed)

