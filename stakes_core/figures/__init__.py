"""Plotly figure builders: each takes analysis results and returns a ``go.Figure`` with titles,
axis labels, legends and hover text; ``save_figures`` writes HTML (and PNG/SVG when it can);
``write_report`` makes every figure of a saved run (what ``stakes figures`` calls), including
those added with ``register_figure``."""

from stakes_core.figures.curves import collapse_curves_figure, collapse_tradeoff_figure
from stakes_core.figures.embedding import embedding_figure, selected_instances
from stakes_core.figures.export import EXPORT_FORMATS, StaticExportUnavailable, save_figures
from stakes_core.figures.grids import gradcam_grid_figure, retrieval_grid_figure
from stakes_core.figures.heatmaps import affinity_heatmaps_figure, anchor_similarity_figure
from stakes_core.figures.metrics import privacy_figure, retrieval_metrics_figure
from stakes_core.figures.registry import FIGURES, list_figures, register_figure
from stakes_core.figures.report import Report, write_report

__all__ = [
    "EXPORT_FORMATS", "FIGURES", "Report", "StaticExportUnavailable", "affinity_heatmaps_figure",
    "anchor_similarity_figure", "collapse_curves_figure", "collapse_tradeoff_figure", "embedding_figure",
    "gradcam_grid_figure", "list_figures", "privacy_figure", "register_figure", "retrieval_grid_figure",
    "retrieval_metrics_figure", "save_figures", "selected_instances", "write_report",
]
