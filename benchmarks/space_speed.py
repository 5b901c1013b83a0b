"""Seconds of one StructGuard request per structure space on the digits default (issue 14's
speed check: a new space may add at most 20 % to a request).

For each seed and space, one StructGuard run (text anchors, k = 16 by default) in this process,
spaces interleaved per seed so a slow spell of the machine hits every space alike. A request's
seconds depend on how many steps it takes to reach forget accuracy 0, which differs between
spaces, so the report gives both the request's seconds and its cost per update (the
``importance``, ``steps`` and ``evaluation`` phases over the updates), with the phases that add
up to the request (``text_map`` is the fit of the map before unlearning).

    python benchmarks/space_speed.py --seeds 0 1 2 3 4 --out docs/perf_spaces.json
"""

from __future__ import annotations

import statistics
import sys

from common import base_parser, environment, pin_threads, print_table, warm_up, write_json

PHASES = ("setup", "proxy", "text_map", "importance", "steps", "evaluation")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], "docs/perf_spaces.json")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    warm_up()

    from stakes_core.methods.structure_space import STRUCTURE_SPACES
    from stakes_core.run.config import experiment_config
    from stakes_core.run.experiment import run_experiment

    runs = []
    for seed in args.seeds:
        for space in STRUCTURE_SPACES:
            config = experiment_config("digits", k=args.k, seed=seed, methods=["structguard"], device=args.device,
                                       overrides=[f"structguard.structure_space={space}"])
            method = run_experiment(config, progress=False).methods["structguard"]
            runs.append({"seed": seed, "space": space, "updates": method.steps, "seconds": method.seconds,
                         **{phase: method.timings.get(phase, 0.0) for phase in PHASES}})
    paper = {r["seed"]: r for r in runs if r["space"] == "paper"}
    rows = []
    for space in STRUCTURE_SPACES:
        got = [r for r in runs if r["space"] == space]
        per_step = [(r["importance"] + r["steps"] + r["evaluation"]) / max(r["updates"], 1) for r in got]
        rows.append({
            "space": space, "seconds": statistics.fmean(r["seconds"] for r in got),
            "updates": statistics.fmean(r["updates"] for r in got),
            "ms_per_step": 1000 * statistics.fmean(per_step),
            **{phase: statistics.fmean(r[phase] for r in got) for phase in PHASES},
            "request_ratio": statistics.fmean(r["seconds"] / paper[r["seed"]]["seconds"] for r in got),
        })
    for row in rows:
        row["per_step_ratio"] = row["ms_per_step"] / rows[0]["ms_per_step"]
    print(f"digits, k={args.k}, seeds {args.seeds}, {args.threads} thread(s), device {args.device}")
    print_table(rows, ["space", "seconds", "updates", "ms_per_step", *PHASES, "request_ratio", "per_step_ratio"])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "settings": vars(args),
                          "environment": environment(args.device), "runs": runs, "rows": rows})


if __name__ == "__main__":
    main()
