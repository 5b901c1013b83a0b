"""Do the stakes agree with the model? The anchor cosine matrix and the model's class similarity
side by side (same class order), and the scatter of their entries with Spearman's ρ and its p."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.anchor_agreement import MODEL_VIEWS, AgreementResult
from stakes_core.figures.style import finish
from stakes_core.figures.tables import hover_help

MODEL_TITLES = {"features": "model: cosine of class-mean features", "confusion": "model: soft confusion"}
"""The model panel's title for each of :data:`~stakes_core.analysis.anchor_agreement.MODEL_VIEWS`."""
MODEL_UNITS = {"features": "feature cosine", "confusion": "mean softmax"}
"""What the model's entries are, for the colour bar and the scatter's axis."""
SPACING = 0.13


def agreement_words(result: AgreementResult) -> str:
    """``ρ = 0.41, p = 0.003`` (p to two significant digits)."""
    return f"ρ = {result.rho:.2f}, p = {result.p_value:.2g}"


def anchor_agreement_figure(
    result: AgreementResult, classes: Sequence[str], view: str = "features", encoder: str = ""
) -> go.Figure:
    """Three panels: the anchors' cosine matrix, the model's class similarity (``view``) with the
    classes in the same order, and one dot per class pair (anchor similarity against the model's).
    The diagonals are left blank: they are not compared, and would set the colour range."""
    names = list(classes)
    figure = make_subplots(
        1, 3, horizontal_spacing=SPACING,
        subplot_titles=(f"anchors: cosine AAᵀ{f' ({encoder})' if encoder else ''}", MODEL_TITLES[view],
                        "one dot per class pair"),
    )
    panel_width = (1 - 2 * SPACING) / 3
    for column, (matrix, bar_title) in enumerate(((result.anchor_matrix, "anchor cosine"),
                                                  (result.model_matrix, MODEL_UNITS[view])), start=1):
        shown = matrix.copy()
        np.fill_diagonal(shown, np.nan)
        figure.add_trace(
            go.Heatmap(
                z=shown, x=names, y=names, colorscale="Viridis",
                colorbar={"x": column * panel_width + (column - 1) * SPACING + 0.01, "len": 0.85, "thickness": 10,
                          "title": {"text": bar_title.replace(" ", "<br>"), "font": {"size": 11}}},
                hovertemplate="%{y} ↔ %{x}<br>%{z:.3g}<extra></extra>",
            ),
            1, column,
        )
        figure.update_xaxes(tickangle=-45, title="class", row=1, col=column)
        figure.update_yaxes(autorange="reversed", title="class", row=1, col=column)
    pairs = [f"{names[c]} ↔ {names[d]}" for c, d in result.pairs]
    model_entries = result.model_entries
    figure.add_trace(
        go.Scatter(
            x=result.anchor_entries, y=model_entries, mode="markers", text=pairs, showlegend=False,
            marker={"size": 8, "color": "#1f77b4", "opacity": 0.75, "line": {"width": 0.5, "color": "white"}},
            hovertemplate=f"%{{text}}<br>anchors %{{x:.3f}}<br>model %{{y:.3g}}<br>{hover_help('anchor_rho')}"
                          "<extra></extra>",
        ),
        1, 3,
    )
    figure.update_xaxes(title="anchor cosine", row=1, col=3)
    logarithmic = view == "confusion" and bool((model_entries > 0).all())
    figure.update_yaxes(title=f"{MODEL_UNITS[view]}{' (log scale)' if logarithmic else ''}", row=1, col=3,
                        **({"type": "log", "dtick": 1, "exponentformat": "power"} if logarithmic else {}))
    return finish(
        figure, f"Do the stakes agree with the model? Spearman {agreement_words(result)}",
        f"{result.n_pairs} class pairs (diagonals blank, not compared); model side: {MODEL_VIEWS[view]}; "
        f"p one-sided, {result.permutations:,} shufflings of the model's classes",
        height=460, margin_left=70,
    )
