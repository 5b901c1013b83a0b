"""Shared look of every figure: one colour per method, one marker per kind of instance."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

METHOD_COLORS = {
    "original": "#7f7f7f", "neggrad": "#d62728", "adv": "#ff7f0e", "l2ul": "#9467bd",
    "structguard": "#2ca02c", "oracle": "#1f77b4",
}
METHOD_LABELS = {
    "original": "original", "neggrad": "NegGrad", "adv": "Adv", "l2ul": "L2UL", "structguard": "StructGuard",
    "oracle": "oracle (retain set)",
}
KIND_LABELS = {"forget": "forgotten", "retained": "retained", "test": "test"}
KIND_MARKERS = {"forget": "x", "retained": "circle", "test": "diamond"}
KIND_BORDERS = {"forget": (214, 39, 40), "retained": (44, 160, 44), "test": (31, 119, 180)}
CORRECT, WRONG = (44, 160, 44), (214, 39, 40)


def method_color(method: str) -> str:
    """A fixed colour for the paper's methods; user methods get the next free palette colour."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    palette = px.colors.qualitative.Dark24
    return palette[sum(map(ord, method)) % len(palette)]


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def finish(
    figure: go.Figure, title: str, subtitle: str = "", height: int | None = None, width: int | None = None,
    margin_left: int = 60,
) -> go.Figure:
    """Title (with a smaller line of details), white template and readable margins, for every figure."""
    figure.update_layout(
        title={"text": title, "subtitle": {"text": subtitle}, "x": 0.01, "xanchor": "left"},
        template="plotly_white", height=height, width=width,
        margin={"l": margin_left, "r": 30, "t": 100, "b": 50}, hoverlabel={"namelength": -1},
    )
    return figure
