"""Methods × k tables over seeds, like the paper's, with paired differences between methods.

Cells are ``mean ± sd`` over the seeds found (sample standard deviation; ``n`` says how
many). The original model is the reference row of every k. A paired difference ``a − b`` is
taken per seed (same forget set, same pretrained model) before averaging, which removes the
seed-to-seed spread the two methods share.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass

from stakes_core.infra.errors import ConfigError
from stakes_core.run.results import RunResult

METRICS = ("retain_acc", "forget_acc", "test_acc", "mean_collapse", "steps", "seconds")
REFERENCE = "original"


@dataclass
class Cell:
    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def format(self, digits: int = 1) -> str:
        if not self.values:
            return "–"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}" if len(self.values) > 1 else f"{self.mean:.{digits}f}"


def metric_value(run: RunResult, method: str, metric: str) -> float:
    """One metric of one method in one run; the reference row has collapse 0 and no steps."""
    if method == REFERENCE:
        return run.original.get(metric, 0.0)
    result = run.method(method)
    if metric in result.metrics:
        return result.metrics[metric]
    return float(getattr(result, metric))


RUN_COLUMNS = ("retain_acc", "forget_acc", "test_acc", "mean_collapse", "final_collapse", "steps", "seconds")


def run_rows(run: RunResult, metrics: tuple[str, ...] = RUN_COLUMNS) -> list[dict[str, float | str]]:
    """One plain row per model of one run (the original first): ``{"method": …, metric: value}``."""
    return [
        {"method": method, **{m: metric_value(run, method, m) for m in metrics}}
        for method in [REFERENCE, *run.methods]
    ]


def rows_to_csv(rows: list[dict[str, float | str]]) -> str:
    """Plain rows (as :func:`run_rows` gives) as CSV with a header."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def summarize(runs: list[RunResult], metrics: tuple[str, ...] = METRICS) -> list[dict]:
    """One row per (k, method): the cells of ``metrics`` over the seeds of that k."""
    if not runs:
        raise ConfigError("no runs to tabulate")
    datasets = {run.dataset["name"] for run in runs}
    if len(datasets) > 1:
        raise ConfigError(f"runs mix datasets ({', '.join(sorted(datasets))}); tabulate one dataset at a time")
    rows = []
    for k in sorted({run.k for run in runs}):
        group = [run for run in runs if run.k == k]
        methods = list(dict.fromkeys(name for run in group for name in run.methods))
        for method in [REFERENCE, *methods]:
            present = [run for run in group if method == REFERENCE or method in run.methods]
            cells = {m: Cell([metric_value(run, method, m) for run in present]) for m in metrics}
            rows.append({"k": k, "method": method, "n": len(present), "cells": cells})
    return rows


def paired_difference(runs: list[RunResult], first: str, second: str, metric: str) -> list[dict]:
    """Per k: the per-seed values of ``first − second`` on ``metric`` and their mean ± sd."""
    rows = []
    for k in sorted({run.k for run in runs}):
        pairs = sorted(
            (run.seed, metric_value(run, first, metric) - metric_value(run, second, metric))
            for run in runs
            if run.k == k and first in run.methods and second in run.methods
        )
        if pairs:
            rows.append({"k": k, "seeds": [s for s, _ in pairs], "cell": Cell([d for _, d in pairs])})
    if not rows:
        raise ConfigError(f"no run has both '{first}' and '{second}'")
    return rows


def collapse_correlation(
    runs: list[RunResult],
    collapse: str = "mean_collapse",
    metric: str = "test_acc",
    exclude: tuple[str, ...] = ("oracle",),
) -> dict:
    """Spearman rank correlation between a collapse summary (``mean_collapse`` over the steps or
    ``final_collapse`` at termination) and ``metric`` over every (run, method) pair. The paper
    reports a strong negative correlation (its Fig. 2b)."""
    from scipy.stats import spearmanr

    points = [
        (getattr(result, collapse), metric_value(run, name, metric))
        for run in runs
        for name, result in run.methods.items()
        if name not in exclude and not math.isnan(getattr(result, collapse))
    ]
    if len(points) < 3:
        raise ConfigError(f"need at least 3 method runs to correlate, found {len(points)}")
    rho, p_value = spearmanr([c for c, _ in points], [v for _, v in points])
    return {"rho": float(rho), "p_value": float(p_value), "n": len(points), "collapse": collapse, "metric": metric}


def to_markdown(
    rows: list[dict], metrics: tuple[str, ...] = METRICS, extra: dict[str, list[str]] | None = None
) -> str:
    """The rows of :func:`summarize` as a markdown table; ``extra`` adds columns of text, one
    value per row (the paper's numbers beside ours, for instance)."""
    extra = extra or {}
    header = ["k", "method", "n", *metrics, *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    digits = {"mean_collapse": 3, "steps": 0}
    for i, row in enumerate(rows):
        cells = [row["cells"][m].format(digits.get(m, 1)) for m in metrics]
        more = [column[i] for column in extra.values()]
        lines.append("| " + " | ".join([str(row["k"]), row["method"], str(row["n"]), *cells, *more]) + " |")
    return "\n".join(lines)


def to_csv(rows: list[dict], metrics: tuple[str, ...] = METRICS) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["k", "method", "n", *(f"{m}_{stat}" for m in metrics for stat in ("mean", "sd"))])
    for row in rows:
        values = [v for m in metrics for v in (row["cells"][m].mean, row["cells"][m].sd)]
        writer.writerow([row["k"], row["method"], row["n"], *values])
    return text.getvalue()


def paired_markdown(rows: list[dict], first: str, second: str, metric: str) -> str:
    digits = 3 if "collapse" in metric else 1
    lines = [f"| k | {first} − {second} ({metric}), mean ± sd | per seed |", "|---|---|---|"]
    for row in rows:
        per_seed = ", ".join(f"{d:+.{digits}f}" for d in row["cell"].values)
        lines.append(f"| {row['k']} | {row['cell'].format(digits)} | {per_seed} |")
    return "\n".join(lines)
