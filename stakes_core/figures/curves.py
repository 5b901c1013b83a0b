"""Structural collapse over unlearning steps, and collapse against the accuracy kept (Fig. 2)."""

from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

from stakes_core.analysis import CollapseCurve, TradeoffPoint
from stakes_core.figures.style import finish, method_color, method_dash, method_label, method_symbol
from stakes_core.figures.tables import hover_help
from stakes_core.infra.errors import ConfigError

KEY_TITLES = {"mean_collapse": "structural collapse (mean over steps)", "final_collapse": "structural collapse (final)"}


def collapse_curves_figure(curves: Sequence[CollapseCurve], view: str = "backbone") -> go.Figure:
    """One line per (run, method); a method's runs share a colour, a dash, a marker and a legend
    entry, so a curve that lies under another still shows (at most 25 markers per line)."""
    figure = go.Figure()
    shown: set[str] = set()
    for curve in curves:
        figure.add_trace(
            go.Scatter(
                x=curve.steps, y=curve.collapse, mode="lines+markers",
                name=method_label(curve.method), legendgroup=curve.method, showlegend=curve.method not in shown,
                line={"color": method_color(curve.method), "width": 2, "dash": method_dash(curve.method)},
                marker={"size": 7, "symbol": method_symbol(curve.method), "maxdisplayed": 25},
                customdata=list(zip(curve.forget_acc, [curve.seed] * len(curve.steps))),
                hovertemplate=(
                    f"<b>{method_label(curve.method)}</b> (k={curve.k}, seed %{{customdata[1]}})<br>step %{{x}}"
                    f"<br>collapse %{{y:.4f}}<br>forget accuracy %{{customdata[0]:.1f}} %<br>{hover_help('collapse')}"
                    "<extra></extra>"
                ),
            )
        )
        shown.add(curve.method)
    where = "the backbone embedding g(x)" if view == "backbone" else "StructGuard's projector embedding"
    figure.update_xaxes(title="unlearning step")
    figure.update_yaxes(title="structural collapse  1 − mean cos(S₀ᵢ, Sₜᵢ)", rangemode="tozero")
    return finish(figure, "Structural collapse during unlearning", f"measured on {where}; lower keeps the structure")


def share_axes(figures: Sequence[go.Figure], padding: float = 0.04) -> None:
    """Give ``figures`` one x range and one y range, those of all their data together, so that
    curves shown side by side compare by eye (each figure alone would scale to its own data)."""
    for axis, update in (("x", "update_xaxes"), ("y", "update_yaxes")):
        values = [float(v) for figure in figures for trace in figure.data
                  for v in (getattr(trace, axis, None) or ()) if v is not None and math.isfinite(float(v))]
        if values:
            low, high = min(values), max(values)
            margin = padding * ((high - low) or 1.0)
            for figure in figures:
                getattr(figure, update)(range=[low - margin, high + margin])


def collapse_tradeoff_figure(points: Sequence[TradeoffPoint], key: str = "mean_collapse") -> go.Figure:
    """Each (run, method) as a point: collapse against trade-off accuracy, with Spearman ρ."""
    if key not in KEY_TITLES:
        raise ConfigError(f"key '{key}' is not one of {', '.join(KEY_TITLES)}")
    figure = go.Figure()
    for method in dict.fromkeys(p.method for p in points):
        chosen = [p for p in points if p.method == method]
        figure.add_trace(
            go.Scatter(
                x=[getattr(p, key) for p in chosen], y=[p.tradeoff_acc for p in chosen], mode="markers",
                name=method_label(method),
                marker={"color": method_color(method), "size": 10, "symbol": method_symbol(method),
                        "line": {"width": 1}},
                customdata=[(p.k, p.seed, p.test_acc) for p in chosen],
                hovertemplate=(
                    f"<b>{method_label(method)}</b> k=%{{customdata[0]}}, seed %{{customdata[1]}}"
                    "<br>collapse %{x:.4f}"
                    "<br>retain − forget accuracy %{y:.1f} %<br>test accuracy %{customdata[2]:.1f} %"
                    f"<br>{hover_help(key)}<br>{hover_help('tradeoff_acc')}<extra></extra>"
                ),
            )
        )
    valid = [p for p in points if not math.isnan(getattr(p, key))]
    subtitle = "one point per method and run"
    if len(valid) >= 3:
        from scipy.stats import spearmanr

        rho, p_value = spearmanr([getattr(p, key) for p in valid], [p.tradeoff_acc for p in valid])
        subtitle += f"; Spearman ρ = {rho:.2f} (p = {p_value:.2g}, n = {len(valid)})"
    figure.update_xaxes(title=KEY_TITLES[key])
    figure.update_yaxes(title="trade-off accuracy: retain − forget (%)")
    return finish(figure, "Collapse against the retain–forget trade-off", subtitle)
