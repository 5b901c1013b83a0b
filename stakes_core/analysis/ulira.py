"""Per-example membership likelihood ratios on the forget set, after U-LiRA (Hayes et al.,
"Inexact unlearning needs more careful evaluations", SaTML 2025), itself LiRA (Carlini et al.,
2022) aimed at unlearning: population attacks (:mod:`~stakes_core.analysis.membership`,
:mod:`~stakes_core.analysis.privacy`) average over instances and overstate privacy; this asks,
for each forgotten instance, whether the model looks trained with it or without it.

Shadow models: N pairs, pair i with pretraining seed ``1000 + i`` (never the preset's seed):
IN_i is trained with the preset's recipe on all of D, OUT_i without an excluded set E ⊇ D_f
(by default E = D_f; a superset lets the nested forget sets of one seed share the OUT shadows of
the largest). Both come from :func:`~stakes_core.models.retrain.load_or_retrain`, so they are
cached and trained once per dataset, recipe, seed and E.

Statistic: φ(x) = log(p_y / (1 − p_y)), the logit-scaled confidence in the true label, computed
from the logits as ``z_y − logsumexp_{j≠y} z_j`` (exact, and finite where p_y rounds to 1).
Per target x ∈ D_f, a Gaussian is fitted to φ over the IN shadows and one over the OUT shadows;
a model's membership score on x is log N(φ_model(x); μ_in, σ_in) − log N(φ_model(x); μ_out, σ_out),
and the attacker calls x a member when the score is above 0. Means are per example; the spread
is pooled over the forget set (``variance="pooled"``, the default: the root of the mean
per-example variance, LiRA's advice for few shadows) or per example (``"per_example"``: the
sample standard deviation over the N shadows), each floored at :data:`STD_FLOOR`. Why pooled: a
model far outside both fits (one that over-forgets, φ well below every shadow's) gets a score
dominated by the ratio of the two spreads, and per example each is estimated from N values
only, so its sign is close to a coin toss. On digits (k = 16, seed 0, 16 pairs) NegGrad's and
L2UL's forgotten instances, at φ ≈ −6 against shadow means near +4, were called member 6 of 16
times per example and 0 of 16 pooled.

What this is not: the full U-LiRA also applies the unlearning method to every IN shadow and
fits its "unlearned" distribution from those (N unlearning runs per method on top of the
training). Here the two distributions are "trained with x" and "retrained without x", the
question the field's retrain standard asks; a method that leaves its own trace (neither
distribution) is judged by which of the two it is nearer to.

Cost: 2N trainings with the pretraining recipe (fewer when cached). Before any training the cost
is estimated from the seconds the run's checkpoint took to train; on a CPU an estimate above
``max_cpu_seconds`` (default one hour) is refused with the estimate in the message (U-LiRA on
CIFAR without a GPU); digits (about 11 s per model on one thread) runs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from stakes_core.analysis.runs import AnalysisError, LoadedRun
from stakes_core.data import ImageDataset
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.infra.errors import ConfigError
from stakes_core.metrics.accuracy import logits
from stakes_core.models.pretrain import PretrainConfig
from stakes_core.models.retrain import CACHE_PART, estimate_seconds, load_or_retrain, retrain_key

SHADOW_SEED_BASE = 1000
"""Shadow pair i is trained with pretraining seed ``SHADOW_SEED_BASE + i``."""
STD_FLOOR = 0.1
"""Smallest standard deviation of a fitted Gaussian (logit units): shadows that nearly agree on
a target would otherwise give it unbounded scores."""
VARIANCES = ("per_example", "pooled")


def true_label_logit(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """φ = log(p_y / (1 − p_y)) of every row, as ``z_y − logsumexp_{j≠y} z_j`` in float64."""
    outputs = outputs.double()
    rows = torch.arange(outputs.shape[0])
    own = outputs[rows, labels]
    others = outputs.clone()
    others[rows, labels] = -math.inf
    return own - torch.logsumexp(others, dim=1)


def model_phi(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str = "cpu") -> np.ndarray:
    """φ of ``model`` (eval mode) on each image (uint8 or float)."""
    model.eval()
    return true_label_logit(logits(model, images, device=device), labels.cpu()).numpy()


def _spread(phi: np.ndarray, variance: str) -> np.ndarray:
    per_example = phi.var(axis=0, ddof=1)
    if variance == "pooled":
        per_example = np.full_like(per_example, per_example.mean())
    return np.maximum(np.sqrt(per_example), STD_FLOOR)


def _log_normal(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -np.log(std) - 0.5 * ((x - mean) / std) ** 2  # the shared −½·log 2π cancels in the ratio


def likelihood_scores(
    phi_in: np.ndarray, phi_out: np.ndarray, phi_model: np.ndarray, variance: str = "pooled"
) -> np.ndarray:
    """Membership scores log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out) per target.

    ``phi_in`` and ``phi_out`` are shadows × targets; ``phi_model`` is one value per target (or
    models × targets). Above 0: nearer to the models trained with the target."""
    if variance not in VARIANCES:
        raise ConfigError(f"variance '{variance}' is not one of {', '.join(VARIANCES)}")
    phi_in, phi_out, phi_model = (np.asarray(a, dtype=np.float64) for a in (phi_in, phi_out, phi_model))
    if phi_in.ndim != 2 or phi_out.ndim != 2 or phi_in.shape[1] != phi_out.shape[1]:
        raise ConfigError(
            f"phi_in and phi_out must be shadows × targets with the same targets, got {phi_in.shape} and "
            f"{phi_out.shape}"
        )
    if min(phi_in.shape[0], phi_out.shape[0]) < 2:
        raise ConfigError(f"a Gaussian needs ≥ 2 shadows per side, got {phi_in.shape[0]} IN and {phi_out.shape[0]} OUT")
    if phi_model.shape[-1] != phi_in.shape[1]:
        raise ConfigError(f"phi_model has {phi_model.shape[-1]} targets, the shadows {phi_in.shape[1]}")
    inside = _log_normal(phi_model, phi_in.mean(axis=0), _spread(phi_in, variance))
    outside = _log_normal(phi_model, phi_out.mean(axis=0), _spread(phi_out, variance))
    return inside - outside


def shadow_seeds(shadows: int, preset_seed: int) -> list[int]:
    """The pretraining seeds of the shadow pairs, checked to leave the preset's own seed out."""
    if shadows < 2:
        raise ConfigError(f"U-LiRA needs ≥ 2 shadow pairs to fit its Gaussians, got {shadows}")
    seeds = [SHADOW_SEED_BASE + i for i in range(shadows)]
    if preset_seed in seeds:
        raise ConfigError(
            f"the preset's pretraining seed {preset_seed} is one of the shadow seeds {seeds[0]}–{seeds[-1]}; "
            "a shadow would be the original model"
        )
    return seeds


