"""Figures of one saved run added from outside the package: ``stakes figures`` writes every
registered figure beside its own ones.

    @register_figure("forget_confidence")
    def forget_confidence(run: LoadedRun) -> go.Figure:
        ...

A builder takes the :class:`~stakes_core.analysis.LoadedRun` (its result, dataset, context and
``run.model(method)`` for every method whose weights were saved) and returns a plotly figure,
which is saved as ``<name>.html`` (and PNG/SVG when asked for) in the run's figure folder.
"""

from __future__ import annotations

import re
from typing import Callable

import plotly.graph_objects as go

from stakes_core.analysis import LoadedRun
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.registry import Registry

RunFigure = Callable[[LoadedRun], go.Figure]
FIGURES: Registry[RunFigure] = Registry("figure")

OWN_FIGURES = (
    "anchor_agreement_confusion", "anchor_agreement_features", "anchor_similarity", "collapse_curves",
    "collapse_curves_projector", "collapse_vs_tradeoff", "gradcam", "layer_cka", "loss_attack", "per_class_accuracy",
    "privacy", "retrieval_metrics", "retrieval_topk",
)
"""The report's own file names (with ``affinity_<method>``, ``embedding_<method>`` and
``predictions_<method>``): taken."""
OWN_PREFIXES = ("affinity_", "embedding_", "predictions_")


def register_figure(
    name: str, builder: RunFigure | None = None, *, overwrite: bool = False
) -> RunFigure | Callable[[RunFigure], RunFigure]:
    """Register ``builder`` as the run figure ``name`` (also usable as ``@register_figure(name)``).

    ``name`` becomes a file name: letters, digits, ``_`` and ``-`` only.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"figure name '{name}' must be letters, digits, '_' or '-' (it becomes a file name)")
    if name in OWN_FIGURES or name.startswith(OWN_PREFIXES):
        raise ConfigError(f"figure name '{name}' is taken by the report's own figures; choose another")
    return FIGURES.register(name, builder, overwrite=overwrite)


def list_figures() -> list[str]:
    """The names of the registered run figures."""
    return FIGURES.names()
