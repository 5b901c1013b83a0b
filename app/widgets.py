"""Display pieces more than one page uses (tables, image strips, hyperparameter inputs, figures
with their downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import streamlit as st
import torch

from stakes_core.data import ImageDataset, to_float
from stakes_core.figures import export
from stakes_core.figures.grids import to_rgb
from stakes_core.figures.style import KIND_LABELS
from stakes_core.figures.tables import column, display_rows, summary_display_rows
from stakes_core.infra.errors import StakesError
from stakes_core.methods import Hyperparameter
from stakes_core.report.table import run_rows
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import SkippedRun

import lab

ROW_PIXELS, HEADER_PIXELS = 35, 38  # Streamlit's data grid: one row, the header and borders


def column_settings(keys: list[str], text: bool = False) -> dict[str, Any]:
    """Streamlit's settings of the columns ``keys`` (ids), keyed by display name: the name, the
    glossary's help as the header's tooltip and, unless ``text`` (cells already formatted), the
    column's rounding."""
    config: dict[str, Any] = {}
    for key in keys:
        spec = column(key)
        if text or spec.digits is None or key == "k":
            config[spec.name] = st.column_config.TextColumn(spec.name, help=spec.help or None)
        else:
            config[spec.name] = st.column_config.NumberColumn(spec.name, help=spec.help or None, format=spec.format)
    return config


def show_table(rows: list[dict[str, object]], keys: list[str] | None = None) -> None:
    """Rows keyed by column ids, shown with display names, one rounding, a help tooltip per
    column and every row visible (no inner scrolling). ``keys`` are the ids, in order."""
    keys = keys or list(rows[0])
    shown = display_rows([{key: row[key] for key in keys} for row in rows])
    st.dataframe(shown, hide_index=True, column_config=column_settings(keys),
                 height=HEADER_PIXELS + ROW_PIXELS * len(shown))


def show_raw_table(rows: list[dict[str, object]], keys: list[str]) -> None:
    """Rows keyed by the ids ``keys`` with their values as they are (a sweep's axes need their own
    digits), under the display names with a help tooltip per column."""
    config = {key: st.column_config.Column(column(key).name, help=column(key).help or None) for key in keys}
    st.dataframe(rows, hide_index=True, column_config=config)


def show_summary_table(rows: list[dict], metrics: tuple[str, ...] | None = None) -> None:
    """The rows of ``summarize`` (mean ± sd over seeds) with display names, one rounding, a help
    tooltip per column and every row visible; ``metrics`` defaults to those the rows hold."""
    if not rows:
        st.info("No rows to show.", icon=":material/info:")
        return
    metrics = metrics or tuple(rows[0]["cells"])
    shown = summary_display_rows(rows, metrics)
    keys = ["stop_at", "k", "method", "data", "n", *metrics, "reached_target"]
    st.dataframe(shown, hide_index=True, column_config=column_settings(keys, text=True),
                 height=HEADER_PIXELS + ROW_PIXELS * len(shown))


def run_table(result: RunResult) -> None:
    """The methods × metrics table of one run, the original model first, with whether each
    method reached forget accuracy 0."""
    show_table(run_rows(result))


def image_strip(dataset: ImageDataset, chosen: list[tuple[str, int]], width: int = 72, with_kind: bool = True) -> None:
    """Thumbnails of ``(kind, index)`` instances with their class and (``with_kind``) their kind."""
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
        name = dataset.classes[int(split_labels[index])]
        captions.append(f"{KIND_LABELS[kind] + ' ' if with_kind else ''}#{index}, class {name}")
    st.image(images, caption=captions, width=width)


def forget_strip(dataset: ImageDataset, indices: torch.Tensor | list[int], limit: int = 32) -> None:
    """The first ``limit`` images of a forget set."""
    indices = [int(i) for i in indices]
    image_strip(dataset, [("forget", i) for i in indices[:limit]], with_kind=False)  # the heading says forgotten
    if len(indices) > limit:
        st.caption(f"…and {len(indices) - limit} more.")


def hyperparameter_input(container: Any, hp: Hyperparameter, key: str) -> None:
    """The input for one hyperparameter, bound to ``key``, with its help line: a choice box for
    options, a checkbox for a flag, a whole number or a number. A demo limit is in the label and
    is not a widget bound: a value past it reaches :func:`lab.current_config`, which refuses it
    in the page instead of the widget silently keeping the old value."""
    if hp.choices is not None:
        container.selectbox(hp.name, hp.choices, key=key, help=hp.help)
    elif isinstance(hp.default, bool):
        container.checkbox(hp.name, key=key, help=hp.help)
    elif isinstance(hp.default, int):
        upper = lab.LIMITS.get(hp.name)
        label = f"{hp.name} (≤ {upper} here)" if upper else hp.name
        container.number_input(label, 1 if upper else 0, key=key, step=1, help=hp.help)
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


def figure(chart: go.Figure, name: str) -> None:
    """``chart`` with buttons under it that download it as PNG and SVG (drawn when clicked) or,
    where kaleido cannot draw them (checked once per server), one caption saying how to get them.
    ``name`` is the files' name and keeps the buttons apart."""
    st.plotly_chart(chart, key=f"chart_{name}")
    reason = export.static_export_reason()
    if reason is not None:
        st.caption("PNG/SVG downloads need `pip install kaleido` and a Chromium it can drive; the camera button "
                   "above the chart saves a PNG.", help=f"Static export here: {reason}")
        return
    for place, kind in zip(st.columns([1, 1, 8]), ("png", "svg")):
        place.download_button(
            kind.upper(), lambda kind=kind: export.static_image(chart, kind), file_name=f"{name}.{kind}",
            mime="image/png" if kind == "png" else "image/svg+xml", key=f"download_{name}_{kind}",
            on_click="ignore", icon=":material/download:",
        )


def figures_zip_button(directory: Path) -> None:
    """A button that draws every figure of the run (what ``stakes figures`` writes) and then
    offers them as one zip; the zip stays in the session until another run's is drawn."""
    if st.button("Draw every figure of this run", icon=":material/folder_zip:",
                 help="What `stakes figures` writes: HTML (opens offline), PNG where kaleido can draw it, and "
                      "analysis.json. Takes a minute or so on digits."):
        with st.spinner("Drawing every figure of the run…"):
            try:
                data, notes = export.figures_zip(directory)
            except StakesError as error:
                st.error(str(error), icon=":material/error:")
                return
        st.session_state["figures_zip"] = (str(directory), data, notes)
    drawn = st.session_state.get("figures_zip")
    if drawn and drawn[0] == str(directory):
        st.download_button("Download the figures (zip)", drawn[1], file_name=f"{directory.name}-figures.zip",
                           mime="application/zip", on_click="ignore", icon=":material/download:")
        for note in drawn[2]:
            st.caption(note)