def excluded_set(forget_indices: Sequence[int], exclude: Sequence[int] | None, num_train: int) -> torch.Tensor:
    """E, the training indices the OUT shadows leave out: the forget set by default, else
    ``exclude`` checked to contain every forget instance and to exist."""
    if exclude is None:
        return torch.tensor(sorted(forget_indices), dtype=torch.int64)
    chosen = sorted({int(i) for i in exclude})
    outside = [i for i in chosen if not 0 <= i < num_train]
    if outside:
        raise ConfigError(f"excluded training indices {outside[:8]} do not exist (0 ≤ index < {num_train})")
    missing = sorted(set(forget_indices) - set(chosen))
    if missing:
        raise ConfigError(
            f"the excluded set must contain the whole forget set (E ⊇ D_f): forget instances {missing[:8]}"
            f"{' …' if len(missing) > 8 else ''} are not in it"
        )
    return torch.tensor(chosen, dtype=torch.int64)


@dataclass(frozen=True)
class ShadowPlan:
    """The shadow models a U-LiRA needs: their configs, what E is, and what training the
    uncached ones will cost (``estimate`` seconds on the machine that trained the original)."""

    configs: tuple[PretrainConfig, ...]
    excluded: torch.Tensor
    uncached: int
    estimate: float

    def cost_line(self) -> str:
        """The cost in one line (said before training starts)."""
        total = 2 * len(self.configs)
        if self.uncached == 0:
            return f"U-LiRA: all {total} shadow models are cached"
        known = "unknown (no timing of the original)" if math.isnan(self.estimate) else _duration(self.estimate)
        return f"U-LiRA: {self.uncached} of {total} shadow models to train, about {known}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def plan_shadows(
    config: PretrainConfig, fingerprint: dict[str, Any], num_train: int, excluded: torch.Tensor, shadows: int,
    original_seconds: float,
) -> ShadowPlan:
    """Which shadow models are cached and what the others will cost: each IN shadow the original's
    training seconds, each OUT shadow that scaled to D \\ E."""
    configs = tuple(dataclasses.replace(config, seed=seed) for seed in shadow_seeds(shadows, config.seed))
    cache = TensorCache(CACHE_PART)
    out_seconds = estimate_seconds(original_seconds, num_train, num_train - len(excluded))
    uncached, estimate = 0, 0.0
    for shadow in configs:
        for left_out, seconds in ((None, original_seconds), (excluded, out_seconds)):
            if not cache.exists(config_key(retrain_key(shadow, fingerprint, left_out))):
                uncached += 1
                estimate += seconds
    return ShadowPlan(configs, excluded, uncached, estimate)


