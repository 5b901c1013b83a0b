"""Choose the digits preset's hyperparameters on tuning seeds (never the reported ones).

For every method a small grid is run on seeds 100-102 at k=16 (a first pass on seed 100
with lr up to 0.03 and ε up to 2.0 showed both too large for every method, so the grid
below starts lower; later passes added lr 0.0003 and 0.0001 for the baselines and projector lr 0.01 for
StructGuard, whose optima sat on the grid's lower edge); the chosen setting is the
one with the best mean test accuracy among those that reach forget accuracy 0 on every
seed. Each method is tuned over its own hyperparameters only, so the baselines get the
same care as StructGuard. Prints a table and writes JSON.

    OMP_NUM_THREADS=1 python benchmarks/tune_digits.py --out docs/digits_tuning.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

from stakes_core.run.config import experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_method

PGD = {"n_adv": 20, "pgd_step": 0.25, "pgd_iterations": 20}
GRIDS = {
    "neggrad": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01]},
    "adv": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01], "pgd_eps": [0.5, 1.0]},
    "l2ul": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01], "pgd_eps": [0.5, 1.0]},
    "structguard": {"lr": [0.005, 0.01, 0.02], "projector_lr": [0.01, 0.02, 0.05], "pgd_eps": [0.5, 1.0]},
}


def settings(method: str) -> list[dict]:
    grid = GRIDS[method]
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    return [{**(PGD if method != "neggrad" else {}), **combo} for combo in combos]


def summary_markdown(rows: list[dict], chosen: dict, seeds: list[int]) -> str:
    """Every setting of every method: mean ± sd test accuracy over the tuning seeds."""
    lines = [f"Tuning seeds {seeds}, k=16. Test accuracy (%) mean ± sd over the seeds; "
             "'all forgot' = forget accuracy 0 on every seed; ★ = chosen.", ""]
    for method, grid in GRIDS.items():
        lines += [f"### {method}", "", "| " + " | ".join(grid) + " | test acc | all forgot |",
            "|" + "---|" * (len(grid) + 2)]
        for setting in settings(method):
            runs = [r for r in rows if r["method"] == method and r["setting"] == setting and r["seed"] in seeds]
            tests = [r["test_acc"] for r in runs]
            spread = statistics.stdev(tests) if len(tests) > 1 else 0.0
            star = " ★" if chosen[method] and chosen[method][1] == setting else ""
            forgot = "yes" if runs and all(r["forget_acc"] == 0 for r in runs) else "no"
            values = " | ".join(str(setting[key]) for key in grid)
            lines.append(f"| {values} | {statistics.mean(tests):.1f} ± {spread:.1f}{star} | {forgot} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--out", default="digits_tuning.json")
    parser.add_argument("--reuse",
        help="an earlier output whose rows are kept instead of rerun (runs are deterministic)")
    args = parser.parse_args()
    rows = json.loads(open(args.reuse).read())["rows"] if args.reuse else []
    done = {(r["seed"], r["method"], json.dumps(r["setting"], sort_keys=True)) for r in rows}
    start = time.perf_counter()
    for seed in args.seeds:
        context, _ = prepare_context(experiment_config("digits", k=args.k, seed=seed, device="cpu"), progress=False)
        for method in GRIDS:
            for setting in settings(method):
                if (seed, method, json.dumps(setting, sort_keys=True)) in done:
                    continue
                result = run_method(context, method, setting)
                rows.append({"seed": seed, "method": method, "setting": setting, **result.metrics,
                             "mean_collapse": result.mean_collapse, "reached_zero": result.reached_zero})
                print(f"seed {seed} {method:11s} {setting} test {result.metrics['test_acc']:.1f} "
                      f"forget {result.metrics['forget_acc']:.1f}", flush=True)
    chosen = {}
    for method in GRIDS:
        scored = []
        for setting in settings(method):
            runs = [r for r in rows if r["method"] == method and r["setting"] == setting and r["seed"] in args.seeds]
            if len(runs) == len(args.seeds) and all(r["forget_acc"] == 0 for r in runs):
                scored.append((statistics.mean(r["test_acc"] for r in runs), setting))
        chosen[method] = max(scored, key=lambda item: item[0]) if scored else None
    print("\nchosen (mean test acc over tuning seeds):")
    for method, choice in chosen.items():
        print(f"  {method:11s} {choice}")
    with open(args.out.removesuffix(".json") + ".md", "w") as handle:
        handle.write(summary_markdown(rows, chosen, args.seeds))
    with open(args.out, "w") as handle:
        json.dump({"seeds": args.seeds, "k": args.k, "grids": GRIDS, "rows": rows, "chosen": chosen,
                   "seconds": time.perf_counter() - start}, handle, indent=1)


if __name__ == "__main__":
    main()
