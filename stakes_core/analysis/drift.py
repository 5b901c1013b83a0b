"""Affinity drift: how far the instance-to-anchor structure moves while a method unlearns.

``collapse_curves`` and ``tradeoff_points`` read the per-step records of saved runs (no model
is needed); ``affinity_view`` recomputes ``S = norm(V)·Aᵀ`` under the original and an
unlearned model for chosen instances, the matrices the collapse metric averages over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from stakes_core.analysis.runs import AnalysisError, Instances, LoadedRun
from stakes_core.methods import ProjectedClassifier
from stakes_core.metrics.structure import affinities, backbone_embedder, row_cosine
from stakes_core.run.results import RunResult

STRUCTURE_VIEWS = ("backbone", "projector")
"""``backbone``: ``g(x)`` (through ``R`` when widths differ), comparable across methods;
``projector``: the embedding StructGuard aligns, ``view(p(g(x)))``."""


@dataclass
class CollapseCurve:
    """Structural collapse after each recorded step of one method in one run."""

    method: str
    k: int
    seed: int
    steps: list[int]
    collapse: list[float]
    forget_acc: list[float]


@dataclass
class TradeoffPoint:
    """One method in one run: how much structure collapsed, and what accuracy it kept."""

    method: str
    k: int
    seed: int
    mean_collapse: float
    final_collapse: float
    tradeoff_acc: float
    test_acc: float


def _methods_of(runs: Sequence[RunResult], methods: Sequence[str] | None) -> list[str]:
    available = list(dict.fromkeys(m for run in runs for m in run.methods))
    if not runs:
        raise AnalysisError("no runs given")
    if methods is None:
        return available
    missing = [m for m in methods if m not in available]
    if missing:
        raise AnalysisError(f"method(s) {', '.join(missing)} were not run (the runs have: {', '.join(available)})")
    return list(methods)


def collapse_curves(
    runs: Sequence[RunResult], methods: Sequence[str] | None = None, view: str = "backbone"
) -> list[CollapseCurve]:
    """One curve per (run, method), skipping steps whose collapse was not recorded."""
    if view not in STRUCTURE_VIEWS:
        raise AnalysisError(f"structure view '{view}' is not one of {', '.join(STRUCTURE_VIEWS)}")
    curves = []
    for run in runs:
        for name in _methods_of(runs, methods):
            if name not in run.methods:
                continue
            records = [r for r in run.methods[name].curve if not math.isnan(r.views.get(view, math.nan))]
            if not records:
                continue
            curves.append(
                CollapseCurve(
                    name, run.k, run.seed, [r.step for r in records],
                    [r.views[view] for r in records], [r.forget_acc for r in records],
                )
            )
    return curves


def tradeoff_points(runs: Sequence[RunResult], methods: Sequence[str] | None = None) -> list[TradeoffPoint]:
    """Collapse (mean over steps and final) against trade-off and test accuracy, per (run, method)."""
    points = []
    for run in runs:
        for name in _methods_of(runs, methods):
            if name in run.methods:
                result = run.methods[name]
                points.append(
                    TradeoffPoint(
                        name, run.k, run.seed, result.mean_collapse, result.final_collapse, result.tradeoff_acc,
                        result.metrics["test_acc"],
                    )
                )
    return points


@dataclass
class AffinityView:
    """``S_ori`` and ``S_unl`` (instances × anchors) for chosen instances under one method."""

    method: str
    view: str
    instances: Instances
    labels: list[int]
    classes: list[str]
    original: torch.Tensor
    unlearned: torch.Tensor

    @property
    def difference(self) -> torch.Tensor:
        return self.unlearned - self.original

    @property
    def row_collapse(self) -> torch.Tensor:
        """``1 − cos(S_ori,i, S_unl,i)`` per instance: what the collapse metric averages."""
        return 1.0 - row_cosine(self.original, self.unlearned)


@torch.no_grad()
def affinity_view(run: LoadedRun, method: str, instances: Instances, view: str = "backbone") -> AffinityView:
    """Affinities of ``instances`` to the anchors before and after ``method`` unlearned."""
    if view not in STRUCTURE_VIEWS:
        raise AnalysisError(f"structure view '{view}' is not one of {', '.join(STRUCTURE_VIEWS)}")
    model, ctx = run.model(method), run.context
    images = run.images(instances).to(run.device)
    original = affinities(backbone_embedder(ctx.original, ctx.projection)(images), ctx.anchors)
    if view == "backbone":
        embedded = backbone_embedder(model, ctx.projection)(images)
    elif isinstance(model, ProjectedClassifier):
        embedded = model.projector.outputs_and_view(model.features(images))[1]
    else:
        raise AnalysisError(f"method '{method}' has no projector; the 'projector' view is StructGuard's")
    unlearned = affinities(embedded, ctx.anchors)
    return AffinityView(
        method, view, instances, run.labels(instances).tolist(), list(run.dataset.classes), original.cpu(),
        unlearned.cpu(),
    )
