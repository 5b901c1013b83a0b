"""Where in the network the representation changed: linear CKA between the original and each
unlearned model, stage by stage, on retained and on test images."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.cka import CKA_SPLITS, LayerCKA
from stakes_core.figures.changes import SPLIT_TITLES
from stakes_core.figures.style import finish, method_color, method_dash, method_label, method_symbol
from stakes_core.figures.tables import hover_help


def layer_cka_figure(data: LayerCKA) -> go.Figure:
    """Two panels (retained, test): stages on x, CKA with the original on y, one line per method."""
    sizes, explained = dict(data.images), hover_help("cka")
    figure = make_subplots(
        1, len(CKA_SPLITS), shared_yaxes=True, horizontal_spacing=0.06,
        subplot_titles=[f"{SPLIT_TITLES[split]} ({sizes[split]})" for split in CKA_SPLITS],
    )
    for column, split in enumerate(CKA_SPLITS, start=1):
        for method in data.methods:
            figure.add_trace(
                go.Scatter(
                    x=list(data.stages), y=data.of(method, split), mode="lines+markers",
                    name=method_label(method), legendgroup=method, showlegend=column == 1,
                    line={"color": method_color(method), "dash": method_dash(method)},
                    marker={"symbol": method_symbol(method), "size": 8},
                    hovertemplate=f"{method_label(method)}<br>%{{x}}: CKA %{{y:.3f}}<br>{explained}<extra></extra>",
                ),
                1, column,
            )
    figure.update_xaxes(type="category", categoryorder="array", categoryarray=list(data.stages), title="stage")
    figure.update_yaxes(range=[0, 1.03])
    figure.update_yaxes(title="linear CKA with the original", col=1)
    return finish(
        figure, "Where in the network the representation changed",
        "linear CKA of each stage's globally pooled activations, unlearned against original, on the same images; "
        "1: the same representation up to rotation and scale",
        height=480,
    )
