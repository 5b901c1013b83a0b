"""Choose the digits preset's hyperparameters on tuning seeds (never the reported ones).

For every method a small grid is run on seeds 100-102 at k=16 (a first pass on seed 100
with lr up to 0.03 and ε up to 2.0 showed both too large for every method, so the grid
below starts lower; later passes added lr 0.0003 and 0.0001 for the baselines and projector lr 0.01 for
StructGuard, whose optima sat on the grid's lower edge); the chosen setting is the
one with the best mean test accuracy among those that reach forget accuracy 0 on every
seed (where none does, as for fine-tuning on D_r within its published epochs or SSD's one
shot, the one with the best mean of test accuracy minus forget accuracy: the lowest forget
accuracy alone would pick models whose test accuracy has collapsed). Each method is tuned over its own
hyperparameters only, so the baselines get the same care as StructGuard. Prints a table and
writes JSON (and the table as markdown beside it). The field's baselines (issue 13) are tuned
the same way, under the paper's stopping target:

    OMP_NUM_THREADS=1 python benchmarks/tune_digits.py --out docs/digits_tuning.json
    OMP_NUM_THREADS=1 python benchmarks/tune_digits.py --methods random_label salun ... --out docs/field_tuning.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

from stakes_core.methods import METHODS
from stakes_core.run.config import experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_method

PGD = {"n_adv": 20, "pgd_step": 0.25, "pgd_iterations": 20}
GRIDS = {
    "neggrad": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01]},
    "adv": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01], "pgd_eps": [0.5, 1.0]},
    "l2ul": {"lr": [0.0001, 0.0003, 0.001, 0.003, 0.01], "pgd_eps": [0.5, 1.0]},
    "structguard": {"lr": [0.005, 0.01, 0.02], "projector_lr": [0.01, 0.02, 0.05], "pgd_eps": [0.5, 1.0]},
    "finetune": {"lr": [0.003, 0.01, 0.03, 0.1]},
    "random_label": {"lr": [0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.013]},
    "random_label_dr": {"lr": [0.002, 0.005, 0.013, 0.03, 0.05]},
    "salun": {"lr": [0.00003, 0.0001, 0.0003], "mask_ratio": [0.1, 0.5]},
    "salun_dr": {"lr": [0.002, 0.005, 0.013, 0.03, 0.05]},
    "boundary_shrink": {"lr": [0.00003, 0.0001, 0.0003], "epsilon": [0.1, 0.3]},
    "scrub": {"lr": [0.0005, 0.001, 0.003, 0.01, 0.03]},
    "l1_sparse": {"lr": [0.0001, 0.0003, 0.001], "alpha": [0.0001, 0.001]},
    "l1_sparse_dr": {"lr": [0.01, 0.03], "alpha": [0.0001, 0.0003, 0.001]},
    "ssd": {"selection_weighting": [1.0, 3.0, 10.0], "dampening": [1.0, 10.0], "pgd_eps": [0.5]},
    "ssd_dr": {"selection_weighting": [10.0, 100.0, 300.0], "dampening": [1.0, 10.0]},
}  # the field's baselines add their grids above this line
PAPER = ("neggrad", "adv", "l2ul", "structguard")


def settings(method: str) -> list[dict]:
    grid = GRIDS[method]
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    attacks = "n_adv" in METHODS.get(method).config_class.__dataclass_fields__  # builds a proxy set
    return [{**(PGD if attacks else {}), **combo} for combo in combos]


def summary_markdown(rows: list[dict], chosen: dict, seeds: list[int], methods: list[str]) -> str:
    """Every setting of every method: mean ± sd test accuracy over the tuning seeds."""
    lines = [f"Tuning seeds {seeds}, k=16. Test accuracy (%) mean ± sd over the seeds; "
             "'all forgot' = forget accuracy 0 on every seed; ★ = chosen.", ""]
    for method in methods:
        grid = GRIDS[method]
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
    parser.add_argument("--methods", nargs="+", choices=sorted(GRIDS), default=list(PAPER))
    parser.add_argument("--reuse", nargs="+", default=[],
        help="earlier outputs whose rows are kept instead of rerun (runs are deterministic)")
    args = parser.parse_args()
    rows = [row for path in args.reuse for row in json.loads(open(path).read())["rows"]]
    unique = {(r["seed"], r["method"], json.dumps(r["setting"], sort_keys=True)): r for r in rows}
    rows = list(unique.values())  # a run found in two reused files counts once
    done = {(r["seed"], r["method"], json.dumps(r["setting"], sort_keys=True)) for r in rows}
    start = time.perf_counter()
    for seed in args.seeds:
        context, _ = prepare_context(experiment_config("digits", k=args.k, seed=seed, device="cpu"), progress=False)
        for method in args.methods:
            for setting in settings(method):
                if (seed, method, json.dumps(setting, sort_keys=True)) in done:
                    continue
                result = run_method(context, method, setting)
                rows.append({"seed": seed, "method": method, "setting": setting, **result.metrics,
                             "mean_collapse": result.mean_collapse, "reached_zero": result.reached_zero})
                print(f"seed {seed} {method:11s} {setting} test {result.metrics['test_acc']:.1f} "
                      f"forget {result.metrics['forget_acc']:.1f}", flush=True)
    chosen = {}
    for method in args.methods:
        scored = []
        for setting in settings(method):
            runs = [r for r in rows if r["method"] == method and r["setting"] == setting and r["seed"] in args.seeds]
            if len(runs) == len(args.seeds):
                forgot = all(r["forget_acc"] == 0 for r in runs)
                test = statistics.mean(r["test_acc"] for r in runs)
                balance = test - statistics.mean(r["forget_acc"] for r in runs)
                scored.append(((forgot, test if forgot else balance), test, setting))
        best = max(scored, key=lambda item: item[0]) if scored else None
        chosen[method] = (best[1], best[2]) if best else None
    print("\nchosen (mean test acc over tuning seeds):")
    for method, choice in chosen.items():
        print(f"  {method:11s} {choice}")
    with open(args.out.removesuffix(".json") + ".md", "w") as handle:
        handle.write(summary_markdown(rows, chosen, args.seeds, args.methods))
    with open(args.out, "w") as handle:
        grids = {method: GRIDS[method] for method in args.methods}
        rows = [row for row in rows if row["method"] in args.methods]
        json.dump({"seeds": args.seeds, "k": args.k, "grids": grids, "rows": rows, "chosen": chosen,
                   "seconds": time.perf_counter() - start}, handle, indent=1)


if __name__ == "__main__":
    main()
