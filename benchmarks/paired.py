"""Paired comparisons over seeds for the drift benchmarks (``bn_drift.py``, ``thread_drift.py``):
one row of metrics per method run, the mean, sd and 95 % t-interval of per-seed differences,
and what the numbers were measured on."""

from __future__ import annotations

import math
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from stakes_core.run.results import MethodResult

METRICS = ("test_acc", "retain_acc", "forget_acc", "mean_collapse", "final_collapse", "steps")


def result_row(result: MethodResult) -> dict[str, Any]:
    """The metrics of one method run that the drift benchmarks compare."""
    return {
        "test_acc": result.metrics["test_acc"], "retain_acc": result.metrics["retain_acc"],
        "forget_acc": result.metrics["forget_acc"], "mean_collapse": result.mean_collapse,
        "final_collapse": result.final_collapse, "reached_zero": result.reached_zero, "steps": result.steps,
        "seconds": result.seconds,
    }


def paired(differences: list[float]) -> dict[str, float]:
    """Mean, sd, 95 % t-interval, count of nonzero values, mean and max |value| of per-seed paired differences;
    a NaN difference (a run whose final features were not finite) is left out of ``n``."""
    differences = [d for d in differences if not math.isnan(d)]
    n = len(differences)
    if n == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "low": math.nan, "high": math.nan, "nonzero": 0,
                "mean_abs": math.nan, "max_abs": math.nan}
    mean = statistics.fmean(differences)
    sd = statistics.stdev(differences) if n > 1 else 0.0
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half,
            "nonzero": sum(d != 0 for d in differences), "mean_abs": statistics.fmean(map(abs, differences)),
            "max_abs": max(map(abs, differences))}


def digits_of(metric: str) -> int:
    """Decimals a metric is shown with: 3 for collapse, 1 for accuracies and steps."""
    return 3 if metric.endswith("collapse") else 1


def mean_sd(values: list[float], digits: int) -> str:
    """``mean ± sd`` of the values that are not NaN, with their count when some are."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return "—"
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    note = f" (n = {len(finite)})" if len(finite) < len(values) else ""
    return f"{statistics.fmean(finite):.{digits}f} ± {sd:.{digits}f}{note}"


def interval(summary: dict[str, float], digits: int) -> str:
    """``mean [low, high]`` of a :func:`paired` summary; the one difference where there is one."""
    if summary["n"] < 2:
        return "—" if summary["n"] == 0 else f"{summary['mean']:+.{digits}f}"
    return f"{summary['mean']:+.{digits}f} [{summary['low']:+.{digits}f}, {summary['high']:+.{digits}f}]"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: versions, CPU model and count, torch threads."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return {"torch": torch.__version__, "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "cpu": names[0] if names else platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "cache_dir": os.environ.get("STAKES_CACHE_DIR")}
