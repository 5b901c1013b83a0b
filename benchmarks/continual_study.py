"""Continual unlearning on digits (issue 15): T disjoint requests served one after another.

Two settings, T = 5 rounds of k = 4 and T = 4 rounds of k = 16; the four paper methods plus
StructGuard with ``reference=previous``; seeds 0-9. Every round is a run-store entry, so a stopped
study resumes and a second run only reads the store. Writes ``--out`` (JSON: per round mean and
95 % interval, StructGuard paired by seed against each baseline, the reference comparison, the
cost) and the same name with ``.md`` (tables and the answers computed from them). The text between
``<!-- notes:start -->`` and ``<!-- notes:end -->`` of an existing ``.md`` is kept.

    STAKES_CACHE_DIR=/tmp/continual_cache OMP_NUM_THREADS=1 python benchmarks/continual_study.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from paired import machine

from stakes_core.figures.continual import round_curves_figure
from stakes_core.report.continual import (
    ROUND_METRICS,
    advantage_change,
    continual_answers,
    cost_markdown,
    cost_summary,
    paired_rounds,
    paired_table,
    round_summary,
    summary_markdown,
)
from stakes_core.run.continual import RoundRecord
from stakes_core.run.continual_store import continual_settings, run_continual

ARMS = ["neggrad", "adv", "l2ul", "structguard", "structguard@previous"]
SETTINGS = ((4, 5), (16, 4))
NOTES = re.compile(r"<!-- notes:start -->.*?<!-- notes:end -->", re.S)


def study(k: int, rounds: int, seeds: list[int], progress: bool) -> tuple[dict[str, Any], str]:
    """Run (or read) one setting; its JSON block and markdown section."""
    settings, arms = continual_settings("digits", k=k, rounds=rounds, methods=ARMS, device="cpu")
    began = time.perf_counter()
    run = run_continual(settings, arms, seeds, progress=progress)
    records = run.records
    baselines = [a for a in run.arms if not a.startswith("structguard")]
    block = {
        "k": k, "rounds": rounds, "seeds": seeds, "computed_now": run.computed,
        "seconds_now": time.perf_counter() - began,
        "summary": round_summary(records),
        "paired": {f"structguard-{b}": {m: paired_rounds(records, "structguard", b, m)
                                        for m in ("collapse_original", "collapse_previous", "test_acc", "relapse")}
                   for b in baselines},
        "advantage_change": {b: advantage_change(records, "structguard", b, "collapse_original") for b in baselines},
        "reference": {m: paired_rounds(records, "structguard", "structguard@previous", m)
                      for m in ("test_acc", "collapse_original", "relapse")},
        "cost": cost_summary(records),
        "records": [r.as_dict() for r in records],
    }
    digits = {"collapse_original": 3, "collapse_previous": 3}
    metrics = ("test_acc", "retain_acc", "forget_acc", "relapse", "relapse_max", "collapse_original",
               "collapse_previous")
    section = "\n\n".join([
        f"## T = {rounds} rounds of k = {k} ({len(seeds)} seeds)",
        "### Per round: mean [95 % interval] over seeds",
        summary_markdown(round_summary(records), metrics, digits),
        "### StructGuard − baseline, paired by seed: collapse against the original model",
        paired_table(records, "structguard", baselines, "collapse_original"),
        "### StructGuard − baseline, paired by seed: test accuracy (points)",
        paired_table(records, "structguard", baselines, "test_acc", 1),
        "### Reference: structguard (original) − structguard@previous, paired by seed",
        "\n\n".join(f"**{m}**\n\n" + paired_table(records, "structguard", ["structguard@previous"], m, d)
                    for m, d in (("test_acc", 1), ("collapse_original", 3), ("relapse", 1))),
        "### Answers computed from the numbers",
        continual_answers(records),
        "### Cost: seconds per round (mean over seeds) and per sequence, against T one-shot requests",
        cost_markdown(records),
    ])
    return block, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--out", default="docs/continual.json")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--figures", default="docs/figures", help="where the round-curves PNGs go ('' for none)")
    args = parser.parse_args()
    blocks, sections = [], []
    for k, rounds in SETTINGS:
        block, section = study(k, rounds, args.seeds, not args.quiet)
        blocks.append(block)
        sections.append(section)
        if args.figures:
            records = [RoundRecord.from_dict(r) for r in block["records"]]
            title = f"Continual requests on digits: T = {rounds} rounds of k = {k}"
            path = Path(args.figures) / f"continual_k{k}.png"
            round_curves_figure(records, title).write_image(path, width=1100, height=760)
            sections[-1] += f"\n\n![round curves, k = {k}](figures/{path.name})"
    out = Path(args.out)
    command = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} python " + shlex.join(sys.argv)
    body = {"command": command, "machine": machine(), "arms": ARMS, "metrics": list(ROUND_METRICS),
            "settings": blocks}
    out.write_text(json.dumps(body, indent=1) + "\n")
    markdown = out.with_suffix(".md")
    old = markdown.read_text() if markdown.is_file() else ""
    notes = NOTES.search(old)
    header = "\n\n".join([
        "# Continual requests on digits (generated by benchmarks/continual_study.py)",
        f"Command: `{command}`; machine: {body['machine']['cpu']}, {body['machine']['cpu_count']} cores, "
        f"torch {body['machine']['torch']}, {body['machine']['torch_threads']} thread(s).",
        notes.group(0) if notes else "<!-- notes:start -->\n<!-- notes:end -->",
    ])
    markdown.write_text(header + "\n\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {out} and {markdown}")


if __name__ == "__main__":
    main()
