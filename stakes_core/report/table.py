"""Methods × k tables over seeds, like the paper's, with paired differences between methods.

Cells are ``mean ± sd`` over the seeds found (sample standard deviation; ``n`` says how
many). The original model is the reference row of every k. A paired difference ``a − b`` is
taken per seed (same forget set, same pretrained model) before averaging, which removes the
seed-to-seed spread the two methods share.

Every table says which data each method read (``data``: ``D_f only``, ``D_f + D_r`` or
``retrains on D_r``, :mod:`stakes_core.methods.access`). When every run holds the ``retrain``
reference, the tables add each model's gap to it, as SalUn reports it: ``gap_retain``,
``gap_forget``, ``gap_test`` (|Δ| of each accuracy, percentage points) and their mean ``avg_gap``.
Runs stopped at different targets (``stop_at``) are never pooled: each row says its target.

Every table says whether each method reached its target, forget accuracy 0: ``yes``/``no`` for
one run, ``n/N`` (how many of the N runs did) for a pooled row. A method that stops at its epoch
cap first leaves a model that still knows some forgotten instances, and its other numbers are
not comparable with the rows of methods that got there; :func:`target_warnings` says so in
words. :func:`environment_warning` says when pooled runs were made in different environments
(PyTorch, threads, device, processor, code versions, pretrained checkpoint), whose numbers
differ for reasons that are not in the config.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.access import access_label
from stakes_core.run.results import MethodResult, RunResult

METRICS = ("retain_acc", "forget_acc", "test_acc", "mean_collapse", "steps", "seconds")
GAP_METRICS = ("gap_retain", "gap_forget", "gap_test", "avg_gap")
"""|method − retrain| per accuracy and their mean (SalUn's "average gap"); ideal 0."""
GAPPED = ("retain_acc", "forget_acc", "test_acc")
REFERENCE = "original"
RETRAIN = "retrain"
DATA = "data"
"""The column that says which data a model read."""
TARGET = "reached_target"
"""The column that says whether forget accuracy reached 0 (after the metrics in every table)."""
NOT_APPLICABLE = "–"


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
        if not self.values or all(math.isnan(v) for v in self.values):  # nothing measured (retrain's collapse curve)
            return "–"
        return f"{self.mean:.{digits}f} ± {self.sd:.{digits}f}" if len(self.values) > 1 else f"{self.mean:.{digits}f}"


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A Student-t confidence interval of the mean (``(nan, nan)`` with fewer than two values)."""
    if len(values) < 2:
        return math.nan, math.nan
    from scipy.stats import t

    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return mean - half, mean + half


RUN_COLUMNS = ("retain_acc", "forget_acc", "test_acc", "mean_collapse", "final_collapse", "steps", "seconds")


def metric_value(run: RunResult, method: str, metric: str) -> float:
    """One metric of one method in one run; the reference row has collapse 0 and no steps. A gap
    metric (:data:`GAP_METRICS`) needs the run's ``retrain`` reference."""
    if metric in GAP_METRICS:
        return gap_to_retrain(run, method, metric)
    if method == REFERENCE:
        return run.original.get(metric, 0.0)
    return result_metric(run.method(method), metric)


def gap_to_retrain(run: RunResult, method: str, metric: str) -> float:
    """``|method − retrain|`` on one accuracy (``gap_test`` …), or their mean (``avg_gap``)."""
    if RETRAIN not in run.methods:
        raise ConfigError(f"{metric} needs the retrain reference, which run k={run.k} seed {run.seed} lacks "
                          "(add 'retrain' to its methods)")
    if metric == "avg_gap":
        return statistics.fmean(gap_to_retrain(run, method, f"gap_{m.removesuffix('_acc')}") for m in GAPPED)
    accuracy = f"{metric.removeprefix('gap_')}_acc"
    return abs(metric_value(run, method, accuracy) - metric_value(run, RETRAIN, accuracy))


def table_metrics(runs: Sequence[RunResult], metrics: Sequence[str] = METRICS) -> tuple[str, ...]:
    """``metrics``, plus the gaps to retrain when every run holds the retrain reference."""
    gaps = bool(runs) and all(RETRAIN in run.methods for run in runs)
    return (*metrics, *(m for m in GAP_METRICS if gaps and m not in metrics))


def data_text(run: RunResult, method: str) -> str:
    """Which data ``method`` read in ``run``, in words (``–`` for the original)."""
    return NOT_APPLICABLE if method == REFERENCE else access_label(run.method(method).data_access)


def has_target(result: MethodResult) -> bool:
    """Whether a forget-accuracy target applies (not to the retrain reference, which trains anew)."""
    return result.data_access != "retrain"


def result_metric(result: MethodResult, metric: str) -> float:
    """One metric of one method's result (a final metric, or ``steps``, ``seconds`` …)."""
    if metric in result.metrics:
        return result.metrics[metric]
    return float(getattr(result, metric))


def result_row(result: MethodResult, metrics: tuple[str, ...] = RUN_COLUMNS) -> dict[str, float | str]:
    """The :func:`run_rows` row of one method's result, available as soon as that method has
    finished (the dashboard shows each while the others still run)."""
    return {"method": result.method, DATA: access_label(result.data_access),
            **{m: result_metric(result, m) for m in metrics}, TARGET: target_text(result)}


def target_text(result: MethodResult) -> str:
    """``yes``/``no``: whether the method reached its forget-accuracy target (``–`` for retrain)."""
    if not has_target(result):
        return NOT_APPLICABLE
    return "yes" if result.reached_target else "no"


def reached_text(run: RunResult, method: str) -> str:
    """``yes`` or ``no``: whether ``method`` reached its target in ``run`` (``–`` for the
    original and the retrain reference)."""
    if method == REFERENCE:
        return NOT_APPLICABLE
    return target_text(run.method(method))


def run_rows(run: RunResult, metrics: Sequence[str] | None = None) -> list[dict[str, float | str]]:
    """One plain row per model of one run (the original first): ``{"method": …, "data": …,
    metric: value, …, "reached_target": "yes" | "no" | "–"}``; by default :data:`RUN_COLUMNS`
    and, when the run holds the retrain reference, the gaps to it."""
    metrics = table_metrics([run], RUN_COLUMNS) if metrics is None else tuple(metrics)
    return [
        {"method": method, DATA: data_text(run, method), **{m: metric_value(run, method, m) for m in metrics},
         TARGET: reached_text(run, method)}
        for method in [REFERENCE, *run.methods]
    ]


def counted(count: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def target_warnings(run: RunResult) -> list[str]:
    """One line per method of ``run`` that stopped at its epoch cap with forget accuracy above 0."""
    return [
        f"{name} stopped at its cap ({counted(result.epochs, 'epoch')}, {counted(result.steps, 'step')}) with "
        f"forget_acc {result.metrics['forget_acc']:.1f} % (k={run.k}, seed {run.seed})"
        for name, result in run.methods.items()
        if has_target(result) and not result.reached_target
    ]


def rows_to_csv(rows: list[dict[str, float | str]]) -> str:
    """Plain rows (as :func:`run_rows` gives) as CSV with a header."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def summarize(runs: list[RunResult], metrics: Sequence[str] | None = None) -> list[dict]:
    """One row per (stopping target, k, method): the cells of ``metrics`` over the seeds, ``n``
    runs, the data the method read and in ``reached`` how many runs reached the target (``None``
    for the original and the retrain reference). ``metrics`` defaults to :data:`METRICS` plus,
    when every run holds the retrain reference, the gaps to it."""
    if not runs:
        raise ConfigError("no runs to tabulate")
    datasets = {run.dataset["name"] for run in runs}
    if len(datasets) > 1:
        raise ConfigError(f"runs mix datasets ({', '.join(sorted(datasets))}); tabulate one dataset at a time")
    metrics = table_metrics(runs) if metrics is None else tuple(metrics)
    rows = []
    for stop in sorted({run.stop["at"] for run in runs}, key=lambda at: at != "zero"):
        for k in sorted({run.k for run in runs}):
            group = [run for run in runs if run.k == k and run.stop["at"] == stop]
            methods = list(dict.fromkeys(name for run in group for name in run.methods))
            for method in [REFERENCE, *methods] if group else []:
                present = [run for run in group if method == REFERENCE or method in run.methods]
                cells = {m: Cell([metric_value(run, method, m) for run in present]) for m in metrics}
                targeted = method != REFERENCE and has_target(present[0].method(method))
                reached = sum(run.method(method).reached_target for run in present) if targeted else None
                rows.append({"k": k, "method": method, "n": len(present), "cells": cells, "reached": reached,
                             "stop": stop, DATA: data_text(present[0], method)})
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


def row_metrics(rows: list[dict], metrics: Sequence[str] | None) -> tuple[str, ...]:
    """``metrics``, or those the rows of :func:`summarize` hold."""
    return tuple(metrics) if metrics is not None else tuple(rows[0]["cells"]) if rows else METRICS


def stop_column(rows: list[dict]) -> list[str]:
    """``["stop_at"]`` when the rows hold more than one stopping target, else no column."""
    return ["stop_at"] if len({row.get("stop", "zero") for row in rows}) > 1 else []


def to_markdown(
    rows: list[dict], metrics: Sequence[str] | None = None, extra: dict[str, list[str]] | None = None
) -> str:
    """The rows of :func:`summarize` as a markdown table: the data each model read, the metrics
    (by default those the rows hold), ``reached_target`` as ``n/N``; a ``stop_at`` column when the
    rows hold both stopping targets; ``extra`` adds columns of text, one value per row (the
    paper's numbers beside ours, for instance)."""
    extra = extra or {}
    metrics = row_metrics(rows, metrics)
    stops = stop_column(rows)
    header = [*stops, "k", "method", DATA, "n", *metrics, TARGET, *extra]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    digits = {"mean_collapse": 3, "steps": 0}
    for i, row in enumerate(rows):
        cells = [row["cells"][m].format(digits.get(m, 1)) for m in metrics]
        reached = NOT_APPLICABLE if row["reached"] is None else f"{row['reached']}/{row['n']}"
        more = [column[i] for column in extra.values()]
        first = [row.get("stop", "zero")] if stops else []
        values = [*first, str(row["k"]), row["method"], row.get(DATA, NOT_APPLICABLE), str(row["n"])]
        lines.append("| " + " | ".join([*values, *cells, reached, *more]) + " |")
    return "\n".join(lines)


def to_csv(rows: list[dict], metrics: Sequence[str] | None = None) -> str:
    """The rows of :func:`summarize` as CSV: the stopping target, the data read, mean and sd of
    every metric, then ``reached_target`` as a count of the ``n`` runs (empty where no target applies)."""
    metrics = row_metrics(rows, metrics)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    stats = (f"{m}_{stat}" for m in metrics for stat in ("mean", "sd"))
    writer.writerow(["stop_at", "k", "method", DATA, "n", *stats, TARGET])
    for row in rows:
        values = [v for m in metrics for v in (row["cells"][m].mean, row["cells"][m].sd)]
        reached = "" if row["reached"] is None else row["reached"]
        writer.writerow([row.get("stop", "zero"), row["k"], row["method"], row.get(DATA, ""), row["n"], *values,
                         reached])
    return text.getvalue()


def paired_markdown(rows: list[dict], first: str, second: str, metric: str) -> str:
    digits = 3 if "collapse" in metric else 1
    lines = [f"| k | {first} − {second} ({metric}), mean ± sd | 95 % interval of the mean | n | per seed |",
             "|---|---|---|---|---|"]
    for row in rows:
        cell = row["cell"]
        low, high = mean_interval(cell.values)
        interval = f"[{low:+.{digits}f}, {high:+.{digits}f}]" if len(cell.values) > 1 else "–"
        per_seed = ", ".join(f"{d:+.{digits}f}" for d in cell.values)
        lines.append(f"| {row['k']} | {cell.format(digits)} | {interval} | {len(cell.values)} | {per_seed} |")
    return "\n".join(lines)


def environment_of(run: RunResult) -> dict[str, str]:
    """What, besides its config, determined ``run``'s numbers, as comparable text: PyTorch,
    threads, device, processor, accelerator, the pretrained checkpoint (shipped or trained where
    the run was made, and its weights by hash) and each code version (``code loop``,
    ``code adv``, …); a field an older run did not record is ``unrecorded``."""
    environment, pretrained = run.environment, run.pretrained
    found = {name: str(environment.get(name, "unrecorded")) for name in ("torch", "threads", "device", "cpu", "gpu")}
    source = pretrained.get("source", "unrecorded")
    found["checkpoint"] = source if source in ("shipped", "unrecorded") else "trained where it ran"
    found["pretrained weights"] = str(pretrained.get("state_sha256", "unrecorded"))[:12]
    found.update({f"code {part}": str(version) for part, version in environment.get("code_versions", {}).items()})
    return found


def environment_differences(runs: list[RunResult]) -> dict[str, Counter[str]]:
    """For each environment field on which ``runs`` disagree, how many runs have each value
    (a code version counts only among the runs of that method)."""
    values: dict[str, Counter[str]] = {}
    for run in runs:
        for name, value in environment_of(run).items():
            values.setdefault(name, Counter())[value] += 1
    return {name: counts for name, counts in values.items() if len(counts) > 1}


def environment_warning(runs: list[RunResult]) -> str | None:
    """One line naming what differs between the environments of ``runs`` and how many runs have
    each value, or ``None`` when they were all made alike."""
    differences = environment_differences(runs)
    if not differences:
        return None
    parts = []
    for name, counts in differences.items():
        values = ", ".join(f"{value} ({counted(count, 'run')})" for value, count in counts.most_common())
        parts.append(f"{name} {values}")
    return f"the {len(runs)} pooled runs were made in different environments: {'; '.join(parts)}"
