"""Display pieces more than one page uses (tables and image strips)."""

from __future__ import annotations

import streamlit as st
import torch

from stakes_core.data import ImageDataset, to_float
from stakes_core.figures.grids import to_rgb
from stakes_core.figures.style import method_label
from stakes_core.report.table import run_rows
from stakes_core.run.results import RunResult

COLUMN_FORMATS = {
    "retain_acc": ("A_r (%)", "%.1f"), "forget_acc": ("A_f (%)", "%.1f"), "test_acc": ("A_test (%)", "%.1f"),
    "mean_collapse": ("mean collapse", "%.3f"), "final_collapse": ("final collapse", "%.3f"),
    "steps": ("steps", "%d"), "seconds": ("seconds", "%.1f"),
}


def run_table(result: RunResult) -> None:
    """The methods × metrics table of one run, the original model first."""
    rows = [{**row, "method": method_label(str(row["method"]))} for row in run_rows(result)]
    st.dataframe(
        rows, hide_index=True,
        column_config={k: st.column_config.NumberColumn(label, format=fmt) for k, (label, fmt) in COLUMN_FORMATS.items()},
    )


def image_strip(dataset: ImageDataset, chosen: list[tuple[str, int]], width: int = 72) -> None:
    """Thumbnails of ``(kind, index)`` instances with their class and kind."""
    if not chosen:
        return
    images, captions = [], []
    for kind, index in chosen:
        split_images, split_labels = (
            (dataset.test_images, dataset.test_labels) if kind == "test" else (dataset.train_images, dataset.train_labels)
        )
        pixels = to_rgb(to_float(split_images[index]).numpy())
        scale = max(1, width // pixels.shape[0])  # crisp pixels instead of the browser's blur
        images.append(pixels.repeat(scale, axis=0).repeat(scale, axis=1))
        captions.append(f"{kind[0].upper()}{kind[1:]} #{index}: {dataset.classes[int(split_labels[index])]}")
    st.image(images, caption=captions, width=width)


def forget_strip(dataset: ImageDataset, indices: torch.Tensor | list[int], limit: int = 32) -> None:
    """The first ``limit`` images of a forget set."""
    indices = [int(i) for i in indices]
    image_strip(dataset, [("forget", i) for i in indices[:limit]])
    if len(indices) > limit:
        st.caption(f"…and {len(indices) - limit} more.")
