"""Seconds per unlearning request on the digits default, per method and k, with the breakdown.

Runs ``run_experiment`` on the ``digits`` preset (its tuned hyperparameters, MiniLM anchors)
for each k and reports, per method, the request's seconds split into the timed phases:
``proxy`` (targeted L2-PGD proxy set; a method served from the shared cache is charged the
generation time, so every row is a request that ran alone), ``importance`` (L2UL's MAS,
StructGuard's alignment importance), ``steps`` (the update steps), ``evaluation`` (forget
accuracy and structural collapse after every step, which the stopping rule and the curves
need) and ``setup`` (copying the model, building the optimiser). Pretraining is cached and
not part of a request. The process-wide one-off cost of the first optimiser (PyTorch imports
``torch._dynamo``, seconds) is paid before timing, as a long-running service pays it once.

    python benchmarks/bench_end_to_end.py --k 16 64 128 --out docs/perf_end_to_end.json
"""

from __future__ import annotations

import sys

from common import base_parser, environment, pin_threads, print_table, warm_up, write_json

PHASES = ("setup", "proxy", "importance", "steps", "evaluation")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], "docs/perf_end_to_end.json")
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["neggrad", "adv", "l2ul", "structguard"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                        help="hyperparameter override, as in `stakes run --set` (e.g. to shorten a quick check)")
    args = parser.parse_args(argv)
    pin_threads(args.threads)
    warm_up()

    from stakes_core.run.config import experiment_config
    from stakes_core.run.experiment import run_experiment

    rows = []
    for k in args.k:
        config = experiment_config("digits", k=k, seed=args.seed, methods=args.methods, overrides=args.set,
                                   device=args.device, precision=args.precision, channels_last=args.channels_last)
        result = run_experiment(config, progress=False)
        for name, method in result.methods.items():
            rows.append({"k": k, "method": name, "updates": method.steps, "seconds": method.seconds,
                         **{phase: method.timings.get(phase, 0.0) for phase in PHASES},
                         "reached_zero": method.reached_zero, "test_acc": method.metrics["test_acc"]})
    print(f"digits, seed {args.seed}, {args.threads} thread(s), device {args.device}, precision {args.precision}, "
          f"channels_last {args.channels_last}")
    print_table(rows, ["k", "method", "updates", "seconds", *PHASES, "test_acc"])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "settings": vars(args),
                          "environment": environment(args.device), "rows": rows})


if __name__ == "__main__":
    main()
