"""How much of the measured collapse and accuracy drop is batch-norm drift (issue 17, section 3).

Every step runs in train mode (the paper's), so the backbone's batch-norm running statistics
move with every forward pass on the small forget and proxy batches. For every paper method on
digits, per k and seed (paired: one shared context and proxy set per (k, seed)), four arms run
with the digits preset's hyperparameters:

- ``train``: the default (``bn_stats="train"``);
- ``frozen``: ``bn_stats="frozen"`` (the backbone's batch norm in eval mode during the steps);
- ``lr0``: the default with every learning rate at 0 (StructGuard: ``lr`` and ``projector_lr``),
  so nothing but the batch-norm statistics can move: drift alone, up to the epoch cap;
- ``lr0_matched``: the same for as many epochs as the ``train`` run took (never stopping
  earlier), so drift alone over the steps the method really ran. StructGuard's deployed path
  keeps its random projector at lr 0, so only its backbone collapse means anything there.

Writes every run to ``--out`` (JSON, rewritten after each (k, seed), so a stopped run resumes)
and the tables to the same name with ``.md``. Nothing is written to the run store.

    STAKES_CACHE_DIR=/tmp/cmp_cache OMP_NUM_THREADS=1 python benchmarks/bn_drift.py --out docs/bn_drift.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from paired import METRICS, digits_of, interval, machine, mean_sd, paired, result_row
from tqdm import tqdm

from stakes_core.methods import PAPER_METHODS, create_method
from stakes_core.metrics.accuracy import evaluate
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_method

ARMS = ("train", "frozen", "lr0", "lr0_matched")


def arm_overrides(arm: str, methods: list[str]) -> list[str]:
    """The ``--set`` overrides of one arm for every method."""
    if arm == "frozen":
        return [f"{m}.bn_stats=frozen" for m in methods]
    if arm in ("lr0", "lr0_matched"):
        return [f"{m}.lr=0" for m in methods] + [f"{m}.projector_lr=0" for m in methods if m == "structguard"]
    return []


def matched_epochs(method: str, overrides: dict[str, Any], k: int, steps: int) -> int:
    """The epochs that hold ``steps`` steps: one batch of the forget set per step for NegGrad,
    one of the k · n_adv proxy images for the others."""
    config = create_method(method, **overrides).config
    images = k if method == "neggrad" else k * config.n_adv
    return math.ceil(steps / math.ceil(images / config.batch_size))


def run_seed(
    k: int, seed: int, methods: list[str], rows: list[dict[str, Any]], bar: tqdm
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The original model's metrics and every (method, arm) run of one (k, seed) not in ``rows``."""
    def config(arm: str, extra: list[str]) -> ExperimentConfig:
        return experiment_config("digits", k=k, seed=seed, methods=methods, device="cpu",
                                 overrides=arm_overrides(arm, methods) + extra)

    context, pretrained = prepare_context(config("train", []), progress=False)
    original = {"k": k, "seed": seed, **evaluate(context.original, context.dataset, context.forget_idx),
                "pretrained_test_acc": pretrained.test_acc}
    done = {(r["method"], r["arm"]): r for r in rows if r["k"] == k and r["seed"] == seed}
    new = []
    for method in methods:
        for arm in ARMS:
            if (method, arm) in done:
                continue
            extra = []
            if arm == "lr0_matched":
                steps = done[(method, "train")]["steps"]
                epochs = matched_epochs(method, config(arm, []).method_configs[method], k, steps)
                extra = [f"{method}.max_epochs={epochs}", f"{method}.stop_from_epoch={epochs}"]
            result = run_method(context, method, config(arm, extra).method_configs[method])
            new.append({"k": k, "seed": seed, "method": method, "arm": arm, **result_row(result)})
            done[(method, arm)] = new[-1]
            bar.update(1)
            bar.set_postfix(k=k, seed=seed, method=method, arm=arm)
    return original, new


