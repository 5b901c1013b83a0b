"""Round-by-round numbers of a continual run: mean and 95 % interval per arm and round, paired
differences by seed between two arms, and the cost against independent one-shot requests.

Intervals are Student-t intervals of the mean over seeds (:func:`~stakes_core.report.table.mean_interval`);
a paired difference ``a − b`` is taken per seed (same sequence of forget sets) before averaging.
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence

from stakes_core.infra.errors import ConfigError
from stakes_core.report.table import mean_interval
from stakes_core.run.continual import RoundRecord

ROUND_METRICS = (
    "test_acc", "retain_acc", "forget_acc", "relapse", "relapse_max", "collapse_original", "collapse_previous",
    "seconds",
)
"""The per-round numbers: ``relapse`` is the mean forget accuracy on the earlier sets F_<t,
``relapse_max`` the highest forget accuracy on any one of them (both NaN in round 1)."""


def record_value(record: RoundRecord, metric: str) -> float:
    """One metric of one round."""
    if metric == "relapse_max":
        return max(record.earlier_forget_acc) if record.earlier_forget_acc else math.nan
    if metric not in ROUND_METRICS:
        raise ConfigError(f"unknown round metric '{metric}' (choose from {', '.join(ROUND_METRICS)})")
    return float(getattr(record, metric))


def interval_cell(values: Sequence[float]) -> dict[str, float]:
    """Mean, 95 % interval and count of the finite ``values``."""
    finite = [v for v in values if not math.isnan(v)]
    mean = statistics.fmean(finite) if finite else math.nan
    low, high = mean_interval(finite)
    return {"mean": mean, "low": low, "high": high, "n": len(finite)}


def round_summary(records: Sequence[RoundRecord], metrics: Sequence[str] = ROUND_METRICS) -> list[dict]:
    """One row per (arm, round): every metric's :func:`interval_cell` over the seeds."""
    if not records:
        raise ConfigError("no rounds to summarise")
    rows = []
    for arm in dict.fromkeys(r.arm for r in records):
        for t in sorted({r.round for r in records if r.arm == arm}):
            group = [r for r in records if r.arm == arm and r.round == t]
            row: dict = {"arm": arm, "round": t, "seeds": len(group)}
            row.update({metric: interval_cell([record_value(r, metric) for r in group]) for metric in metrics})
            rows.append(row)
    return rows


def paired_rounds(records: Sequence[RoundRecord], first: str, second: str, metric: str) -> list[dict]:
    """Per round: ``first − second`` on ``metric`` paired by seed, with its 95 % interval."""
    by = {(r.arm, r.seed, r.round): record_value(r, metric) for r in records}
    rows = []
    for t in sorted({r.round for r in records}):
        seeds = sorted({r.seed for r in records if r.round == t})
        pairs = [by[(first, s, t)] - by[(second, s, t)] for s in seeds if (first, s, t) in by and (second, s, t) in by]
        if pairs:
            rows.append({"round": t, **interval_cell(pairs)})
    if not rows:
        raise ConfigError(f"no seed has rounds of both '{first}' and '{second}'")
    return rows


def cost_summary(records: Sequence[RoundRecord]) -> list[dict]:
    """Per arm: seconds per round and for the whole sequence (mean over seeds), against T
    independent one-shot requests of the same size. Round 1 is such a request (it starts from
    the pretrained model), so the one-shot cost is estimated as T × the round-1 seconds."""
    rows = []
    for arm in dict.fromkeys(r.arm for r in records):
        mine = [r for r in records if r.arm == arm]
        rounds = max(r.round for r in mine)
        seeds = sorted({r.seed for r in mine if r.round == rounds})
        totals = [sum(r.seconds for r in mine if r.seed == s) for s in seeds]
        one_shot = [rounds * next(r.seconds for r in mine if r.seed == s and r.round == 1) for s in seeds]
        per_round = {t: statistics.fmean(r.seconds for r in mine if r.round == t) for t in range(1, rounds + 1)}
        rows.append({
            "arm": arm, "rounds": rounds, "seeds": len(seeds), "per_round": per_round,
            "sequence": interval_cell(totals), "one_shot_estimate": interval_cell(one_shot),
        })
    return rows


def format_cell(cell: dict[str, float], digits: int = 1) -> str:
    """``mean [low, high]`` (the mean alone with fewer than two values, ``–`` when empty)."""
    if cell["n"] == 0:
        return "–"
    if math.isnan(cell["low"]):
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"


