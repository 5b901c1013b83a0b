"""The semantic-stakes study in words and tables (``benchmarks/semantic_study.py`` writes it;
notebook 03 and the README quote it): paired differences of StructGuard's test accuracy and
collapse between the text anchors and their controls, per structure space and k."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stakes_core.report.field import read_stored_study

METRICS: dict[str, tuple[str, int, str]] = {
    "test_acc": ("test accuracy", 1, "higher"),
    "mean_collapse": ("mean collapse", 3, "lower"),
}
"""Each compared metric: its name in words, its decimals and which direction is better."""


def verdict(metric: str, low: float, high: float) -> str:
    """``better`` / ``worse`` when the 95 % interval of ``first − second`` excludes 0, else
    ``within noise``."""
    higher = METRICS[metric][2] == "higher"
    if (low > 0) if higher else (high < 0):
        return "better"
    if (high < 0) if higher else (low > 0):
        return "worse"
    return "within noise"


def comparison_table(found: list[dict[str, Any]]) -> str:
    """Markdown rows ``first − second | k | metric | mean | interval | verdict``."""
    lines = ["| comparison | k | metric | mean diff | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
    for c in found:
        digits = METRICS[c["metric"]][1]
        lines.append(f"| {c['first']} − {c['second']} | {c['k']} | {METRICS[c['metric']][0]} | "
                     f"{c['mean']:+.{digits}f} | [{c['low']:+.{digits}f}, {c['high']:+.{digits}f}] | {c['verdict']} |")
    return "\n".join(lines)


def meaning_answer(found: list[dict[str, Any]]) -> str:
    """Whether any formulation makes the text anchors beat the same anchors given to other
    classes, with an interval that excludes 0: the study's question, in one sentence."""
    wins = [c for c in found if c["control"] == "permuted" and c["verdict"] == "better"]
    if not wins:
        tested = sum(c["control"] == "permuted" for c in found)
        return (f"No: in none of the {tested} text − permuted comparisons does the 95 % interval exclude 0 in the "
                "text anchors' favour.")
    return "Yes: " + "; ".join(
        f"{c['first']} − {c['second']}, k = {c['k']}, {METRICS[c['metric']][0]} {c['mean']:+.3g} "
        f"[{c['low']:+.3g}, {c['high']:+.3g}]" for c in wins
    ) + "."


def stored_semantic_study(path: str | Path, controls: tuple[str, ...] = ("permuted",)) -> str:
    """The stored study as markdown: where it was made, the anchors' agreement with the model,
    the answer, and the paired differences against ``controls`` and against the paper's space."""
    path = Path(path)
    study = read_stored_study(path, "semantic study")
    machine = study.get("machine", {})
    found = study["comparisons"]
    shown = [c for c in found if c["control"] in controls or (c["control"] is None and "/ text" in c["second"])]
    lines = [
        f"Quoted from `{path.name}` ({study['preset']}): made by `{study['command']}` on {machine.get('cpu', '?')} "
        f"(torch {machine.get('torch', '?')}); seeds {study['seeds'][0]}–{study['seeds'][-1]}, paired by seed.", "",
        *(f"- anchors vs model ({view}): Spearman ρ = {a['rho']:+.2f}, permutation p = {a['p_value']:.2g}"
          for view, a in study["agreement"].items()), "",
        f"**Do the text anchors beat their permuted control?** {meaning_answer(found)}", "",
        comparison_table(shown),
    ]
    return "\n".join(lines)