def check_shadow_cost(plan: ShadowPlan, device: str, max_cpu_seconds: float | None) -> None:
    """Refuse, before any training, a CPU plan whose estimate exceeds ``max_cpu_seconds`` (or
    cannot be estimated); ``None`` lifts the limit. An accelerator is not limited."""
    if plan.uncached == 0 or max_cpu_seconds is None or torch.device(device).type != "cpu":
        return
    if math.isnan(plan.estimate) or plan.estimate > max_cpu_seconds:
        raise ConfigError(
            f"{plan.cost_line()} on the CPU, over the limit of {_duration(max_cpu_seconds)} (max_cpu_seconds): "
            "run it where a GPU is, or raise the limit"
        )


def shadow_phis(
    plan: ShadowPlan, dataset: ImageDataset, fingerprint: dict[str, Any], images: torch.Tensor,
    labels: torch.Tensor, device: str = "cpu", progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """φ of every IN and every OUT shadow on the targets (shadows × targets each), training
    (and caching) the shadows that are not cached."""
    phi_in: list[np.ndarray] = []
    phi_out: list[np.ndarray] = []
    for shadow in tqdm(plan.configs, desc="U-LiRA shadow pairs", disable=not progress):
        for phis, left_out in ((phi_in, None), (phi_out, plan.excluded)):
            model = load_or_retrain(shadow, dataset, fingerprint, left_out, device, progress=False).model
            phis.append(model_phi(model.to(device), images, labels, device))
    return np.stack(phi_in), np.stack(phi_out)


@dataclass
class ULiRAView:
    """Per model: the membership score of every forget instance (``scores[model][i]`` for
    ``forget_indices[i]``), the share the attacker calls member (score > 0) and the mean score;
    with the shadows' φ (shadows × targets) and what the shadows cost."""

    forget_indices: list[int]
    excluded: list[int]
    seeds: list[int]
    variance: str
    phi_in: np.ndarray
    phi_out: np.ndarray
    phi: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    estimate_seconds: float
    trained: int
    seconds: float

    @property
    def share_member(self) -> dict[str, float]:
        """Per model, the share of forget instances whose score is above 0 (called member)."""
        return {model: float((values > 0).mean()) for model, values in self.scores.items()}

    @property
    def mean_score(self) -> dict[str, float]:
        return {model: float(values.mean()) for model, values in self.scores.items()}


def ulira_plan(run: LoadedRun, shadows: int = 16, exclude: Sequence[int] | None = None) -> ShadowPlan:
    """The shadow models U-LiRA needs for ``run``, which of them are cached and what the others cost."""
    reference = run.context.retrain
    if reference is None:
        raise AnalysisError(f"{run.directory}: its context has no pretraining recipe to train shadow models with")
    excluded = excluded_set(run.forget_indices, exclude, run.dataset.num_train)
    return plan_shadows(reference.config, reference.fingerprint, run.dataset.num_train, excluded, shadows,
                        reference.original_seconds)


def ulira_view(
    run: LoadedRun,
    methods: Sequence[str] | None = None,
    shadows: int = 16,
    exclude: Sequence[int] | None = None,
    progress: bool = True,
    max_cpu_seconds: float | None = 3600,
    variance: str = "pooled",
) -> ULiRAView:
    """Per-example likelihood-ratio membership scores on the run's forget set for the original
    model and each method (a ``retrain`` the run holds among them), from ``shadows`` IN/OUT pairs
    (see the module's docstring for what this form leaves out and what it costs)."""
    start = time.perf_counter()
    if variance not in VARIANCES:
        raise ConfigError(f"variance '{variance}' is not one of {', '.join(VARIANCES)}")
    models = ["original", *run.check_methods(methods)]
    dataset = run.dataset
    plan = ulira_plan(run, shadows, exclude)
    reference = run.context.retrain
    assert reference is not None  # ulira_plan checked it
    check_shadow_cost(plan, run.device, max_cpu_seconds)
    forget = torch.tensor(run.forget_indices)
    images, labels = dataset.train_images[forget], dataset.train_labels[forget]
    phi_in, phi_out = shadow_phis(plan, dataset, reference.fingerprint, images, labels, run.device, progress)
    phi = {name: model_phi(run.model(name), images, labels, run.device) for name in models}
    scores = {name: likelihood_scores(phi_in, phi_out, values, variance) for name, values in phi.items()}
    return ULiRAView(
        run.forget_indices, plan.excluded.tolist(), [c.seed for c in plan.configs], variance, phi_in, phi_out, phi,
        scores, plan.estimate, plan.uncached, time.perf_counter() - start,
    )
