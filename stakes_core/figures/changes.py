"""Where the model changed: per-class accuracy before and after each method, and the true ×
predicted class counts of the forget and test sets before, after and their difference."""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.changes import SPLITS, PerClassAccuracy, PredictionMatrices
from stakes_core.figures.style import finish, method_color, method_dash, method_label, method_symbol
from stakes_core.figures.tables import hover_help

SPLIT_TITLES = {"retain": "retained training images", "forget": "forget set", "test": "test set"}


def _tick_labels(classes: Sequence[str], marked: Sequence[int]) -> list[str]:
    """Class names, the forget set's classes in bold with a trailing ``*``."""
    return [f"<b>{name}*</b>" if c in marked else name for c, name in enumerate(classes)]


def per_class_accuracy_figure(data: PerClassAccuracy) -> go.Figure:
    """One panel per split: accuracy per class of the original model and every method, with the
    classes of the forget set in bold (``*``) and shaded."""
    figure = make_subplots(
        len(SPLITS), 1, shared_xaxes=True, vertical_spacing=0.07,
        subplot_titles=[SPLIT_TITLES[split] for split in SPLITS],
    )
    ticks = _tick_labels(data.classes, data.forget_classes)
    for row, split in enumerate(SPLITS, start=1):
        for model in data.models:
            rows = data.of(model, split)
            figure.add_trace(
                go.Scatter(
                    x=[r.class_index for r in rows], y=[r.accuracy for r in rows], mode="lines+markers",
                    name=method_label(model), legendgroup=model, showlegend=row == 1,
                    line={"color": method_color(model), "dash": method_dash(model)},
                    marker={"symbol": method_symbol(model), "size": 8},
                    customdata=[[r.correct, r.count] for r in rows],
                    hovertemplate=f"{method_label(model)}<br>class %{{x}}: %{{y:.1f}}% "
                                  f"(%{{customdata[0]}} of %{{customdata[1]}})<br>{hover_help(f'{split}_acc')}"
                                  "<extra></extra>",
                ),
                row, 1,
            )
        for c in data.forget_classes:  # after the traces: plotly leaves shapes out of empty panels
            figure.add_vrect(x0=c - 0.5, x1=c + 0.5, fillcolor="#bbbbbb", opacity=0.25, line_width=0, row=row, col=1)
    figure.update_yaxes(title="accuracy (%)", range=[-5, 105])
    figure.update_xaxes(tickmode="array", tickvals=list(range(len(data.classes))), ticktext=ticks)
    figure.update_xaxes(title="class (forget set's classes: bold, * and shaded)", row=len(SPLITS), col=1)
    names = ", ".join(data.classes[c] for c in data.forget_classes)
    return finish(
        figure, "Accuracy per class, before and after unlearning",
        f"the forget set's classes (bold, *, shaded): {names}; a class without images in a split has no point",
        height=300 * len(SPLITS) + 120,
    )


def prediction_matrices_figure(matrices: Sequence[PredictionMatrices]) -> go.Figure:
    """For each split (forget, test): counts before, after ``method`` and their difference, with
    true classes as rows, predicted classes as columns and each count written in its cell."""
    method = matrices[0].method
    titles = [f"{SPLIT_TITLES[m.split]}: {part}" for m in matrices
              for part in ("before (original)", f"after {method_label(method)}", "after − before")]
    figure = make_subplots(len(matrices), 3, subplot_titles=titles, horizontal_spacing=0.14, vertical_spacing=0.12)
    for row, data in enumerate(matrices, start=1):
        names = list(data.classes)
        high = int(max(data.before.max(), data.after.max())) or 1
        spread = int(data.difference.abs().max()) or 1
        panels = ((data.before, "Blues", 0, high), (data.after, "Blues", 0, high),
                  (data.difference, "RdBu_r", -spread, spread))
        for column, (matrix, scale, low, top) in enumerate(panels, start=1):
            values = matrix.numpy()
            bar_y = 1 - (row - 0.5) / len(matrices)
            figure.add_trace(
                go.Heatmap(
                    z=values, x=names, y=names, colorscale=scale, zmin=low, zmax=top, zmid=0 if column == 3 else None,
                    text=values, texttemplate="%{text}", showscale=column != 1,
                    colorbar={"x": 0.63 if column == 2 else 1.01, "y": bar_y, "len": 0.8 / len(matrices),
                              "thickness": 10, "title": {"text": "change" if column == 3 else "images"}},
                    hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>",
                ),
                row, column,
            )
    figure.update_yaxes(autorange="reversed", type="category")
    figure.update_yaxes(title="true class", col=1)
    figure.update_xaxes(title="predicted class", type="category", dtick=1)
    figure = finish(
        figure, f"Predictions before and after {method_label(method)}",
        "rows: true class, columns: predicted class, cells: image counts;<br>"
        "the difference is after − before (red: more images, blue: fewer; each row sums to 0)",
        height=480 * len(matrices) + 130,
    )
    return figure.update_layout(margin_t=130)  # room for the two-line subtitle above the panel titles
