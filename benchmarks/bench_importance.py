"""StructGuard's importance estimate: the authors' cycling procedure against one-pass estimates.

On the digits default (StructGuard's preset hyperparameters, its proxy set, the model right
after setup), for each k the three ``importance`` options of StructGuard are timed on the
same model state:

- ``authors_cycling``: the released loop, cycling the proxy set until |D_r| samples were seen
  (the reference);
- ``authors``: the same estimate and the same batch-norm side effect, computed in one pass
  (each batch weighted by its number of visits, the later running-statistics updates
  replayed);
- ``one_pass``: the default, one visit of each proxy example, batch-norm statistics restored.

Reported: seconds, forward/backward passes (batches of 128), speed-up over the cycling loop, the relative L2
difference of each importance vector from the cycling one (all parameters concatenated),
and the largest relative difference of the batch-norm running statistics it leaves.
``--cifar-retained`` adds a row with CIFAR's |D_r| = 50,000 − k (the cycle count of the
paper's setting) on the same digits model.

    python benchmarks/bench_importance.py --out docs/perf_importance.json
"""

from __future__ import annotations

import sys

from common import base_parser, best_time, environment, pin_threads, print_table, with_retained_count, write_json

MODES = ("authors_cycling", "authors", "one_pass")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], "docs/perf_importance.json")
    parser.add_argument("--k", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar-retained", action="store_true", help="add k=16 with |D_r| = 49,984")
    args = parser.parse_args(argv)
    pin_threads(args.threads)

    import torch

    from stakes_core.methods import create_method
    from stakes_core.methods.importance import cycle_visits
    from stakes_core.run.config import experiment_config
    from stakes_core.run.context import prepare_context

    cases = [(k, None) for k in args.k] + ([(16, 50_000 - 16)] if args.cifar_retained else [])
    rows = []
    for k, retained in cases:
        config = experiment_config("digits", k=k, seed=args.seed, methods=["structguard"], device=args.device)
        context, _ = prepare_context(config, progress=False)
        if retained is not None:
            context = with_retained_count(context, retained)
        method = create_method("structguard", **config.method_configs["structguard"])
        torch.manual_seed(args.seed)
        method.setup(context)
        start_state = {n: t.clone() for n, t in method.model.state_dict().items()}
        results = {}
        for mode in MODES:
            method.config.importance = mode

            def estimate() -> dict[str, torch.Tensor]:
                method.model.load_state_dict(start_state)
                return method.estimate_importance(context)

            repeats = 1 if retained is not None and mode == "authors_cycling" else args.repeats
            seconds, importance = best_time(estimate, repeats, args.device)
            vector = torch.cat([v.flatten() for v in importance.values()])
            buffers = {n: b.clone() for n, b in method.model.named_buffers() if "running" in n}
            results[mode] = (seconds, vector, buffers)
        reference_seconds, reference, reference_buffers = results["authors_cycling"]
        size, count = method.config.batch_size, method.proxy_images.shape[0]
        sizes = [min(size, count - start) for start in range(0, count, size)]
        visits = len(cycle_visits(sizes, context.num_retained))
        passes = {"authors_cycling": visits, "authors": min(visits, len(sizes)), "one_pass": len(sizes)}
        for mode, (seconds, vector, buffers) in results.items():
            rows.append({
                "k": k, "proxy_size": count, "num_retained": context.num_retained, "mode": mode, "seconds": seconds,
                "batches": passes[mode],
                "speedup": reference_seconds / seconds,
                "rel_l2_diff": ((vector - reference).norm() / reference.norm()).item(),
                "bn_max_rel_diff": max(
                    ((buffers[n] - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
                    for n, b in reference_buffers.items()
                ),
            })
    print(f"digits, StructGuard preset, seed {args.seed}, {args.threads} thread(s), fastest of {args.repeats}")
    print_table(rows, ["k", "proxy_size", "num_retained", "mode", "seconds", "batches", "speedup", "rel_l2_diff",
                       "bn_max_rel_diff"])
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "settings": vars(args),
                          "environment": environment(args.device), "rows": rows})


if __name__ == "__main__":
    main()
