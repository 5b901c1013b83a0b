"""Do the stakes' meanings matter? StructGuard in each structure space with the text anchors and
their controls, 10 seeds paired by seed (issue 14).

For a preset (digits or shapes), each k of the preset's study, each seed and each arm, one
StructGuard run, stored in the run store (a stopped study resumes; two processes share the work
with ``--reverse``). The arms:

- every structure space (``paper``, ``conse``, ``text_map``) with the text anchors and each control
  of :mod:`stakes_core.anchors.variants` (``permuted``, ``rotated``, ``random``, ``prototypes``);
- the ``semantic`` attack targets (paper space) with the text anchors and with the permuted ones.

The report pairs, per space and k, the text anchors with each control and each space with the
paper's (test accuracy, and collapse measured in the paper's space), with 95 % t-intervals, adds
the anchor–model agreement of the preset's text anchors
(:mod:`stakes_core.analysis.anchor_agreement`) and the seconds of a request per space. Writes
``--out`` (JSON) and the same name with ``.md``; the text between ``<!-- notes:start -->`` and
``<!-- notes:end -->`` of an existing ``.md`` is kept.

    OMP_NUM_THREADS=1 python benchmarks/semantic_study.py --preset digits --phase runs
    OMP_NUM_THREADS=1 python benchmarks/semantic_study.py --preset digits --phase runs --reverse   # a second process
    OMP_NUM_THREADS=1 python benchmarks/semantic_study.py --preset digits --out docs/semantic_study_digits.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paired import machine, mean_sd, paired

from stakes_core.analysis.anchor_agreement import anchor_model_agreement
from stakes_core.methods.structure_space import STRUCTURE_SPACES
from stakes_core.report.semantic import METRICS, comparison_table, meaning_answer, verdict
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import load_or_run_exclusive

KS = {"digits": (4, 8, 16), "shapes": (16, 64, 128)}
SEEDS = tuple(range(10))
CONTROLS = ("permuted", "rotated", "random", "prototypes")
NOTES = re.compile(r"<!-- notes:start -->.*?<!-- notes:end -->", re.S)


@dataclass(frozen=True)
class Arm:
    """One setting of StructGuard: where structure is measured, which anchors, which targets."""

    space: str
    anchors: str
    targets: str = "uniform_other"

    @property
    def name(self) -> str:
        suffix = ", semantic targets" if self.targets == "semantic" else ""
        return f"{self.space} / {self.anchors}{suffix}"


def arms(controls: tuple[str, ...], semantic: bool = True) -> list[Arm]:
    """Every space with the text anchors and each control, then (``semantic``) the semantic
    targets' two arms."""
    spaces = [Arm(space, anchors) for space in STRUCTURE_SPACES for anchors in ("text", *controls)]
    return spaces + ([Arm("paper", "text", "semantic"), Arm("paper", "permuted", "semantic")] if semantic else [])


def config_of(preset: str, k: int, seed: int, arm: Arm, record_every: int = 1) -> ExperimentConfig:
    overrides = [f"structguard.structure_space={arm.space}"] if arm.space != "paper" else []
    if arm.targets != "uniform_other":
        overrides.append(f"structguard.target_rule={arm.targets}")
    config = experiment_config(preset, k=k, seed=seed, methods=["structguard"], overrides=overrides,
                               anchor_source=arm.anchors, device="cpu")
    return dataclasses.replace(config, record_every=record_every)


def plan(
    ks: tuple[int, ...], seeds: tuple[int, ...], controls: tuple[str, ...], semantic: bool = True
) -> list[tuple[int, int, Arm]]:
    return [(k, seed, arm) for k in ks for seed in seeds for arm in arms(controls, semantic)]


def run_phase(preset: str, ks: tuple[int, ...], seeds: tuple[int, ...], controls: tuple[str, ...],
              semantic: bool, record_every: int, reverse: bool) -> None:
    """Make (or find) every run; ``reverse`` walks the plan from its end, for a second process."""
    for k, seed, arm in plan(ks, seeds, controls, semantic)[:: -1 if reverse else 1]:
        began = time.perf_counter()
        directory, ran = load_or_run_exclusive(config_of(preset, k, seed, arm, record_every), progress=False)
        if ran:
            print(f"k={k} seed={seed} {arm.name}: {directory.name} ({time.perf_counter() - began:.0f} s)", flush=True)


