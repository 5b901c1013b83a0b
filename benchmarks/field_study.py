"""StructGuard against the field on digits (issue 13): every method, the original and the retrain
reference, by the paper's standard and by the field's.

For each stopping target (``zero``: the paper's forget accuracy 0; ``retrain``: the retrained
model's forget accuracy), each k of 4, 8, 16 and each seed of 0-9, one run of every registered
method (the retrain reference and the oracle included), stored in the run store (a stopped study
resumes). Each model of each run is then measured the field's way: the gaps to retrain, the loss
attack (forget vs test, ideal 0.5), U-LiRA-style per-example likelihood ratios from 16 shadow pairs
(the share of forget instances an attacker still calls members) and the relearn time; those
measurements are kept per run in ``--work`` so a second pass only reads them.

Writes ``--out`` (JSON: every row, the tables, StructGuard's paired differences with 95 %
intervals) and the same name with ``.md``. The text between ``<!-- notes:start -->`` and
``<!-- notes:end -->`` of an existing ``.md`` is kept.

    OMP_NUM_THREADS=1 python benchmarks/field_study.py --phase runs --stop zero      # one process per target
    OMP_NUM_THREADS=1 python benchmarks/field_study.py --phase runs --stop retrain
    OMP_NUM_THREADS=1 python benchmarks/field_study.py --phase measure --stop zero   # likewise
    OMP_NUM_THREADS=1 python benchmarks/field_study.py --phase report --out docs/field_study.json
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch
from paired import machine, mean_sd, paired

from stakes_core.analysis.field import FIELD_COLUMNS, field_evaluation
from stakes_core.analysis.runs import LoadedRun, load_run
from stakes_core.data import choose_forget_indices
from stakes_core.methods import METHODS, list_methods
from stakes_core.methods.access import access_label
from stakes_core.report.field import DIRECTIONS, FOCUS, VERDICT_METRICS, answers, paired_table, verdict
from stakes_core.report.table import GAP_METRICS, metric_value
from stakes_core.run.config import STOP_TARGETS, experiment_config
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import load_or_run

KS = (4, 8, 16)
SEEDS = tuple(range(10))
SHADOWS = 16
NOTES = re.compile(r"<!-- notes:start -->.*?<!-- notes:end -->", re.S)
def study_methods() -> list[str]:
    """Every registered method: the retrain reference, the paper's four, the oracle, the field's baselines."""
    return list_methods()


def configs(stop: str, ks: tuple[int, ...], seeds: tuple[int, ...]) -> list[Any]:
    return [experiment_config("digits", k=k, seed=seed, methods=study_methods(), stop_at=stop, device="cpu")
            for k in ks for seed in seeds]


def run_phase(stop: str, ks: tuple[int, ...], seeds: tuple[int, ...], reverse: bool = False) -> None:
    """Run (or find stored) every run of one stopping target (``reverse``: last first, so a second
    process shares the work from the other end)."""
    for config in configs(stop, ks, seeds)[:: -1 if reverse else 1]:
        began = time.perf_counter()
        directory = load_or_run(config, progress=False)
        print(f"{stop} k={config.k} seed={config.seed}: {directory.name} ({time.perf_counter() - began:.0f} s)",
              flush=True)


def evaluate_run(loaded: LoadedRun, exclude: torch.Tensor) -> dict[str, dict[str, float]]:
    """The field's measurements of every model of one run, by model name."""
    rows = field_evaluation(loaded, ulira=True, shadows=SHADOWS, exclude=exclude, progress=False).rows
    return {row["method"]: {key: row[key] for key in (*FIELD_COLUMNS, "ulira_mean")} for row in rows}


def rows_of(stop: str, ks: tuple[int, ...], seeds: tuple[int, ...], work: Path,
            reverse: bool = False) -> list[dict[str, Any]]:
    """One row per (run, model), the stored runs' metrics plus the field's measurements (cached in ``work``)."""
    rows = []
    for config in configs(stop, ks, seeds)[:: -1 if reverse else 1]:
        directory = load_or_run(config, progress=False)
        cached = work / f"{directory.name}.json"
        if cached.is_file():
            measured = json.loads(cached.read_text())
        else:
            began = time.perf_counter()
            loaded = load_run(directory)
            exclude = choose_forget_indices(loaded.dataset.num_train, max(ks), config.seed)  # nested: holds k=4, 8
            measured = evaluate_run(loaded, exclude)
            cached.write_text(json.dumps(measured))
            print(f"measured {directory.name} in {time.perf_counter() - began:.0f} s", flush=True)
        result = RunResult.load(directory)
        for name in ["original", *result.methods]:
            row = {"stop": stop, "k": config.k, "seed": config.seed, "method": name,
                   "data": "–" if name == "original" else access_label(result.method(name).data_access)}
            for metric in ("retain_acc", "forget_acc", "test_acc", *GAP_METRICS, "mean_collapse", "steps",
                           "seconds"):
                row[metric] = metric_value(result, name, metric)
            row.update({key: value for key, value in measured[name].items() if key in (*FIELD_COLUMNS, "ulira_mean")})
            if name != "original" and result.method(name).data_access != "retrain":  # no target applies to either
                row["reached_target"] = result.method(name).reached_target
            rows.append(row)
    return rows


