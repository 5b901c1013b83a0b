"""Analyses of saved runs: affinity drift, embedding layouts, per-class changes, Grad-CAM, retrieval and privacy.

Each analysis takes a :class:`LoadedRun` (or saved :class:`~stakes_core.run.results.RunResult`
objects) and returns plain data; ``stakes_core.figures`` turns that data into plotly figures.
"""

from stakes_core.analysis.changes import PerClassAccuracy, PredictionMatrices, per_class_accuracy, prediction_matrices
from stakes_core.analysis.drift import (
    STRUCTURE_VIEWS,
    AffinityView,
    CollapseCurve,
    TradeoffPoint,
    affinity_view,
    collapse_curves,
    tradeoff_points,
)
from stakes_core.analysis.embedding import EMBEDDING_ALGORITHMS, EmbeddingView, embedding_view, layout_pair
from stakes_core.analysis.features import FEATURE_VIEWS, embed_images
from stakes_core.analysis.runs import INSTANCE_KINDS, AnalysisError, Instances, LoadedRun, load_run

__all__ = [
    "EMBEDDING_ALGORITHMS", "FEATURE_VIEWS", "INSTANCE_KINDS", "STRUCTURE_VIEWS", "AffinityView", "AnalysisError",
    "CollapseCurve", "EmbeddingView", "Instances", "LoadedRun", "PerClassAccuracy", "PredictionMatrices",
    "TradeoffPoint", "affinity_view", "collapse_curves", "embed_images", "embedding_view", "layout_pair", "load_run",
    "per_class_accuracy", "prediction_matrices", "tradeoff_points",
]
