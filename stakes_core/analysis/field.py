"""The field's evaluation of one run, model by model: what each read, its gaps to the retrained
model, the loss attack, the relearn time and (opt-in, since it trains 2N shadow models) the
U-LiRA-style membership share. What ``stakes evaluate``, the dashboard's Compare page and
``benchmarks/field_study.py`` report, computed here once.

Directions: the gaps lower (0 ideal); the loss attack's accuracy 0.5 ideal (below it the forget
set's losses are higher than unseen images': over-forgetting; above it, residual membership);
the U-LiRA share lower (the share of forget instances an attacker still calls members); relearn
steps higher (a model that only hid the instances relearns them in few steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from stakes_core.analysis.membership import loss_attack_view
from stakes_core.analysis.relearn import relearn_view
from stakes_core.analysis.runs import LoadedRun
from stakes_core.analysis.ulira import ULiRAView, ulira_view
from stakes_core.methods.access import access_label
from stakes_core.report.table import GAP_METRICS, RETRAIN, metric_value

FIELD_COLUMNS = ("loss_mia", "loss_auc", "relearn_steps", "ulira_share")


@dataclass
class FieldEvaluation:
    """One row per model (the original first): the data read, the accuracies, the gaps to
    retrain (when the run has it) and the field's measurements; ``ulira`` is the full view when asked."""

    rows: list[dict[str, Any]]
    ulira: ULiRAView | None


def field_evaluation(
    run: LoadedRun,
    methods: Sequence[str] | None = None,
    ulira: bool = False,
    shadows: int = 16,
    exclude: Sequence[int] | torch.Tensor | None = None,
    progress: bool = True,
    max_cpu_seconds: float | None = 3600,
    seed: int = 0,
) -> FieldEvaluation:
    """The field's measurements of the original and each method of ``run`` (U-LiRA only with
    ``ulira``: its shadows are trained and cached first, or refused on a CPU above
    ``max_cpu_seconds``; ``exclude`` may be a superset of the forget set whose shadows are cached)."""
    names = run.check_methods(methods)
    result = run.result
    attacks = loss_attack_view(run, names, seed=seed).attacks
    relearn = relearn_view(run, names).steps
    view = None
    if ulira:
        excluded = None if exclude is None else [int(i) for i in exclude]
        view = ulira_view(run, names, shadows=shadows, exclude=excluded, progress=progress,
                          max_cpu_seconds=max_cpu_seconds)
    gaps = RETRAIN in result.methods
    rows = []
    for name in ["original", *names]:
        row: dict[str, Any] = {"method": name,
                               "data": "–" if name == "original" else access_label(result.method(name).data_access)}
        for metric in ("retain_acc", "forget_acc", "test_acc", *(GAP_METRICS if gaps else ())):
            row[metric] = metric_value(result, name, metric)
        row["loss_mia"], row["loss_auc"] = attacks[name].accuracy, attacks[name].auc
        steps = 0 if name == "original" else relearn.get(name)
        row["relearn_steps"] = math.nan if steps is None else float(steps)
        if view is not None:
            row["ulira_share"] = view.share_member[name]
            row["ulira_mean"] = view.mean_score[name]
        rows.append(row)
    return FieldEvaluation(rows, view)
