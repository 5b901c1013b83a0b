"""StructGuard against every other model by the field's standards: verdicts from paired
differences, and the stored 10-seed study (``benchmarks/field_study.py``) read back for the
notebooks.

A paired difference is StructGuard − other, per seed (same forget set, same pretrained model),
summarised by its mean and 95 % t-interval; StructGuard ``wins`` when the interval lies wholly on
the better side, ``loses`` when on the worse, and the two are ``within noise`` when it covers 0.
For the loss attack the better side is nearer 0.5 (the difference of the distances to 0.5).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stakes_core.infra.errors import ConfigError

FOCUS = "structguard"
DIRECTIONS: dict[str, tuple[str, int]] = {
    # metric: (better direction, decimals); "half" = nearer 0.5 is better
    "retain_acc": ("higher", 1), "forget_acc": ("lower", 1), "test_acc": ("higher", 1),
    "gap_retain": ("lower", 1), "gap_forget": ("lower", 1), "gap_test": ("lower", 1), "avg_gap": ("lower", 1),
    "mean_collapse": ("lower", 3), "loss_mia": ("half", 3), "loss_auc": ("half", 3), "ulira_share": ("lower", 2),
    "relearn_steps": ("higher", 1), "steps": ("lower", 0), "seconds": ("lower", 1),
}
VERDICT_METRICS = ("test_acc", "avg_gap", "mean_collapse", "loss_mia", "ulira_share")
"""The metrics StructGuard is judged by, against every other model."""


def verdict(summary: dict[str, float], direction: str) -> str:
    """``wins``, ``loses`` or ``within noise`` for StructGuard from a paired summary (``mean``,
    ``low``, ``high``, ``n``); ``—`` with fewer than two pairs."""
    if summary["n"] < 2 or math.isnan(summary["low"]):
        return "—"
    if summary["low"] <= 0 <= summary["high"]:
        return "within noise"
    better = summary["high"] < 0 if direction in ("lower", "half") else summary["low"] > 0
    return "wins" if better else "loses"


def paired_table(found: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One row per other model: StructGuard − it on each verdict metric, ``mean [low, high] verdict``."""
    lines = ["| StructGuard − | " + " | ".join(VERDICT_METRICS) + " |", "|" + "---|" * (len(VERDICT_METRICS) + 1)]
    for other, by_metric in found.items():
        cells = []
        for metric in VERDICT_METRICS:
            summary, digits = by_metric[metric], DIRECTIONS[metric][1]
            if summary["n"] < 2:
                cells.append("—")
                continue
            cells.append(f"{summary['mean']:+.{digits}f} [{summary['low']:+.{digits}f}, {summary['high']:+.{digits}f}] "
                         f"{summary['verdict']}")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def answers(found: dict[str, dict[Any, dict[str, dict[str, dict[str, Any]]]]]) -> list[str]:
    """Where StructGuard wins, ties or loses, per stopping target, k and metric, in words."""
    lines = []
    for stop, by_k in found.items():
        for k, by_other in by_k.items():
            for metric in VERDICT_METRICS:
                calls: dict[str, list[str]] = {"wins": [], "within noise": [], "loses": []}
                for other, by_metric in by_other.items():
                    if by_metric[metric]["verdict"] in calls:
                        calls[by_metric[metric]["verdict"]].append(other)
                parts = [f"{'is ' if call == 'within noise' else ''}{call} against {', '.join(names)}"
                         for call, names in calls.items() if names]
                lines.append(f"- stop at {stop}, k = {k}, {metric}: StructGuard " + "; ".join(parts) + ".")
    return lines


def read_stored_study(path: Path, what: str) -> dict[str, Any]:
    """A stored study's JSON, or a one-line :class:`ConfigError` naming ``what`` and why."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read the stored {what} {path}: {error}") from None


def stored_field_study(path: str | Path, k: int | None = None) -> str:
    """The stored study's verdicts as markdown (every k, or one): where it was made, and per
    stopping target the table of StructGuard's paired differences."""
    path = Path(path)
    study = read_stored_study(path, "field study")
    machine = study.get("machine", {})
    lines = [f"Quoted from `{path.name}`: made by `{study.get('command', '?')}` on {machine.get('cpu', '?')} "
             f"(torch {machine.get('torch', '?')}); seeds {study['seeds'][0]}–{study['seeds'][-1]}.", ""]
    for stop, by_k in study["paired"].items():
        for key, found in by_k.items():
            if k is None or int(key) == k:
                lines += [f"**Stop at {stop}, k = {key}**", "", paired_table(found), ""]
    return "\n".join(lines)
