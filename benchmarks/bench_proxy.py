"""Proxy-set generation: this project's batched targeted L2-PGD against torchattacks.PGDL2.

Same model (the digits default's pretrained narrow ResNet-18, eval mode, frozen), same forget
images, same targets (drawn in the authors' order: per forget batch of 128, ``n_adv``
repetitions), same ε, step and iterations (default 50: the throughput per iteration does not
depend on the count; the paper uses 100). Arms run in round-robin, fastest of ``--repeats``.
Both arms start from the clean image (no random start), because the two libraries draw random
starts differently (advertorch/this project: a uniform image in the box projected onto the
ε-ball; torchattacks: a Gaussian direction with a uniform radius). One difference remains and is
reported: after each step torchattacks projects onto the ε-ball and then clips to [0, 1];
advertorch (and this project) clip first and then project. Arms:

- ``stakes``: all k·n_adv attacks as one batch (``build_proxy_set``), fp32 (the default);
- ``stakes channels_last``: the same with the opt-in channels_last layout;
- ``stakes random start``: the default path as unlearning uses it (success rate for reference);
- ``torchattacks per batch``: one ``PGDL2`` call per forget batch and repetition, as the
  authors' loop calls its attack (``n_adv`` calls on ≤128 images each);
- ``torchattacks one call``: ``PGDL2`` on the whole k·n_adv batch at once.

    python benchmarks/bench_proxy.py --k 16 --out docs/perf_proxy.json
"""

from __future__ import annotations

import sys

from common import base_parser, environment, pin_threads, print_table, race, write_json


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], "docs/perf_proxy.json")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--n-adv", type=int, default=20)
    parser.add_argument("--eps", type=float, default=1.0)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    pin_threads(args.threads)

    import torch
    import torchattacks

    from stakes_core.infra.accel import Acceleration
    from stakes_core.methods import build_proxy_set
    from stakes_core.methods.attacks import PGDConfig
    from stakes_core.run.config import experiment_config
    from stakes_core.run.context import prepare_context

    config = experiment_config("digits", k=args.k, seed=args.seed, methods=["adv"], encoder="random:384",
                               device=args.device)
    context, _ = prepare_context(config, progress=False)
    model, num_classes = context.original, context.dataset.num_classes
    images, labels = context.forget_images, context.forget_labels
    fixed = PGDConfig(args.eps, args.step, args.iterations, random_init=False)

    def ours(accel: Acceleration = Acceleration(), pgd: PGDConfig = fixed) -> tuple[torch.Tensor, torch.Tensor]:
        return build_proxy_set(model, images, labels, args.n_adv, num_classes, pgd, "uniform_other",
                               torch.Generator().manual_seed(args.seed), accel=accel)

    _, targets = ours(pgd=PGDConfig(args.eps, args.step, 0, random_init=False))
    sources = torch.cat([images[s : s + 128] for s in range(0, images.shape[0], 128) for _ in range(args.n_adv)])
    attack = torchattacks.PGDL2(model, eps=args.eps, alpha=args.step, steps=args.iterations, random_start=False)
    attack.set_mode_targeted_by_label(quiet=True)

    def torchattacks_per_batch() -> torch.Tensor:
        out, start = [], 0
        for begin in range(0, images.shape[0], 128):
            size = min(128, images.shape[0] - begin)
            for _ in range(args.n_adv):
                out.append(attack(sources[start : start + size], targets[start : start + size]))
                start += size
        return torch.cat(out)

    def torchattacks_one_call() -> torch.Tensor:
        chunks = range(0, sources.shape[0], 2048)
        return torch.cat([attack(sources[s : s + 2048], targets[s : s + 2048]) for s in chunks])

    arms = {
        "stakes": lambda: ours()[0],
        "stakes channels_last": lambda: ours(Acceleration(channels_last=True))[0],
        "stakes random start": lambda: ours(pgd=PGDConfig(args.eps, args.step, args.iterations))[0],
        "torchattacks per batch": torchattacks_per_batch,
        "torchattacks one call": torchattacks_one_call,
    }
    outputs, rows = {}, []
    for name, (seconds, outputs[name]) in race(arms, args.repeats, args.device).items():
        with torch.no_grad():
            success = (model(outputs[name]).argmax(1) == targets).float().mean().item()
        rows.append({"arm": name, "seconds": seconds, "images_per_s": targets.numel() / seconds,
                     "success_rate": 100 * success})
    reference = rows[0]["images_per_s"]
    for row in rows:
        row["speed_vs_stakes"] = row["images_per_s"] / reference
    per_batch = next(r for r in rows if r["arm"] == "torchattacks per batch")["images_per_s"]
    one_call = next(r for r in rows if r["arm"] == "torchattacks one call")["images_per_s"]
    differences = {
        f"stakes vs {other}": (outputs["stakes"] - outputs[other]).abs().max().item()
        for other in ("stakes channels_last", "torchattacks one call", "torchattacks per batch")
    }
    print(f"k={args.k} n_adv={args.n_adv} ({targets.numel()} attacks), eps={args.eps}, step={args.step}, "
          f"{args.iterations} iterations, {args.threads} thread(s), fastest of {args.repeats}")
    print_table(rows, ["arm", "seconds", "images_per_s", "speed_vs_stakes", "success_rate"])
    speedups = {"stakes / torchattacks per batch": reference / per_batch,
                "stakes / torchattacks one call": reference / one_call,
                "stakes channels_last / torchattacks per batch": rows[1]["images_per_s"] / per_batch}
    for name, value in {**speedups, **{f"max |Δpixel| {k}": v for k, v in differences.items()}}.items():
        print(f"{name}: {value:.3g}")
    write_json(args.out, {"command": "python " + " ".join(sys.argv), "settings": vars(args),
                          "environment": environment(args.device), "attacks": targets.numel(), "arms": rows,
                          "speedups": speedups, "max_abs_pixel_difference": differences})


if __name__ == "__main__":
    main()
