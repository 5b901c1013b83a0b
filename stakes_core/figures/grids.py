"""Image grids as plotly figures: Grad-CAM maps (Fig. 4) and retrieval top-k (Fig. 5).

Small images are enlarged with nearest-neighbour so their marks (coloured frames) stay thin.
Colours mean one thing in both grids: green = correct (the true class, the query's class),
red = wrong; an image that is not judged (the input, the query) has a grey frame, and its row
title says whether it is forgotten, retained or test. Every image has its class under it.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from stakes_core.analysis.gradcam import GradCAMView
from stakes_core.analysis.retrieval import RetrievalView
from stakes_core.figures.style import CORRECT, KIND_LABELS, NEUTRAL_FRAME, WRONG, finish, method_label

CELL_PIXELS = 64
# Stops of a perceptual blue→red colour map (roughly "turbo"), for heat overlays.
_HEAT = np.array([[48, 18, 59], [70, 134, 251], [26, 228, 182], [164, 252, 60], [250, 186, 57], [228, 70, 10],
                  [122, 4, 3]], dtype=np.float32)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """``C × H × W`` floats in [0, 1] (C = 1 or 3) as ``H × W × 3`` uint8."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.shape[0] == 1:
        image = np.repeat(image, 3, axis=0)
    return (image.transpose(1, 2, 0) * 255).round().astype(np.uint8)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) mapped to RGB floats in [0, 255] along the heat colour map."""
    position = np.clip(values, 0.0, 1.0) * (len(_HEAT) - 1)
    low = np.floor(position).astype(int).clip(0, len(_HEAT) - 2)
    weight = (position - low)[..., None]
    return _HEAT[low] * (1 - weight) + _HEAT[low + 1] * weight


def overlay(image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A heat map (H × W in [0, 1]) blended over an RGB uint8 image."""
    blended = (1 - alpha) * image_rgb.astype(np.float32) + alpha * heat_colors(heat)
    return blended.round().clip(0, 255).astype(np.uint8)


