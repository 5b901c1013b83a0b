"""UMAP (or PCA) layouts of the same instances before and after unlearning, side by side."""

from __future__ import annotations

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis import EmbeddingView
from stakes_core.analysis.runs import INSTANCE_KINDS
from stakes_core.figures.style import KIND_LABELS, KIND_MARKERS, finish, method_label


def embedding_figure(view: EmbeddingView) -> go.Figure:
    """Two panels with shared axes; colour is the class, the marker says forgotten/retained/test
    (the legend has one entry per class, which hides or shows that class, and one per kind),
    and hovering shows the instance and how far it moved. Each point carries
    ``[index, moved, kind code]`` as customdata, which :func:`selected_instances` decodes."""
    figure = make_subplots(
        1, 2, shared_yaxes=True, horizontal_spacing=0.03,
        subplot_titles=("before: original model", f"after: {method_label(view.method)}"),
    )
    palette = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
    labels = np.asarray(view.labels)
    kinds = np.asarray(view.instances.kinds)
    moved = view.displacement
    for label in sorted(set(labels.tolist())):  # the legend: one entry per class (colour), then per kind (marker)
        figure.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=f"class {view.classes[label]}", legendgroup=f"class-{label}",
            marker={"color": palette[label % len(palette)], "symbol": "square", "size": 10}, hoverinfo="skip",
        ), 1, 1)
    for kind in KIND_LABELS:
        if (kinds == kind).any():
            figure.add_trace(go.Scatter(
                x=[None], y=[None], mode="markers", name=f"{KIND_LABELS[kind]} (shape)", legendgroup=f"kind-{kind}",
                marker={"color": "#555", "symbol": KIND_MARKERS[kind], "size": 10}, hoverinfo="skip",
            ), 1, 1)
    for kind in KIND_LABELS:
        for label in sorted(set(labels[kinds == kind].tolist())):
            rows = np.flatnonzero((kinds == kind) & (labels == label))
            name = view.classes[label]
            for column, layout in ((1, view.before), (2, view.after)):
                figure.add_trace(
                    go.Scatter(
                        x=layout[rows, 0], y=layout[rows, 1], mode="markers",
                        name=f"{name} · {KIND_LABELS[kind]}", legendgroup=f"class-{label}", showlegend=False,
                        marker={
                            "color": palette[label % len(palette)], "symbol": KIND_MARKERS[kind],
                            "size": 11 if kind == "forget" else 6, "opacity": 1.0 if kind == "forget" else 0.7,
                            "line": {"width": 1.5 if kind == "forget" else 0, "color": "black"},
                        },
                        customdata=np.stack(
                            [np.asarray(view.instances.indices)[rows], moved[rows],
                             np.full(rows.size, INSTANCE_KINDS.index(kind))], axis=1,
                        ),
                        hovertemplate=(
                            f"{KIND_LABELS[kind]} instance #%{{customdata[0]:.0f}}<br>class {name}"
                            "<br>moved %{customdata[1]:.2f}<extra></extra>"
                        ),
                    ),
                    1, column,
                )
    figure.update_xaxes(title=f"{view.algorithm} 1", showticklabels=False, matches="x")  # same scale in both panels
    figure.update_yaxes(title=f"{view.algorithm} 2", showticklabels=False, col=1)
    kept = "same fitted layout for both panels" if view.algorithm != "aligned-umap" else "AlignedUMAP"
    return finish(
        figure, f"Embedding structure before and after {method_label(view.method)}",
        f"{view.algorithm} of backbone features, {kept}; colour = class, × = forgotten, ◆ = test", height=580,
    )


def selected_instances(points: list[dict]) -> list[tuple[str, int]]:
    """``(kind, index)`` of the points selected in an :func:`embedding_figure` (plotly selection
    event points, as Streamlit returns them), in selection order without repeats."""
    chosen: dict[tuple[str, int], None] = {}
    for point in points:
        data = point.get("customdata")
        if data is None or len(data) < 3:
            continue
        chosen[(INSTANCE_KINDS[int(data[2])], int(data[0]))] = None
    return list(chosen)