def rows_of(
    preset: str, ks: tuple[int, ...], seeds: tuple[int, ...], controls: tuple[str, ...], semantic: bool,
    record_every: int,
) -> list[dict[str, Any]]:
    """One row per stored run: its arm, k, seed and StructGuard's metrics."""
    rows = []
    for k, seed, arm in plan(ks, seeds, controls, semantic):
        directory, _ = load_or_run_exclusive(config_of(preset, k, seed, arm, record_every), progress=False)
        result = RunResult.load(directory).method("structguard")
        rows.append({
            "arm": arm.name, "space": arm.space, "anchors": arm.anchors, "targets": arm.targets, "k": k, "seed": seed,
            "test_acc": result.metrics["test_acc"], "forget_acc": result.metrics["forget_acc"],
            "mean_collapse": result.mean_collapse, "final_collapse": result.final_collapse,
            "reached_zero": result.reached_zero, "steps": result.steps, "seconds": result.seconds,
        })
    return rows


def values(rows: list[dict[str, Any]], arm: Arm, k: int, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in rows if r["arm"] == arm.name and r["k"] == k}


def comparison(rows: list[dict[str, Any]], first: Arm, second: Arm, k: int, metric: str) -> dict[str, Any]:
    """``first − second`` paired by seed, with its 95 % interval and a verdict; ``control`` is the
    control anchor source when the two differ only in their anchors."""
    a, b = values(rows, first, k, metric), values(rows, second, k, metric)
    result = paired([a[s] - b[s] for s in sorted(a) if s in b])
    same_setting = (first.space, first.targets) == (second.space, second.targets)
    control = second.anchors if same_setting and first.anchors == "text" else None
    return {"first": first.name, "second": second.name, "control": control, "k": k, "metric": metric, **result,
            "verdict": verdict(metric, result["low"], result["high"])}


def comparisons(
    rows: list[dict[str, Any]], ks: tuple[int, ...], controls: tuple[str, ...], semantic: bool
) -> list[dict[str, Any]]:
    """Text against each control in every space; each space against the paper's (text anchors);
    semantic targets against their permuted control and against uniform targets. Test accuracy
    always; collapse only where :func:`comparable_collapse`."""
    pairs = [(Arm(s, "text"), Arm(s, c)) for s in STRUCTURE_SPACES for c in controls]
    pairs += [(Arm(s, "text"), Arm("paper", "text")) for s in STRUCTURE_SPACES if s != "paper"]
    if semantic:
        pairs += [(Arm("paper", "text", "semantic"), Arm("paper", "permuted", "semantic")),
                  (Arm("paper", "text", "semantic"), Arm("paper", "text"))]
    return [comparison(rows, a, b, k, m) for a, b in pairs for k in ks for m in METRICS
            if m == "test_acc" or comparable_collapse(a, b)]


def comparable_collapse(first: Arm, second: Arm) -> bool:
    """Whether two arms' collapse is measured on the same scale: collapse is ``S``'s drift with
    the run's own anchors, which sees them only through ``AᵀA``, so only arms whose anchors are
    the text anchors or a permutation of them can be compared on it."""
    return {first.anchors, second.anchors} <= {"text", "permuted"}


def agreement(preset: str) -> dict[str, dict[str, float]]:
    """The anchor–model agreement of the preset's text anchors (Spearman ρ, permutation p)."""
    config = experiment_config(preset, methods=["structguard"], device="cpu")
    context, _ = prepare_context(config, progress=False)
    found = anchor_model_agreement(context.anchors, context.original, context.dataset, "cpu")
    return {view: {"rho": r.rho, "p_value": r.p_value, "permutations": r.permutations} for view, r in found.items()}


def summary_table(rows: list[dict[str, Any]], k: int, controls: tuple[str, ...], semantic: bool) -> str:
    lines = ["| arm | test acc | forget acc | mean collapse | steps | seconds | reached 0 |",
             "|---|---|---|---|---|---|---|"]
    for arm in arms(controls, semantic):
        got = [r for r in rows if r["arm"] == arm.name and r["k"] == k]
        cells = [mean_sd([r[m] for r in got], d) for m, d in
                 (("test_acc", 1), ("forget_acc", 1), ("mean_collapse", 3), ("steps", 1), ("seconds", 1))]
        lines.append(f"| {arm.name} | {' | '.join(cells)} | {sum(r['reached_zero'] for r in got)}/{len(got)} |")
    return "\n".join(lines)


