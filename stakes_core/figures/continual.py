"""Figures of a continual run: the round curves (test accuracy, collapse and relapse per round,
mean and 95 % interval over seeds, one line per arm with its own marker and dash) and the
retained instances' embedding after round 1 and round T side by side. ``stakes figures DIR`` on
a continual run folder writes both (:func:`write_continual_figures`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.continual import RoundEmbedding, round_embedding
from stakes_core.figures.export import save_figures
from stakes_core.figures.style import finish, method_color, method_label
from stakes_core.figures.tables import hover_help
from stakes_core.report.continual import round_summary
from stakes_core.run.continual import RoundRecord
from stakes_core.run.continual_store import ContinualRun

CURVE_PANELS = (
    ("test_acc", "test accuracy (%)"),
    ("collapse_original", "collapse vs original"),
    ("collapse_previous", "collapse vs previous round"),
    ("relapse", "relapse: forget acc. on F<t (%)"),
)
MARKERS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "triangle-down")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def arm_label(arm: str) -> str:
    """``structguard@previous`` → ``StructGuard (ref. previous)``."""
    method, _, reference = arm.partition("@")
    return f"{method_label(method)} (ref. {reference})" if reference else method_label(method)


def round_curves_figure(records: list[RoundRecord], title: str = "Continual requests, round by round") -> go.Figure:
    """Four panels (2 × 2) over the rounds; error bars are 95 % intervals over seeds."""
    rows = round_summary(records)
    arms = list(dict.fromkeys(row["arm"] for row in rows))
    figure = make_subplots(2, 2, subplot_titles=[label for _, label in CURVE_PANELS], horizontal_spacing=0.08,
                           vertical_spacing=0.14)
    for number, arm in enumerate(arms):
        mine = [row for row in rows if row["arm"] == arm]
        for panel, (metric, label) in enumerate(CURVE_PANELS):
            points = [row for row in mine if not math.isnan(row[metric]["mean"])]
            means = [row[metric]["mean"] for row in points]
            errors = [row[metric]["high"] - row[metric]["mean"] if not math.isnan(row[metric]["high"]) else 0.0
                      for row in points]
            figure.add_trace(go.Scatter(
                x=[row["round"] for row in points], y=means, mode="lines+markers", name=arm_label(arm),
                legendgroup=arm, showlegend=panel == 0,
                line={"color": method_color(arm),
                      "dash": DASHES[number % len(DASHES)]},
                marker={"symbol": MARKERS[number % len(MARKERS)], "size": 9},
                error_y={"type": "data", "array": errors, "visible": True, "thickness": 1},
                customdata=[[row[metric]["n"]] for row in points],
                hovertemplate=(f"{arm_label(arm)}<br>round %{{x}}<br>{label}: %{{y:.3f}}"
                               f" (n=%{{customdata[0]}})<br>{hover_help(metric)}<extra></extra>"),
            ), panel // 2 + 1, panel % 2 + 1)
    figure.update_xaxes(title="round", dtick=1)
    seeds = len({r.seed for r in records})
    return finish(figure, title, f"mean over {seeds} seed(s), bars: 95 % interval; collapse on backbone g(x)",
                  height=760)


def round_embedding_figure(view: RoundEmbedding) -> go.Figure:
    """Round 1 and round T panels with one layout; colour is the class."""
    figure = make_subplots(1, 2, shared_yaxes=True, horizontal_spacing=0.03,
                           subplot_titles=("after round 1", f"after round {view.last_round}"))
    palette = px.colors.qualitative.Plotly + px.colors.qualitative.Dark24
    labels = np.asarray(view.labels)
    moved = np.linalg.norm(view.last - view.first, axis=1)
    for label in sorted(set(view.labels)):
        rows = np.flatnonzero(labels == label)
        for column, layout in ((1, view.first), (2, view.last)):
            figure.add_trace(go.Scatter(
                x=layout[rows, 0], y=layout[rows, 1], mode="markers", name=view.classes[label],
                legendgroup=str(label), showlegend=column == 1,
                marker={"color": palette[label % len(palette)], "size": 6, "opacity": 0.8},
                customdata=np.stack([np.asarray(view.indices)[rows], moved[rows]], axis=1),
                hovertemplate=("retained #%{customdata[0]:.0f}<br>class " + view.classes[label]
                               + "<br>moved %{customdata[1]:.2f}<extra></extra>"),
            ), 1, column)
    figure.update_xaxes(title=f"{view.algorithm} 1", showticklabels=False, matches="x")
    figure.update_yaxes(title=f"{view.algorithm} 2", showticklabels=False, col=1)
    return finish(figure, f"Retained instances under {arm_label(view.arm)}, seed {view.seed}",
                  f"{view.algorithm} of backbone features fitted on round 1, applied to both; colour = class",
                  height=520)


def write_continual_figures(
    folder: str | Path, out: str | Path | None = None, format: str = "auto", seed: int | None = None,
    algorithm: str = "umap",
) -> tuple[list[Path], str | None]:
    """``round_curves`` and one ``round_embedding_<arm>`` per arm (for ``seed``, default the
    run's first) into ``out`` (default ``folder/figures``); returns the files and why static
    export was skipped, if it was."""
    run = ContinualRun.load(folder)
    chosen = run.seeds[0] if seed is None else seed
    figures = {"round_curves": round_curves_figure(run.records)}
    for arm in run.arms:
        view = round_embedding(run, arm, chosen, algorithm)
        figures[f"round_embedding_{arm.replace('@', '-')}"] = round_embedding_figure(view)
    return save_figures(figures, Path(out) if out is not None else Path(folder) / "figures", format)
