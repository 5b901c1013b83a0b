"""Paired comparison of variants (the ablations): per-seed differences to the reference, their
mean with a 95 % interval, and the reference's own seed-to-seed spread as a grey noise band."""

from __future__ import annotations

import plotly.graph_objects as go

from stakes_core.figures.style import finish
from stakes_core.figures.tables import column, hover_help
from stakes_core.report.comparison import VariantComparison, mean_interval

METRIC_TITLES = {
    "test_acc": "test accuracy A_test (points)", "retain_acc": "retain accuracy A_r (points)",
    "forget_acc": "forget accuracy A_f (points)", "mean_collapse": "mean structural collapse",
    "final_collapse": "final structural collapse",
}


def paired_differences_figure(
    comparison: VariantComparison, metric: str = "test_acc", reference: str | None = None
) -> go.Figure:
    """One row per variant: its per-seed differences to ``reference`` (dots), their mean and
    95 % interval (diamond and bar), a zero line, and ±1 sd of the reference over seeds (band)."""
    reference = reference or comparison.variants[0]
    paired = comparison.paired(metric, reference)
    noise = comparison.noise(metric, reference)
    figure = go.Figure()
    names = list(paired)
    explained = f"<br>{hover_help(metric)}" if column(metric).graded else ""  # a user's metric has no entry
    if noise > 0:
        figure.add_vrect(x0=-noise, x1=noise, fillcolor="#bbbbbb", opacity=0.3, line_width=0,
                         annotation_text="±1 sd of the reference over seeds", annotation_position="top left")
    figure.add_vline(x=0, line={"color": "#555", "width": 1})
    for variant, cell in paired.items():
        figure.add_trace(go.Scatter(
            x=cell.values, y=[variant] * len(cell.values), mode="markers", showlegend=variant == names[0],
            name="one seed", legendgroup="seed", marker={"color": "#1f77b4", "size": 9, "opacity": 0.7},
            customdata=comparison.seeds, hovertemplate=f"seed %{{customdata}}: %{{x:+.3f}}{explained}<extra></extra>",
        ))
        low, high = mean_interval(cell.values)
        error = {"type": "data", "symmetric": False, "array": [high - cell.mean], "arrayminus": [cell.mean - low]}
        figure.add_trace(go.Scatter(
            x=[cell.mean], y=[variant], mode="markers", name="mean, 95 % interval", legendgroup="mean",
            showlegend=variant == names[0], marker={"color": "#d62728", "size": 13, "symbol": "diamond"},
            error_x=error if len(cell.values) > 1 else None,
            hovertemplate=f"mean %{{x:+.3f}}{explained}<extra></extra>",
        ))
    figure.update_xaxes(title=f"difference in {METRIC_TITLES.get(metric, metric)}: variant − reference")
    figure.update_yaxes(autorange="reversed")
    return finish(
        figure, f"Paired by seed: each variant against '{reference}'",
        f"{comparison.method}, k={comparison.k}, seeds {', '.join(map(str, comparison.seeds))}; "
        "a difference inside the grey band is within one seed's chance spread",
        height=160 + 70 * len(names), margin_left=230,
    )