def seconds_by_space(rows: list[dict[str, Any]], k: int) -> dict[str, dict[str, float]]:
    """Mean seconds of a StructGuard request with the text anchors, and per step, by space."""
    out = {}
    for space in STRUCTURE_SPACES:
        got = [r for r in rows if r["arm"] == Arm(space, "text").name and r["k"] == k]
        out[space] = {"seconds": statistics.fmean(r["seconds"] for r in got),
                      "seconds_per_step": statistics.fmean(r["seconds"] / max(r["steps"], 1) for r in got)}
    return out


def report(preset: str, ks: tuple[int, ...], seeds: tuple[int, ...], controls: tuple[str, ...], semantic: bool,
           record_every: int, out: Path, command: str) -> None:
    rows = rows_of(preset, ks, seeds, controls, semantic, record_every)
    found = comparisons(rows, ks, controls, semantic)
    agree = agreement(preset)
    speed = seconds_by_space(rows, max(ks))
    payload = {"preset": preset, "ks": ks, "seeds": seeds, "record_every": record_every, "command": command,
               "machine": machine(), "arms": [a.name for a in arms(controls, semantic)], "rows": rows,
               "comparisons": found, "agreement": agree, "seconds_by_space": speed}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    markdown = out.with_suffix(".md")
    notes = NOTES.search(markdown.read_text()) if markdown.exists() else None
    found_on = machine()
    where = (f"{found_on['cpu']} ({found_on['cpu_count']} cores), torch {found_on['torch']}, "
             f"{found_on['torch_threads']} thread per process")
    parts = [
        f"# Do the stakes' meanings matter? StructGuard's structure spaces on {preset}\n",
        f"Runs made by this script's `--phase runs` (two processes, one with `--reverse`); this report by "
        f"`{command}`; seeds {seeds[0]}–{seeds[-1]}, on {where}. Every difference is paired by seed; the interval "
        "is the 95 % t-interval of the per-seed differences, and \"within noise\" means it covers 0. Collapse is "
        "measured in the paper's space with the run's own anchors, so it is compared only between the text anchors "
        "and their permutation (which have the same `AᵀA`), never against random anchors or prototypes.\n",
        notes.group(0) if notes else "<!-- notes:start -->\n<!-- notes:end -->",
        "\n## Do the anchors agree with the model? (text anchors, Spearman ρ of off-diagonal similarities)\n",
        "\n".join(f"- {view}: ρ = {a['rho']:+.3f}, permutation p = {a['p_value']:.3g} ({a['permutations']} "
                  "permutations)" for view, a in agree.items()),
        "\n## Does any formulation make the text anchors beat their permuted control?\n",
        meaning_answer(found),
        f"\n## Seconds of a request (text anchors, k = {max(ks)}, mean over seeds; measured while the study's "
        "two processes shared the machine with other work, so see `benchmarks/space_speed.py` for a quiet "
        "measurement)\n",
        "\n".join(f"- {space}: {s['seconds']:.2f} s ({s['seconds_per_step'] * 1000:.0f} ms per step; "
                  f"{s['seconds'] / speed['paper']['seconds']:.2f}× paper)" for space, s in speed.items()),
    ]
    for k in ks:
        parts += [f"\n## k = {k}: every arm (mean ± sd over seeds)\n", summary_table(rows, k, controls, semantic)]
    parts += ["\n## Paired differences\n", comparison_table(found)]
    markdown.write_text("\n".join(parts) + "\n")
    print(f"wrote {out} and {markdown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(KS), default="digits")
    parser.add_argument("--phase", choices=("runs", "report"), default="report",
                        help="runs: make the runs; report: make what is missing, then the tables")
    parser.add_argument("--reverse", action="store_true", help="runs: last run first (a second process)")
    parser.add_argument("--k", type=int, nargs="+")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--controls", nargs="+", choices=CONTROLS, default=list(CONTROLS),
                        help="the anchor controls each space is run with (the text anchors always are)")
    parser.add_argument("--no-semantic-targets", dest="semantic", action="store_false",
                        help="leave out the two arms with semantic attack targets")
    parser.add_argument("--record-every", type=int, default=1,
                        help="measure collapse every n steps (the final step always); 1 measures every step")
    parser.add_argument("--out", help="default: docs/semantic_study_<preset>.json")
    args = parser.parse_args()
    ks, seeds, controls = tuple(args.k or KS[args.preset]), tuple(args.seeds), tuple(args.controls)
    if args.phase == "runs":
        run_phase(args.preset, ks, seeds, controls, args.semantic, args.record_every, args.reverse)
        return
    out = Path(args.out or f"docs/semantic_study_{args.preset}.json")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    report(args.preset, ks, seeds, controls, args.semantic, args.record_every, out, command)


if __name__ == "__main__":
    main()