def k_tables(k: int, rows: list[dict[str, Any]], originals: list[dict[str, Any]], methods: list[str]) -> list[str]:
    """The Markdown of one k: the arms and paired differences per method and metric, then how
    much of the accuracy drop and of the collapse is drift alone and how much frozen removes."""
    def runs(method: str, arm: str) -> list[dict[str, Any]]:
        return sorted((r for r in rows if r["k"] == k and r["method"] == method and r["arm"] == arm),
                      key=lambda r: r["seed"])

    seeds = sorted({o["seed"] for o in originals if o["k"] == k})
    original_test = statistics.fmean(o["test_acc"] for o in originals if o["k"] == k)
    lines = [f"### k = {k} ({len(seeds)} seeds; original model: test accuracy {original_test:.2f} %)", "",
             "| method | metric | train (default) | frozen | frozen − train, mean [95 % CI] | lr = 0, same steps "
             "| lr = 0, to the cap |", "|---|---|---|---|---|---|---|"]
    for method in methods:
        arms = [runs(method, arm) for arm in ("train", "frozen", "lr0_matched", "lr0")]
        for metric in METRICS:
            summary = paired([f[metric] - t[metric] for f, t in zip(arms[1], arms[0])])
            digits = digits_of(metric)
            cells = [mean_sd([r[metric] for r in arm], digits) for arm in arms]
            lines.append(f"| {method} | {metric} | {cells[0]} | {cells[1]} | {interval(summary, digits)} | "
                         f"{cells[2]} | {cells[3]} |")
        for label, count in (("reached forget 0", lambda r: r["reached_zero"]),
                             ("diverged (non-finite features)", lambda r: math.isnan(r["final_collapse"]))):
            counts = [f"{sum(map(count, arm))}/{len(arm)}" for arm in arms]
            lines.append(f"| {method} | {label} | {counts[0]} | {counts[1]} | | {counts[2]} | {counts[3]} |")
    lines += ["", "Means over the seeds. *Drop* is the original's test accuracy minus the run's. *Drift alone* "
              "is the lr = 0 run over the same steps as the default: its drop and mean collapse as a share of "
              "the default's. *Frozen removes* is `(train − frozen) / train` of the drop and of the mean "
              "collapse (negative: frozen is worse). StructGuard deploys h∘p∘g, whose projector stays random at "
              "lr = 0, so its drift-alone accuracy is not comparable (n/a); its backbone collapse is.", "",
              "| method | drop, train | drop, frozen | frozen removes, drop | collapse, train | collapse, frozen | "
              "frozen removes, collapse | drift alone: drop | drift alone: collapse |",
              "|---|---|---|---|---|---|---|---|---|"]
    for method in methods:
        test = {arm: statistics.fmean(r["test_acc"] for r in runs(method, arm)) for arm in ARMS}
        collapse = {arm: statistics.fmean(r["mean_collapse"] for r in runs(method, arm)) for arm in ARMS}
        drop = {arm: original_test - test[arm] for arm in ARMS}
        drift_drop = "n/a" if method == "structguard" else (
            f"{drop['lr0_matched']:.1f} ({drop['lr0_matched'] / drop['train']:.0%})")
        lines.append(
            f"| {method} | {drop['train']:.1f} | {drop['frozen']:.1f} | "
            f"{(drop['train'] - drop['frozen']) / drop['train']:.0%} | {collapse['train']:.3f} | "
            f"{collapse['frozen']:.3f} | {(collapse['train'] - collapse['frozen']) / collapse['train']:.0%} | "
            f"{drift_drop} | {collapse['lr0_matched']:.3f} ({collapse['lr0_matched'] / collapse['train']:.0%}) |"
        )
    return lines + [""]


def markdown(payload: dict[str, Any]) -> str:
    """The report: how it was run, then the tables of every k."""
    env = payload["machine"]
    lines = ["# Batch-norm drift in the measured collapse (issue 17, section 3)", "",
             f"Command: `{payload['command']}`", "",
             f"Seeds {payload['seeds']}, digits preset hyperparameters, methods {', '.join(payload['methods'])}; "
             f"torch {env['torch']}, {env['torch_threads']} torch thread(s), {env['cpu_count']} CPUs "
             f"({env['cpu']}); {len(payload['rows'])} method runs in {payload['seconds'] / 60:.1f} min.", "",
             "Cells are mean ± sd over the seeds; differences are paired by seed (same forget set, probe and "
             "proxy set). `train` is the default (the paper's train-mode batch norm), `frozen` is "
             "`bn_stats=\"frozen\"`, `lr = 0` is `train` with every learning rate 0 (StructGuard: `lr` and "
             "`projector_lr`), run for as many epochs as `train` took (*same steps*; at most one epoch's batches "
             "more) or until the epoch cap or forget accuracy 0 (*to the cap*). A run *diverged* when "
             "its final features were not finite (its collapse is NaN and left out, with the n shown; its "
             "accuracies are those of the broken model, and its forget accuracy 0 is no real forgetting).", ""]
    for k in payload["ks"]:
        lines += k_tables(k, payload["rows"], payload["originals"], payload["methods"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--methods", nargs="+", default=list(PAPER_METHODS))
    parser.add_argument("--out", default="docs/bn_drift.json")
    args = parser.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    same = previous.get("methods") == args.methods
    originals, rows = (previous["originals"], previous["rows"]) if same else ([], [])
    done = {(r["k"], r["seed"], r["method"], r["arm"]) for r in rows}
    missing = [(k, seed, m, arm) for k in args.k for seed in args.seeds for m in args.methods for arm in ARMS
               if (k, seed, m, arm) not in done]
    todo = list(dict.fromkeys((k, seed) for k, seed, _, _ in missing))
    seconds = previous.get("seconds", 0.0) if same else 0.0
    command = "OMP_NUM_THREADS={} python {}".format(os.environ.get("OMP_NUM_THREADS", ""), shlex.join(sys.argv))
    bar = tqdm(total=len(missing), desc="bn drift")
    for k, seed in todo:
        start = time.perf_counter()
        original, seed_rows = run_seed(k, seed, args.methods, rows, bar)
        originals = [o for o in originals if (o["k"], o["seed"]) != (k, seed)] + [original]
        rows += seed_rows
        seconds += time.perf_counter() - start
        payload = {"command": command, "ks": args.k, "seeds": args.seeds, "methods": args.methods,
                   "machine": machine(), "seconds": seconds, "originals": originals,
                   "rows": rows}
        out.write_text(json.dumps(payload, indent=1) + "\n")
    bar.close()
    payload = json.loads(out.read_text())
    out.with_suffix(".md").write_text(markdown(payload))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
