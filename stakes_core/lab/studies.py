"""Grids of cached runs and paired comparisons of variants, what the notebooks call.

A :class:`Study` is a set of runs (one per k × seed) of the same preset and methods; it runs
each through the run store (:func:`stakes_core.run.runstore.load_or_run`), so asking again costs
nothing. ``fast=True`` turns any study into a smoke run that finishes in seconds on a CPU:
k at most :data:`FAST_K`, the first :data:`FAST_SEEDS` seeds and every method capped at
:data:`FAST_EPOCHS` epochs (forget accuracy may then stay above 0).

:func:`compare_variants` runs one method under several variants (other hyperparameters,
another anchor source or encoder) on the same seeds and pairs them seed by seed, which is how
the ablations are shown: the paired difference to the reference with its spread, beside the
seed-to-seed spread of the reference itself (the noise band).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from stakes_core.anchors.variants import ANCHOR_SOURCES, random_orthogonal
from stakes_core.methods import METHODS, PAPER_METHODS
from stakes_core.metrics.structure import affinities, structure_discrepancy
from stakes_core.report.comparison import VariantComparison
from stakes_core.report.table import metric_value
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.presets import load_preset
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import load_or_run

FAST_K = 4
"""The largest k of a fast study."""
FAST_SEEDS = 2
"""How many of the given seeds a fast study keeps."""
FAST_EPOCHS = 8
"""The epoch cap of every method in a fast study."""


@dataclass
class Study:
    """Runs of ``methods`` on preset ``dataset`` for every k in ``ks`` and seed in ``seeds``.

    ``ks`` is one k, several, or ``None`` for the preset's own k values (digits: 4, 8, 16;
    CIFAR: 16, 64, 128, 256, the paper's).
    ``overrides`` are ``method.key=value`` hyperparameters; ``options`` go to
    :func:`~stakes_core.run.experiment.experiment_config` as they are (``encoder``,
    ``descriptions``, ``anchor_source``, ...).
    """

    dataset: str = "digits"
    ks: int | Sequence[int] | None = (16,)
    seeds: Sequence[int] = (0,)
    methods: Sequence[str] = PAPER_METHODS
    overrides: Sequence[str] = ()
    fast: bool = False
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def effective_ks(self) -> list[int]:
        """The k values run: all of ``ks``, or at most :data:`FAST_K` when fast."""
        if self.ks is None:
            ks = [int(k) for k in load_preset(self.dataset)["k"]]
        elif isinstance(self.ks, int):
            ks = [self.ks]
        else:
            ks = [int(k) for k in self.ks]
        return sorted({min(k, FAST_K) for k in ks}) if self.fast else ks

    @property
    def effective_seeds(self) -> list[int]:
        """The seeds run: all of ``seeds``, or the first :data:`FAST_SEEDS` when fast."""
        seeds = [int(s) for s in self.seeds]
        return seeds[:FAST_SEEDS] if self.fast else seeds

    @property
    def effective_overrides(self) -> list[str]:
        """``overrides``, after the epoch caps of a fast study (so the user's values win)."""
        capped = [m for m in self.methods if "max_epochs" in METHODS.get(m).config_class.__dataclass_fields__]
        caps = [f"{m}.max_epochs={FAST_EPOCHS}" for m in capped] if self.fast else []
        return caps + list(self.overrides)

    def config(self, k: int, seed: int) -> ExperimentConfig:
        """The configuration of one run of the study."""
        return experiment_config(
            self.dataset, k=k, seed=seed, methods=list(self.methods), overrides=self.effective_overrides,
            device=self.device, **self.options,
        )

    def configs(self) -> list[ExperimentConfig]:
        """One configuration per (k, seed), checked before anything runs."""
        return [self.config(k, seed) for k in self.effective_ks for seed in self.effective_seeds]

    def run(self, progress: bool = True, root: str | Path | None = None) -> list[Path]:
        """The run directories of the study, running (and storing) only those not stored yet."""
        configs = self.configs()
        bar = tqdm(configs, desc=f"{self.dataset} runs", disable=not progress or len(configs) < 2)
        return [load_or_run(config, root=root, progress=progress) for config in bar]

    def results(self, progress: bool = True, root: str | Path | None = None) -> list[RunResult]:
        """The runs of the study, loaded (their step records and metrics; no models)."""
        return [RunResult.load(directory) for directory in self.run(progress, root)]

    def with_changes(self, **changes: Any) -> "Study":
        """A copy with some fields changed (``options`` and ``overrides`` are replaced, not merged)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Variant:
    """One arm of a comparison: extra ``overrides`` and ``experiment_config`` ``options``."""

    name: str
    overrides: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, *overrides: str, **options: Any) -> "Variant":
        return cls(name, tuple(overrides), tuple(sorted(options.items())))


ABLATION_VARIANTS: tuple[Variant, ...] = (
    Variant.of("StructGuard (SA + SR + CR)"),
    Variant.of("w/o SA (alignment)", "structguard.align_weight=0"),
    Variant.of("w/o SR (regularisation)", "structguard.reg_lambda=0"),
    Variant.of("w/o CR (classifier term)", "structguard.cr_weight=0"),
)
"""The paper's ablation of StructGuard's three terms: SA = ``align_weight``·L_align,
SR = ``reg_lambda``·L_reg, CR = ``cr_weight``·L_CR. Without SA the regulariser keeps its
importance weights, which are gradients of L_align (the loss is only left out of the sum)."""


def preset_encoder(dataset: str) -> str:
    """The text encoder of a preset's anchors (``minilm`` on digits, CLIP ViT-B/32 on CIFAR)."""
    return str(load_preset(dataset)["anchors"]["encoder"])


def encoders_to_compare(dataset: str, extra: Sequence[str] = ()) -> list[str]:
    """The preset's encoder first, then each of ``extra`` once."""
    return list(dict.fromkeys([preset_encoder(dataset), *extra]))


def anchor_variants(sources: Sequence[str] = ("text", "rotated", "prototypes"),
                    encoders: Sequence[str] = ("random:384",), skip: Sequence[str] = ()) -> list[Variant]:
    """Arms of the anchor ablation: each anchor source with the preset's encoder (``text`` is
    the paper's), then the text anchors of each extra encoder not in ``skip`` (``random:DIM`` =
    random unit anchors, ``minilm``, ``clip:ARCH/PRETRAINED``)."""
    names = {"text": "text anchors (preset encoder)", "rotated": "text anchors, randomly rotated",
             "prototypes": "visual prototypes"}
    arms = [Variant.of(names.get(s, s), anchor_source=s) for s in sources]
    extra = [e for e in dict.fromkeys(encoders) if e not in skip]
    return arms + [Variant.of(f"text anchors, encoder {e}", encoder=e) for e in extra]


def space_variants(space: str, sources: Sequence[str] = ("text", "permuted", "random")) -> list[Variant]:
    """Arms of the anchor controls in one of StructGuard's structure spaces
    (:mod:`stakes_core.methods.structure_space`): the text anchors first, then each control source."""
    overrides = (f"structguard.structure_space={space}",) if space != "paper" else ()
    return [Variant.of(f"{space} / {ANCHOR_SOURCES.get(source, source)}", *overrides, anchor_source=source)
            for source in sources]


def compare_variants(
    study: Study, variants: Sequence[Variant], method: str = "structguard", progress: bool = True,
    metrics: Sequence[str] = ("retain_acc", "forget_acc", "test_acc", "mean_collapse", "final_collapse"),
    root: str | Path | None = None,
) -> VariantComparison:
    """Run ``method`` under every variant of ``study`` (its first k, all its seeds), paired by seed."""
    k = study.effective_ks[0]
    base = study.with_changes(methods=[method], ks=[k])
    values: dict[str, dict[str, list[float]]] = {}
    reached: dict[str, int] = {}
    bar = tqdm(variants, desc="variants", disable=not progress)
    for variant in bar:
        bar.set_postfix_str(variant.name)
        arm = base.with_changes(overrides=[*base.overrides, *variant.overrides],
                                options={**base.options, **dict(variant.options)})
        runs = arm.results(progress=progress, root=root)
        values[variant.name] = {m: [metric_value(run, method, m) for run in runs] for m in metrics}
        reached[variant.name] = sum(run.method(method).reached_target for run in runs)
    return VariantComparison(method, k, base.effective_seeds, [v.name for v in variants], values, reached)


def anchor_invariance(anchors: torch.Tensor, samples: int = 256, seed: int = 0) -> dict[str, float]:
    """How the alignment loss ``1 − mean cos(norm(V₀)Aᵀ, norm(V₁)Aᵀ)`` changes when the anchors
    change, on seeded random embeddings (the loss sees ``A`` only through ``AᵀA``):

    - ``permuted``: the anchors given to other classes (a b×b permutation): no change;
    - ``mixed``: a random b×b orthogonal mixing of the anchors: no change;
    - ``rotated``: a random orthogonal rotation of the embedding space (``A·Q``, the
      ``rotated`` anchor source): the anchors keep their similarities to each other but the
      loss changes, because it measures other directions of the features.

    Returns the loss with the given anchors (``loss``) and the absolute change of each.
    """
    generator = torch.Generator().manual_seed(seed)
    a = anchors.double().cpu()
    b, d = a.shape
    first = torch.randn(samples, d, generator=generator, dtype=torch.float64)
    second = first + 0.5 * torch.randn(samples, d, generator=generator, dtype=torch.float64)

    def loss(x: torch.Tensor) -> float:
        return float(structure_discrepancy(affinities(first, x), affinities(second, x)))

    permutation = torch.randperm(b, generator=generator)
    reference = loss(a)
    return {
        "loss": reference,
        "permuted": abs(loss(a[permutation]) - reference),
        "mixed": abs(loss(random_orthogonal(b, generator) @ a) - reference),
        "rotated": abs(loss(a @ random_orthogonal(d, generator)) - reference),
    }
