"""Affinity heatmaps: instances × anchors before, after and their difference; anchor × anchor."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from stakes_core.analysis import AffinityView
from stakes_core.anchors.build import mean_off_diagonal
from stakes_core.figures.style import KIND_LABELS, finish, method_label


def _row_names(view: AffinityView) -> list[str]:
    return [
        f"{KIND_LABELS[kind]} #{index}, class {view.classes[label]}"
        for kind, index, label in zip(view.instances.kinds, view.instances.indices, view.labels)
    ]


def _group_words(view: AffinityView) -> str:
    """``"these 8 retained images"`` (or ``"these 5 images"`` when the kinds are mixed)."""
    kinds = set(view.instances.kinds)
    kind = f"{KIND_LABELS[next(iter(kinds))]} " if len(kinds) == 1 else ""
    count = len(view.instances.indices)
    return f"{'this' if count == 1 else f'these {count}'} {kind}image{'' if count == 1 else 's'}"


def affinity_heatmaps_figure(view: AffinityView) -> go.Figure:
    """S_ori, S_unl and S_unl − S_ori side by side, each with its own colour bar; rows are
    instances, columns anchors, and a black square marks each row's own-class anchor."""
    rows, columns = _row_names(view), list(view.classes)
    figure = make_subplots(
        1, 3, shared_yaxes=True, horizontal_spacing=0.11,
        subplot_titles=("S_ori: before unlearning", f"S_unl: after {method_label(view.method)}", "S_unl − S_ori"),
    )
    low = float(min(view.original.min(), view.unlearned.min()))
    high = float(max(view.original.max(), view.unlearned.max()))
    spread = float(view.difference.abs().max()) or 1e-6
    collapse = view.row_collapse.tolist()
    panels = ((view.original, "Viridis", (low, high), "S_ori<br>(cosine)"),
              (view.unlearned, "Viridis", (low, high), "S_unl<br>(cosine)"),
              (view.difference, "RdBu_r", (-spread, spread), "change"))
    for column, (matrix, scale, bounds, bar_title) in enumerate(panels, start=1):
        figure.add_trace(
            go.Heatmap(
                z=matrix.numpy(), x=columns, y=rows, colorscale=scale, zmin=bounds[0], zmax=bounds[1],
                colorbar={"x": (column - 1) * 0.37 + 0.265, "len": 0.9, "thickness": 10,
                          "title": {"text": bar_title, "font": {"size": 11}}},
                customdata=[[c] * len(columns) for c in collapse],
                hovertemplate="%{y}<br>anchor: %{x}<br>value %{z:.3f}<br>row collapse %{customdata:.4f}<extra></extra>",
            ),
            1, column,
        )
        figure.add_trace(
            go.Scatter(
                x=[view.classes[label] for label in view.labels], y=rows, mode="markers", name="own-class anchor",
                showlegend=False, hoverinfo="skip",
                marker={"symbol": "square-open", "size": 13, "color": "black", "line": {"width": 2}},
            ),
            1, column,
        )
    figure.update_yaxes(autorange="reversed")
    figure.update_yaxes(title="image (#index, true class)", col=1)
    figure.update_xaxes(title="anchor (class)", tickangle=-45)
    where = "backbone g(x)" if view.view == "backbone" else "projector embedding"
    return finish(
        figure, f"Instance-to-anchor affinities S = norm(V)·Aᵀ under {method_label(view.method)}",
        f"embedding: {where}; □ = the image's own-class anchor; row collapse 1 − cos(S_ori, S_unl) averaged over "
        f"{_group_words(view)}: {sum(collapse) / len(collapse):.3f}",
        height=max(400, 130 + 22 * len(rows)), margin_left=190,
    )


def anchor_similarity_figure(similarity: torch.Tensor, classes: Sequence[str], encoder: str = "") -> go.Figure:
    """Cosine similarity between the anchors (the stakes) themselves."""
    names = list(classes)
    matrix = similarity.numpy()
    figure = go.Figure(
        go.Heatmap(
            z=matrix, x=names, y=names, colorscale="Viridis", zmin=min(0.0, float(matrix.min())), zmax=1.0,
            hovertemplate="%{y} ↔ %{x}<br>cosine %{z:.3f}<extra></extra>", colorbar={"title": "cosine"},
        )
    )
    figure.update_yaxes(autorange="reversed", scaleanchor="x", title="anchor (class)")
    figure.update_xaxes(tickangle=-45, title="anchor (class)")
    source = f" ({encoder})" if encoder else ""
    subtitle = f"mean off-diagonal cosine {mean_off_diagonal(similarity):.2f}" if len(names) > 1 else ""
    return finish(figure, f"Anchor-to-anchor similarity{source}", subtitle, height=max(440, 140 + 18 * len(names)))