def summary_table(rows: list[dict[str, Any]], stop: str, k: int) -> str:
    """Mean ± sd over the seeds of every metric, one row per model."""
    shown = [m for m in DIRECTIONS if m not in ("gap_retain", "gap_forget")]
    lines = ["| model | data | " + " | ".join(shown) + " | reached target |", "|" + "---|" * (len(shown) + 3)]
    for method in dict.fromkeys(r["method"] for r in rows if r["stop"] == stop and r["k"] == k):
        group = [r for r in rows if r["stop"] == stop and r["k"] == k and r["method"] == method]
        reached = "–" if "reached_target" not in group[0] else f"{sum(r['reached_target'] for r in group)}/{len(group)}"
        cells = [mean_sd([r[m] for r in group], DIRECTIONS[m][1]) for m in shown]
        lines.append(f"| {method} | {group[0]['data']} | " + " | ".join(cells) + f" | {reached} |")
    return "\n".join(lines)


def differences(rows: list[dict[str, Any]], stop: str, k: int, other: str, metric: str) -> dict[str, float]:
    """StructGuard − ``other`` on ``metric`` per seed (for ``loss_mia``: the distance to 0.5)."""
    def value(row: dict[str, Any]) -> float:
        return abs(row[metric] - 0.5) if DIRECTIONS[metric][0] == "half" else row[metric]

    by_seed = {(r["seed"], r["method"]): r for r in rows if r["stop"] == stop and r["k"] == k}
    seeds = sorted({seed for seed, method in by_seed if method == FOCUS} & {s for s, m in by_seed if m == other})
    return paired([value(by_seed[(s, FOCUS)]) - value(by_seed[(s, other)]) for s in seeds])


def paired_section(rows: list[dict[str, Any]], stop: str, k: int) -> dict[str, Any]:
    """StructGuard's paired differences with every other model, with 95 % intervals and verdicts."""
    others = [m for m in dict.fromkeys(r["method"] for r in rows if r["stop"] == stop and r["k"] == k) if m != FOCUS]
    found: dict[str, Any] = {}
    for other in others:
        for metric in VERDICT_METRICS:
            summary = differences(rows, stop, k, other, metric)
            found.setdefault(other, {})[metric] = {**summary, "verdict": verdict(summary, DIRECTIONS[metric][0])}
    return found


def report(ks: tuple[int, ...], seeds: tuple[int, ...], work: Path, out: Path, command: str) -> None:
    began = time.perf_counter()
    rows = [row for stop in STOP_TARGETS for row in rows_of(stop, ks, seeds, work)]
    markdown = [
        "# StructGuard against the field on digits (issue 13)", "",
        f"Made by `{command}` on {machine()['cpu']} (torch {torch.__version__}); seeds {seeds[0]}–{seeds[-1]} "
        f"(n = {len(seeds)} per cell), k ∈ {{{', '.join(map(str, ks))}}}, every registered method at the digits "
        "preset's tuned settings (docs/field_tuning.md), the original and the retrain reference. Cells: mean ± sd "
        f"over the seeds. U-LiRA: {SHADOWS} shadow pairs per forget set. Paired differences: StructGuard − other, "
        "per seed, with the 95 % t-interval of the mean; 'within noise' when it covers 0; for loss_mia the "
        "difference of the distances to 0.5.", "",
        "<!-- notes:start -->", "<!-- notes:end -->", "",
    ]
    found: dict[str, Any] = {}
    for stop in STOP_TARGETS:
        for k in ks:
            markdown += [f"## Stop at {stop}, k = {k}", "", summary_table(rows, stop, k), "",
                         f"### StructGuard's paired differences (stop at {stop}, k = {k})", ""]
            found.setdefault(stop, {})[k] = paired_section(rows, stop, k)
            markdown += [paired_table(found[stop][k]), ""]
    markdown += ["## Where StructGuard wins, ties or loses", "", *answers(found), ""]
    methods = sorted({r["method"] for r in rows} - {"original"})
    data = {"command": command, "machine": machine(), "ks": ks, "seeds": seeds, "shadows": SHADOWS,
            "methods": {m: access_label(METHODS.get(m).data_access) for m in methods}, "rows": rows,
            "paired": found, "report_seconds": time.perf_counter() - began}
    out.write_text(json.dumps(data, indent=1))
    text = "\n".join(markdown)
    previous = out.with_suffix(".md")
    if previous.is_file() and NOTES.search(previous.read_text()):
        text = NOTES.sub(lambda _: NOTES.search(previous.read_text()).group(0), text)  # type: ignore[union-attr]
    previous.write_text(text)
    print(f"wrote {out} and {previous}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("runs", "measure", "report"), default="report",
                        help="runs: make the runs; measure: the field's measurements of each run; report: both, then "
                             "the tables")
    parser.add_argument("--stop", choices=list(STOP_TARGETS), help="runs and measure: one stopping target")
    parser.add_argument("--reverse", action="store_true", help="runs and measure: last run first (a second process)")
    parser.add_argument("--k", type=int, nargs="+", default=list(KS))
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--work", default="field_study_work", help="where per-run measurements are kept")
    parser.add_argument("--out", default="docs/field_study.json")
    args = parser.parse_args()
    ks, seeds = tuple(args.k), tuple(args.seeds)
    if args.phase == "runs":
        for stop in [args.stop] if args.stop else list(STOP_TARGETS):
            run_phase(stop, ks, seeds, args.reverse)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "measure":
        for stop in [args.stop] if args.stop else list(STOP_TARGETS):
            rows_of(stop, ks, seeds, work, args.reverse)
        return
    report(ks, seeds, work, Path(args.out), "python " + " ".join(shlex.quote(a) for a in sys.argv))


if __name__ == "__main__":
    main()
