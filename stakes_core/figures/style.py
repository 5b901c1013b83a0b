"""Shared look of every figure: one colour, dash and marker per method (so overlapping curves
stay apart in print and for colour-blind readers), one marker per kind of instance, and one
meaning per frame colour: green = correct / same class, red = wrong / another class."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

METHOD_COLORS = {
    "original": "#7f7f7f", "neggrad": "#d62728", "adv": "#ff7f0e", "l2ul": "#9467bd",
    "structguard": "#2ca02c", "oracle": "#1f77b4", "retrain": "#17becf",
}
METHOD_LABELS = {
    "original": "original", "neggrad": "NegGrad", "adv": "Adv", "l2ul": "L2UL", "structguard": "StructGuard",
    "oracle": "oracle (uses D_r)", "retrain": "retrain (gold reference)",
    "finetune": "FT (uses D_r)", "random_label": "RL", "random_label_dr": "RL (uses D_r)", "salun": "SalUn",
    "salun_dr": "SalUn (uses D_r)", "boundary_shrink": "Boundary Shrink", "scrub": "SCRUB (uses D_r)",
    "l1_sparse": "l1-sparse", "l1_sparse_dr": "l1-sparse (uses D_r)", "ssd": "SSD (stand-in)",
    "ssd_dr": "SSD (uses D_r)",
}
METHOD_DASHES = {
    "original": "solid", "neggrad": "dot", "adv": "dash", "l2ul": "longdash", "structguard": "solid",
    "oracle": "dashdot", "retrain": "solid",
}
METHOD_SYMBOLS = {
    "original": "circle", "neggrad": "triangle-down", "adv": "square", "l2ul": "diamond", "structguard": "circle",
    "oracle": "star", "retrain": "star-diamond",
}
_OTHER_DASHES = ("longdashdot", "dashdot", "dot", "dash")
_OTHER_SYMBOLS = ("cross", "pentagon", "hexagon", "triangle-up", "star-square", "hourglass")
KIND_LABELS = {"forget": "forgotten", "retained": "retained", "test": "test"}
KIND_MARKERS = {"forget": "x", "retained": "circle", "test": "diamond"}
CORRECT, WRONG = (44, 160, 44), (214, 39, 40)
NEUTRAL_FRAME = (90, 90, 90)
"""The frame of an image that is not judged (a Grad-CAM input, a retrieval query): dark grey."""


def method_color(method: str) -> str:
    """A fixed colour for the paper's methods; user methods get the next free palette colour."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    palette = px.colors.qualitative.Dark24
    return palette[sum(map(ord, method)) % len(palette)]


def method_label(method: str) -> str:
    """The display name of a method (``structguard`` → ``StructGuard``); a user's method keeps its name."""
    return METHOD_LABELS.get(method, method)


def method_dash(method: str) -> str:
    """A fixed line dash per method, so curves that lie on each other stay distinguishable."""
    return METHOD_DASHES.get(method) or _OTHER_DASHES[sum(map(ord, method)) % len(_OTHER_DASHES)]


def method_symbol(method: str) -> str:
    """A fixed marker symbol per method (the same in curves and scatter plots)."""
    return METHOD_SYMBOLS.get(method) or _OTHER_SYMBOLS[sum(map(ord, method)) % len(_OTHER_SYMBOLS)]


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