def summary_markdown(rows: list[dict], metrics: Sequence[str], digits: dict[str, int] | None = None) -> str:
    """A markdown table of :func:`round_summary` rows."""
    digits = digits or {}
    lines = ["| arm | round | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in rows:
        cells = [format_cell(row[m], digits.get(m, 1)) for m in metrics]
        lines.append(f"| {row['arm']} | {row['round']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(
    records: Sequence[RoundRecord], first: str, others: Sequence[str], metric: str, digits: int = 3
) -> str:
    """A markdown table, one row per round, of ``first − other`` on ``metric`` for each of ``others``
    (paired by seed, mean and 95 % interval)."""
    columns = {other: {row["round"]: row for row in paired_rounds(records, first, other, metric)} for other in others}
    rounds = sorted({t for rows in columns.values() for t in rows})
    lines = ["| round | " + " | ".join(f"{first} − {other}" for other in others) + " |",
             "|---|" + "---|" * len(others)]
    for t in rounds:
        cells = [format_cell(columns[o][t], digits) if t in columns[o] else "–" for o in others]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_markdown(records: Sequence[RoundRecord]) -> str:
    """A markdown table of :func:`cost_summary`: seconds per round, the sequence and the one-shot estimate."""
    rows = cost_summary(records)
    rounds = max(row["rounds"] for row in rows)
    lines = ["| arm | " + " | ".join(f"round {t} (s)" for t in range(1, rounds + 1))
             + " | sequence (s) | T one-shot requests (s) |", "|---|" + "---|" * (rounds + 2)]
    for row in rows:
        per_round = [f"{row['per_round'][t]:.1f}" if t in row["per_round"] else "–" for t in range(1, rounds + 1)]
        lines.append(f"| {row['arm']} | " + " | ".join(per_round) + f" | {format_cell(row['sequence'])} | "
                     f"{format_cell(row['one_shot_estimate'])} |")
    return "\n".join(lines)


def advantage_change(records: Sequence[RoundRecord], first: str, second: str, metric: str) -> dict[str, float]:
    """How ``first − second`` on ``metric`` moved from round 1 to the last round, paired by seed:
    the :func:`interval_cell` of ``(a_T − b_T) − (a_1 − b_1)``."""
    by = {(r.arm, r.seed, r.round): record_value(r, metric) for r in records}
    last = max(r.round for r in records)
    seeds = sorted({s for (arm, s, t) in by if t == last and (first, s, last) in by and (second, s, last) in by})
    return interval_cell([
        (by[(first, s, last)] - by[(second, s, last)]) - (by[(first, s, 1)] - by[(second, s, 1)]) for s in seeds
    ])


def favours(cell: dict[str, float], lower_is_better: bool) -> str | None:
    """``"first"`` or ``"second"`` when the 95 % interval of a difference ``first − second``
    excludes 0 (the side it favours), ``None`` when it covers 0 (within noise)."""
    if cell["n"] < 2 or math.isnan(cell["low"]) or cell["low"] <= 0 <= cell["high"]:
        return None
    return "first" if (cell["mean"] < 0) == lower_is_better else "second"


def verdict(change: dict[str, float], lower_is_better: bool) -> str:
    """Whether an advantage ``first − second`` grows, shrinks or holds, from its paired change."""
    side = favours(change, lower_is_better)
    return "holds (within noise)" if side is None else "grows" if side == "first" else "shrinks"


def continual_answers(records: Sequence[RoundRecord], first: str = "structguard") -> str:
    """The study's three questions answered from ``records`` in markdown: does ``first``'s collapse
    advantage grow, shrink or hold over the rounds; does any arm relapse on earlier sets; which
    reference serves StructGuard better."""
    arms = list(dict.fromkeys(r.arm for r in records))
    last = max(r.round for r in records)
    parts = []
    baselines = [arm for arm in arms if not arm.startswith("structguard")]
    if first in arms and baselines and last > 1:
        parts.append(f"**Collapse against the original model, {first} − baseline (paired by seed):**\n\n"
                     + "\n".join(_advantage_line(records, first, other, last) for other in baselines))
    if last > 1:
        parts.append("**Relapse (forget accuracy on earlier sets, 0 % = none):**\n\n"
                     + "\n".join(_relapse_line(records, arm, last) for arm in arms))
    if {"structguard", "structguard@previous"} <= set(arms):
        parts.append("**StructGuard's reference, original − previous (paired by seed):**\n\n"
                     + "\n".join(_reference_line(records, metric, lower)
                                 for metric, lower in (("test_acc", False), ("collapse_original", True))))
    return "\n\n".join(parts) if parts else "Too few rounds or arms to answer (T = 1 or no baseline)."


def _advantage_line(records: Sequence[RoundRecord], first: str, other: str, last: int) -> str:
    by_round = {row["round"]: row for row in paired_rounds(records, first, other, "collapse_original")}
    change = advantage_change(records, first, other, "collapse_original")
    return (f"- vs {other}: round 1 {format_cell(by_round[1], 3)}, round {last} {format_cell(by_round[last], 3)}; "
            f"change {format_cell(change, 3)}: the advantage {verdict(change, lower_is_better=True)}")


def _relapse_line(records: Sequence[RoundRecord], arm: str, last: int) -> str:
    later = [r for r in records if r.arm == arm and r.round > 1]
    relapsed = sum(1 for r in later if any(v > 0 for v in r.earlier_forget_acc))
    final = interval_cell([r.relapse for r in later if r.round == last])
    worst = max((v for r in later for v in r.earlier_forget_acc), default=math.nan)
    return (f"- {arm}: {relapsed} of {len(later)} later rounds recognise an earlier forgotten image again; "
            f"mean forget accuracy on F<{last} in round {last} {format_cell(final)} %, highest on one earlier set "
            f"{worst:.1f} %")


def _reference_line(records: Sequence[RoundRecord], metric: str, lower: bool) -> str:
    rows = paired_rounds(records, "structguard", "structguard@previous", metric)
    cells = ", ".join(f"round {row['round']} {format_cell(row, 3 if lower else 1)}" for row in rows)
    side = favours(rows[-1], lower)
    who = "within noise" if side is None else "original is better" if side == "first" else "previous is better"
    return f"- {metric}, original − previous: {cells}; in round {rows[-1]['round']}: {who}"
