"""Image grids as plotly figures: Grad-CAM maps (Fig. 4) and retrieval top-k (Fig. 5).

Small images are enlarged with nearest-neighbour so their marks (coloured frames) stay thin:
forgotten/retained/test frames on instances, green/red frames on correct/incorrect results.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.gradcam import GradCAMView
from stakes_core.analysis.retrieval import RetrievalView
from stakes_core.figures.style import CORRECT, KIND_BORDERS, KIND_LABELS, WRONG, finish, method_label

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


def _image_grid(
    cells: list[list[tuple[np.ndarray, str]]], column_titles: list[str], row_titles: list[str]
) -> go.Figure:
    rows, columns = len(cells), len(column_titles)
    figure = make_subplots(
        rows, columns, column_titles=column_titles, horizontal_spacing=0.01, vertical_spacing=0.02 / max(1, rows / 8),
    )
    for r, row in enumerate(cells, start=1):
        for c, (image, hover) in enumerate(row, start=1):
            figure.add_trace(go.Image(z=image, hovertemplate=f"{hover}<extra></extra>"), r, c)
        axis = "" if r == 1 else str((r - 1) * columns + 1)
        figure.add_annotation(
            text=row_titles[r - 1], xref=f"x{axis} domain", yref=f"y{axis} domain", x=-0.08, y=0.5,
            xanchor="right", showarrow=False, font={"size": 11},
        )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def gradcam_grid_figure(view: GradCAMView, alpha: float = 0.5) -> go.Figure:
    """Rows are instances (framed red if forgotten, green if retained, blue if test); columns
    are the image and its Grad-CAM under the original model and each method."""
    models = list(view.maps)
    cells, row_titles = [], []
    for i, (kind, index) in enumerate(zip(view.instances.kinds, view.instances.indices)):
        label = view.classes[view.labels[i]]
        image = to_rgb(view.images[i])
        row = [(framed(image, KIND_BORDERS[kind]), f"{KIND_LABELS[kind]} #{index}, class {label}")]
        for model in models:
            predicted = view.classes[view.predictions[model][i]]
            mark = CORRECT if predicted == label else WRONG
            row.append((framed(overlay(image, view.maps[model][i], alpha), mark),
                        f"{method_label(model)}: predicts {predicted} (true {label})"))
        cells.append(row)
        row_titles.append(f"{KIND_LABELS[kind]} #{index}")
    figure = _image_grid(cells, ["image", *map(method_label, models)], row_titles)
    target = "the true class" if view.target == "label" else "the predicted class"
    return finish(
        figure, "Grad-CAM before and after unlearning",
        f"{view.stage}, for {target}; frame of a map: green = predicted correctly, red = wrongly",
        height=110 + 80 * len(cells), width=200 + 90 * (len(models) + 1), margin_left=140,
    )


def retrieval_grid_figure(
    view: RetrievalView, images: dict[tuple[str, int], np.ndarray], queries: Sequence[int], classes: Sequence[str]
) -> go.Figure:
    """For each chosen query (a position in ``view.query_indices``): one row per model with the
    query and its top-k gallery images, framed green when of the query's class and red if not.
    ``images`` maps ``("train"|"test", index)`` to a ``C × H × W`` float image."""
    models = list(view.top)
    label_of = dict(zip(view.gallery_indices, view.gallery_labels))
    cells, row_titles = [], []
    for q in queries:
        kind, index, label = view.query_kinds[q], view.query_indices[q], view.query_labels[q]
        split = "test" if kind == "test" else "train"
        query_cell = (framed(to_rgb(images[(split, index)]), KIND_BORDERS[kind]),
                      f"query: {KIND_LABELS[kind]} #{index}, class {classes[label]}")
        for model in models:
            row = [query_cell]
            for rank, g in enumerate(view.top[model][q], start=1):
                g_label = label_of[g]
                row.append((framed(to_rgb(images[("train", g)]), CORRECT if g_label == label else WRONG),
                            f"rank {rank}: training #{g}, class {classes[g_label]}"))
            cells.append(row)
            row_titles.append(f"{KIND_LABELS[kind]} #{index} · {method_label(model)}")
    top = len(next(iter(view.top.values()))[0]) if view.top else 0
    figure = _image_grid(cells, ["query", *[f"top {r}" for r in range(1, top + 1)]], row_titles)
    return finish(
        figure, f"Retrieval top-{top} before and after unlearning",
        f"{view.feature} features, cosine; green = same class as the query, red = another class",
        height=110 + 80 * len(cells), width=330 + 90 * (top + 1), margin_left=210,
    )
