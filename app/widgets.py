"""Display pieces more than one page uses (tables, image strips, hyperparameter inputs)."""

from __future__ import annotations

from typing import Any

import streamlit as st
import torch

from stakes_core.data import ImageDataset, to_float
from stakes_core.figures.grids import to_rgb
from stakes_core.figures.style import method_label
from stakes_core.methods import Hyperparameter
from stakes_core.report.table import TARGET, run_rows
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import SkippedRun

import lab

COLUMN_FORMATS = {
    "retain_acc": ("A_r (%)", "%.1f"), "forget_acc": ("A_f (%)", "%.1f"), "test_acc": ("A_test (%)", "%.1f"),
    "mean_collapse": ("mean collapse", "%.3f"), "final_collapse": ("final collapse", "%.3f"),
    "steps": ("steps", "%d"), "seconds": ("seconds", "%.1f"),
}


TARGET_HELP = "yes: forget accuracy reached 0. no: the method stopped at its epoch cap before it got there."


def run_table(result: RunResult) -> None:
    """The methods × metrics table of one run, the original model first, with whether each
    method reached forget accuracy 0."""
    rows = [{**row, "method": method_label(str(row["method"]))} for row in run_rows(result)]
    columns = {key: st.column_config.NumberColumn(label, format=fmt) for key, (label, fmt) in COLUMN_FORMATS.items()}
    st.dataframe(rows, hide_index=True,
                 column_config={**columns, TARGET: st.column_config.TextColumn("reached A_f = 0", help=TARGET_HELP)})


def image_strip(dataset: ImageDataset, chosen: list[tuple[str, int]], width: int = 72) -> None:
    """Thumbnails of ``(kind, index)`` instances with their class and kind."""
    if not chosen:
        return
    images, captions = [], []
    for kind, index in chosen:
        test = kind == "test"
        split_images = dataset.test_images if test else dataset.train_images
        split_labels = dataset.test_labels if test else dataset.train_labels
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


def hyperparameter_input(container: Any, hp: Hyperparameter, key: str) -> None:
    """The input for one hyperparameter, bound to ``key``, with its help line: a choice box for
    options, a checkbox for a flag, a whole number (within the demo's limits) or a number."""
    if hp.choices is not None:
        container.selectbox(hp.name, hp.choices, key=key, help=hp.help)
    elif isinstance(hp.default, bool):
        container.checkbox(hp.name, key=key, help=hp.help)
    elif isinstance(hp.default, int):
        upper = {"max_epochs": lab.MAX_EPOCHS, "n_adv": lab.MAX_N_ADV}.get(hp.name)
        container.number_input(hp.name, 1 if upper else 0, upper, key=key, step=1, help=hp.help)
    elif isinstance(hp.default, float):
        container.number_input(hp.name, 0.0, key=key, format="%.5g", step=None, help=hp.help)
    else:
        container.text_input(hp.name, key=key, help=hp.help)


def skipped_runs_notice(skipped: list[SkippedRun]) -> None:
    """One line in the page for the stored runs left out because their method is not
    registered in this dashboard (a plugin it was not started with)."""
    if skipped:
        methods = sorted({name for run in skipped for name in run.methods})
        plural = len(methods) > 1
        st.info(
            f"{len(skipped)} stored run{'s' if len(skipped) > 1 else ''} left out: the method{'s' if plural else ''} "
            f"{', '.join(methods)} {'are' if plural else 'is'} not registered in this dashboard "
            f"(e.g. {skipped[0].directory.name}). Start it with the plugin that defines "
            f"{'them' if plural else 'it'}: STAKES_PLUGINS=FILE make run.",
            icon=":material/extension_off:",
        )