def framed(image_rgb: np.ndarray, color: Sequence[int] | None, size: int = CELL_PIXELS, width: int = 4) -> np.ndarray:
    """Enlarge to about ``size`` pixels (nearest neighbour) and draw a frame of ``color``."""
    scale = max(1, size // max(image_rgb.shape[:2]))
    big = np.kron(image_rgb, np.ones((scale, scale, 1), dtype=np.uint8))
    if color is not None:
        big[:width], big[-width:], big[:, :width], big[:, -width:] = color, color, color, color
    return big


def png_source(image_rgb: np.ndarray) -> str:
    """An ``H × W × 3`` uint8 image as a PNG data URI: a grid cell sent this way is a few hundred
    bytes instead of ``H·W·3`` numbers in the figure's JSON, which the browser draws much faster."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_rgb, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


@dataclass
class Cell:
    """One image of a grid: its pixels, its hover text and a caption under it (in ``color``)."""

    image: np.ndarray
    hover: str
    caption: str
    color: Sequence[int] = NEUTRAL_FRAME


CAPTION_PIXELS, ROW_PIXELS, MARGINS = 22, 80, 150


def _rgb(color: Sequence[int]) -> str:
    return f"rgb({color[0]},{color[1]},{color[2]})"


def grid_height(rows: int) -> int:
    """The figure height that gives every row an image and a caption line under it."""
    return MARGINS + (ROW_PIXELS + CAPTION_PIXELS) * rows


def _image_grid(cells: list[list[Cell]], column_titles: list[str], row_titles: list[str]) -> go.Figure:
    rows, columns = len(cells), len(column_titles)
    plot_height = grid_height(rows) - MARGINS
    figure = make_subplots(
        rows, columns, column_titles=column_titles, horizontal_spacing=0.01,
        vertical_spacing=min(CAPTION_PIXELS / plot_height, 0.9 / max(1, rows - 1)),
    )
    for r, row in enumerate(cells, start=1):
        for c, cell in enumerate(row, start=1):
            image = go.Image(source=png_source(cell.image), hovertemplate=f"{cell.hover}<extra></extra>")
            figure.add_trace(image, r, c)
            axis = str((r - 1) * columns + c) if (r, c) != (1, 1) else ""
            figure.add_annotation(
                text=cell.caption, xref=f"x{axis} domain", yref=f"y{axis} domain", x=0.5, y=0, yanchor="top",
                showarrow=False, font={"size": 10, "color": _rgb(cell.color)},
            )
        axis = "" if r == 1 else str((r - 1) * columns + 1)
        figure.add_annotation(
            text=row_titles[r - 1], xref=f"x{axis} domain", yref=f"y{axis} domain", x=-0.08, y=0.5,
            xanchor="right", showarrow=False, font={"size": 11},
        )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def _heat_scale_trace() -> go.Scatter:
    """An invisible trace whose colour bar is the Grad-CAM heat scale (0 = not used, 1 = most used)."""
    stops = [[i / (len(_HEAT) - 1), _rgb(color.astype(int))] for i, color in enumerate(_HEAT)]
    return go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"colorscale": stops, "cmin": 0, "cmax": 1, "color": [0], "showscale": True,
                "colorbar": {"title": {"text": "Grad-CAM<br>(per map:<br>0 = unused,<br>1 = most used)"},
                             "len": 0.6, "thickness": 12, "y": 1, "yanchor": "top"}},
    )


def gradcam_grid_figure(view: GradCAMView, alpha: float = 0.5) -> go.Figure:
    """Rows are instances (forgotten, retained or test, as the row title says); columns are the
    image (grey frame, its true class under it) and its Grad-CAM under the original model and
    each method, framed and captioned green when that model predicts the true class, red if not."""
    models = list(view.maps)
    cells, row_titles = [], []
    for i, (kind, index) in enumerate(zip(view.instances.kinds, view.instances.indices)):
        label = view.classes[view.labels[i]]
        image = to_rgb(view.images[i])
        row = [Cell(framed(image, NEUTRAL_FRAME), f"{KIND_LABELS[kind]} #{index}, class {label}", f"true {label}")]
        for model in models:
            predicted = view.classes[view.predictions[model][i]]
            mark = CORRECT if predicted == label else WRONG
            row.append(Cell(framed(overlay(image, view.maps[model][i], alpha), mark),
                            f"{method_label(model)}: predicts {predicted} (true {label})", f"pred {predicted}", mark))
        cells.append(row)
        row_titles.append(f"{KIND_LABELS[kind]} #{index}")
    figure = _image_grid(cells, ["image", *map(method_label, models)], row_titles)
    figure.add_trace(_heat_scale_trace(), 1, 1)
    target = "the true class" if view.target == "label" else "the predicted class"
    return finish(
        figure, "Grad-CAM before and after unlearning",
        f"{view.stage}, maps for {target}; a map's frame and caption: green = the model predicts the true class, "
        "red = another class",
        height=grid_height(len(cells)), width=330 + 90 * (len(models) + 1), margin_left=140,
    )


def retrieval_grid_figure(
    view: RetrievalView, images: dict[tuple[str, int], np.ndarray], queries: Sequence[int], classes: Sequence[str]
) -> go.Figure:
    """For each chosen query (a position in ``view.query_indices``): one row per model with the
    query (grey frame; its true class and the row's model's prediction under it) and its top-k
    gallery images with their classes and that model's predictions, framed green when of the
    query's class and red if not.
    ``images`` maps ``("train"|"test", index)`` to a ``C × H × W`` float image."""
    models = list(view.top)
    label_of = dict(zip(view.gallery_indices, view.gallery_labels))
    cells, row_titles = [], []
    for q in queries:
        kind, index, label = view.query_kinds[q], view.query_indices[q], view.query_labels[q]
        split = "test" if kind == "test" else "train"
        query_image = framed(to_rgb(images[(split, index)]), NEUTRAL_FRAME)
        for model in models:
            predicted = _predicted(view.query_predictions, model, q, classes)
            row = [Cell(query_image, f"query: {KIND_LABELS[kind]} #{index}, class {classes[label]}{predicted.hover}",
                        f"true {classes[label]}{predicted.caption}")]
            for rank, g in enumerate(view.top[model][q], start=1):
                g_label = label_of[g]
                mark = CORRECT if g_label == label else WRONG
                predicted = _predicted(view.top_predictions, model, q, classes, rank - 1)
                row.append(Cell(framed(to_rgb(images[("train", g)]), mark),
                                f"rank {rank}: training #{g}, class {classes[g_label]}{predicted.hover}",
                                f"class {classes[g_label]}{predicted.caption}", mark))
            cells.append(row)
            row_titles.append(f"{KIND_LABELS[kind]} #{index} · {method_label(model)}")
    top = len(next(iter(view.top.values()))[0]) if view.top else 0
    figure = _image_grid(cells, ["query", *[f"top {r}" for r in range(1, top + 1)]], row_titles)
    return finish(
        figure, f"Retrieval top-{top} before and after unlearning",
        f"{view.feature} features, cosine; a result's frame: green = same class as the query, red = another "
        "class; under each image its class and the row's model's prediction",
        height=grid_height(len(cells)), width=330 + 90 * (top + 1), margin_left=210,
    )


@dataclass(frozen=True)
class _Prediction:
    caption: str
    hover: str


def _predicted(predictions: dict, model: str, q: int, classes: Sequence[str], rank: int | None = None) -> _Prediction:
    """A model's predicted class of a query (or of its ``rank``-th result) as caption and hover
    suffixes; empty when the view holds no predictions."""
    if model not in predictions:
        return _Prediction("", "")
    label = predictions[model][q] if rank is None else predictions[model][q][rank]
    return _Prediction(f" · pred {classes[label]}", f"; {method_label(model)} predicts {classes[label]}")
