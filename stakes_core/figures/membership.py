"""The field's membership evaluation of the unlearned models: U-LiRA's per-example scores on the
forget set (one box of points per model, the decision line at 0) and the loss attack's accuracy
and AUC per model (bars, chance at 0.5)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from stakes_core.analysis.membership import LossAttackView
from stakes_core.analysis.ulira import ULiRAView
from stakes_core.figures.style import finish, method_color, method_label
from stakes_core.figures.tables import hover_help

SYMLOG_TICKS = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000)


def _symlog(values: np.ndarray) -> np.ndarray:
    """sign(x)·log10(1 + |x|): linear near 0, logarithmic far from it, so a few huge scores
    (a model far from both shadow distributions) do not flatten the others."""
    return np.sign(values) * np.log10(1 + np.abs(values))


def _model_tick(model: str, share: float) -> str:
    return f"{method_label(model)}<br>member: {100 * share:.0f} %"


def ulira_figure(view: ULiRAView) -> go.Figure:
    """Per model, every forget instance's membership score (symmetric log axis, 0 = the
    decision line: above, the attacker says the model was trained with it), with the share
    called member under each model's name."""
    figure = go.Figure()
    shares = view.share_member
    largest = max(float(np.abs(scores).max()) for scores in view.scores.values())
    for model, scores in view.scores.items():
        tick = _model_tick(model, shares[model])
        figure.add_trace(go.Box(
            y=_symlog(scores), x=[tick] * len(scores), name=method_label(model), boxpoints="all", jitter=0.4,
            pointpos=0, marker={"color": method_color(model), "size": 7}, line={"color": method_color(model)},
            fillcolor="rgba(0,0,0,0)", customdata=np.stack([view.forget_indices, scores], axis=1),
            hovertemplate=f"{method_label(model)}<br>forget instance %{{customdata[0]:.0f}}"
                          f"<br>score %{{customdata[1]:.2f}}<br>{hover_help('ulira_score')}<extra></extra>",
        ))
    shown = [t for t in SYMLOG_TICKS if t <= max(largest, 1) * 1.5]
    values = sorted({sign * t for t in shown for sign in (-1, 1)})
    figure.update_yaxes(
        title="membership score (symmetric log axis)",
        tickmode="array", tickvals=_symlog(np.array(values, dtype=float)), ticktext=[f"{v:g}" for v in values],
    )
    figure.add_hline(y=0, line_dash="dot", line_color="black")
    figure.update_layout(showlegend=False)
    excluded = len(view.excluded)
    left_out = "the forget set" if excluded == len(view.forget_indices) else f"{excluded} images ⊇ the forget set"
    subtitle = (
        "per forgotten instance: log N(φ; IN) − log N(φ; OUT); dotted: the decision (member above 0)<br>"
        f"{len(view.seeds)} shadow pairs with / without {left_out}; {view.variance.replace('_', '-')} variance; "
        "no unlearned shadows"
    )
    figure = finish(figure, "U-LiRA: does each forgotten instance still look trained on?", subtitle, height=560)
    return figure.update_layout(margin_t=130)  # room for the two-line subtitle


def loss_attack_figure(view: LossAttackView) -> go.Figure:
    """Per model, the loss attack's mean held-out accuracy (bars) and its directional AUC
    (diamonds); 0.5 is chance, the ideal for both."""
    models = list(view.attacks)
    labels = [method_label(m) for m in models]
    attacks = [view.attacks[m] for m in models]
    figure = go.Figure()
    figure.add_trace(go.Bar(
        x=labels, y=[a.accuracy for a in attacks], name="attack accuracy (held out)",
        marker_color=[method_color(m) for m in models],
        customdata=[[a.splits, a.held_out, a.n_per_class] for a in attacks],
        hovertemplate="%{x}<br>held-out accuracy %{y:.2f} (mean of %{customdata[0]} splits, "
                      "%{customdata[1]} images judged each)<br>%{customdata[2]} forgotten vs %{customdata[2]} test"
                      f"<br>{hover_help('loss_mia')}<extra></extra>",
    ))
    figure.add_trace(go.Scatter(
        x=labels, y=[a.auc for a in attacks], mode="markers", name="AUC of −loss (< 0.5: forgotten lose more)",
        marker={"symbol": "diamond", "size": 12, "color": "black"},
        hovertemplate=f"%{{x}}<br>AUC %{{y:.2f}}<br>{hover_help('loss_auc')}<extra></extra>",
    ))
    figure.add_hline(y=0.5, line_dash="dot", line_color="gray")
    figure.update_yaxes(title="accuracy / AUC (dotted: 0.5, chance, the ideal)", range=[0, 1.05])
    n = attacks[0].n_per_class if attacks else 0
    return finish(figure, "Loss attack on the forget set",
                  f"logistic regression on the per-sample loss, {n} forgotten vs {n} test images, "
                  f"{attacks[0].splits if attacks else 0} stratified splits (NeurIPS 2023 kit)", height=440)
