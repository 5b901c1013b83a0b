"""Bar charts of the per-model numbers: retrieval R@k/mAP per query group, and membership inference."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from stakes_core.analysis.privacy import PrivacyView
from stakes_core.analysis.retrieval import RetrievalView
from stakes_core.figures.style import KIND_LABELS, finish, method_color, method_label
from stakes_core.figures.tables import hover_help


def retrieval_metrics_figure(view: RetrievalView) -> go.Figure:
    """One panel per query group (forgotten, retained, test); bars per metric and model."""
    groups = [g for g in KIND_LABELS if any(g in per_model for per_model in view.metrics.values())]
    titles = [f"{KIND_LABELS[g]} queries" for g in groups]
    figure = make_subplots(1, len(groups), shared_yaxes=True, subplot_titles=titles)
    for column, group in enumerate(groups, start=1):
        for model, per_group in view.metrics.items():
            values = per_group[group]
            figure.add_trace(
                go.Bar(
                    x=list(values), y=list(values.values()), name=method_label(model), legendgroup=model,
                    showlegend=column == 1, marker_color=method_color(model),
                    customdata=[hover_help(metric) for metric in values],
                    hovertemplate=(
                        f"{method_label(model)}, {KIND_LABELS[group]} queries<br>%{{x}} = %{{y:.1f}} %"
                        "<br>%{customdata}<extra></extra>"
                    ),
                ),
                1, column,
            )
    figure.update_layout(barmode="group")
    figure.update_yaxes(title="percent", range=[0, 100], col=1)
    return finish(figure, "Image retrieval before and after unlearning",
                  f"{view.feature} features; gallery: retained training images; relevant = same class", height=440)


def privacy_figure(view: PrivacyView) -> go.Figure:
    """MIA efficacy on the forget set per model, with the attack's own held-out accuracy."""
    models = list(view.mia_efficacy)
    figure = go.Figure()
    figure.add_trace(go.Bar(
        x=[method_label(m) for m in models], y=[view.mia_efficacy[m] for m in models], name="MIA efficacy",
        marker_color=[method_color(m) for m in models],
        customdata=[view.attack_acc[m] for m in models],
        hovertemplate="%{x}<br>forgotten images judged non-member: %{y:.1f} %"
                      "<br>attack held-out accuracy: %{customdata:.1f} %"
                      f"<br>{hover_help('mia_efficacy')}<extra></extra>",
    ))
    figure.add_trace(go.Scatter(
        x=[method_label(m) for m in models], y=[view.attack_acc[m] for m in models], mode="markers",
        name="attack accuracy (50 % = chance)", marker={"symbol": "diamond", "size": 12, "color": "black"},
        hovertemplate=f"%{{x}}<br>attack accuracy %{{y:.1f}} %<br>{hover_help('attack_acc')}<extra></extra>",
    ))
    figure.add_hline(y=50, line_dash="dot", line_color="gray")
    figure.update_yaxes(title="percent", range=[0, 105])
    return finish(figure, "Membership inference on the forget set",
                  f"SalUn-style {view.feature} attack, {view.shadow_size} members vs {view.shadow_size} non-members",
                  height=440)
