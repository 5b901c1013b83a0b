"""How much one seed's results move between 1 and 2 CPU threads, and which settings remove the
move (issue 17, section 1).

Every paper method runs on digits with the preset's hyperparameters, per k and seed, once with
1 and once with 2 threads. Each (setting, threads) arm runs in its own subprocess, whose thread
count (``torch.set_num_threads``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) and setting are fixed
before any work. On a machine that other jobs share, ``OMP_WAIT_POLICY=PASSIVE`` in the
environment keeps a 2-thread worker from spinning while it waits for a core (it changes no
number, and costs time on an idle machine). Which building
blocks (a convolution's weight gradient, a linear layer, batch-norm statistics, a long sum) give
other bits with 2 threads is checked per setting on fixed inputs. The cost of the ``--time``
settings is timed apart: the fastest of ``--repeats`` fresh workers per arm. The settings tried:

- ``default``: nothing changed;
- ``deterministic_algorithms``: ``torch.use_deterministic_algorithms(True)``;
- ``mkldnn_deterministic``: ``torch.backends.mkldnn.deterministic = True`` (oneDNN's own
  deterministic mode);
- ``no_mkldnn``: ``torch.backends.mkldnn.enabled = False`` (convolutions by PyTorch's own
  kernels instead of oneDNN, whose weight-gradient reduction is split by thread);
- ``mkl_strict``: ``MKL_CBWR=AUTO,STRICT`` (MKL's strict conditional numerical reproducibility,
  read once when MKL starts, which makes large matrix products independent of the thread count
  but, measured here, not products of a few rows);
- ``no_mkldnn+mkl_strict``: both;
- ``no_mkldnn+mkl_1thread``: oneDNN off and MKL on one thread while PyTorch's own kernels use
  the thread count. PyTorch sets MKL's thread count with its own (``torch.set_num_threads``,
  and ``MKL_NUM_THREADS`` sets both), so this goes through MKL's C API in ``libtorch_cpu``
  (``MKL_Set_Num_Threads_Local``): a diagnostic of where the move comes from, not a setting
  PyTorch offers.

``--full`` settings run on every seed, ``--probe`` settings on ``--probe-seeds``. Per (setting,
threads, k, seed) the worker's records go to ``--work`` and are reused on a rerun; the
comparison goes to ``--out`` (JSON) and the same name with ``.md``.

    STAKES_CACHE_DIR=/tmp/cmp_cache python benchmarks/thread_drift.py --out docs/threads.json
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from paired import digits_of, interval, machine, paired, result_row

from stakes_core.methods import PAPER_METHODS
from stakes_core.models import create_model
from stakes_core.run.config import experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_method

SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_mkldnn": {"mkldnn": False},
    "no_mkldnn+mkl_1thread": {"mkldnn": False, "mkl_threads": 1},
    "mkl_strict": {"env": {"MKL_CBWR": "AUTO,STRICT"}},
    "no_mkldnn+mkl_strict": {"mkldnn": False, "env": {"MKL_CBWR": "AUTO,STRICT"}},
    "deterministic_algorithms": {"deterministic_algorithms": True},
    "mkldnn_deterministic": {"mkldnn_deterministic": True},
}
COMPARED = ("test_acc", "forget_acc", "mean_collapse", "steps")


def set_threads(name: str, threads: int) -> None:
    """PyTorch's thread count, and MKL's where the setting gives it its own."""
    torch.set_num_threads(threads)
    if "mkl_threads" in SETTINGS[name]:  # after PyTorch's lazy thread set-up, which sets MKL's count again
        torch.zeros(1 << 17).sum()
        libtorch = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        libtorch.MKL_Set_Num_Threads_Local(ctypes.c_int(SETTINGS[name]["mkl_threads"]))


def apply_setting(name: str, threads: int) -> None:
    """Fix the thread count and the setting's flags in this (worker) process, before any work."""
    spec = SETTINGS[name]
    set_threads(name, threads)
    if spec.get("deterministic_algorithms"):
        torch.use_deterministic_algorithms(True)
    if spec.get("mkldnn_deterministic"):
        torch.backends.mkldnn.deterministic = True
    if "mkldnn" in spec:
        torch.backends.mkldnn.enabled = spec["mkldnn"]


def building_blocks() -> dict[str, Callable[[], list[torch.Tensor]]]:
    """The operations of an unlearning step that may split a sum by thread, on fixed inputs:
    each returns the tensors to compare."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    resnet = create_model("resnet18_narrow", 10, 1, (0.5,), (0.3,), width=8).train()
    linear = torch.nn.Linear(64, 10)
    digits, rows, few, wide, flat = (torch.randn(*shape, generator=generator)
                                     for shape in [(128, 1, 16, 16), (128, 64), (4, 64), (128, 384), (40000,)])

    def gradients(module: torch.nn.Module, x: torch.Tensor, dim: int) -> list[torch.Tensor]:
        clone = copy.deepcopy(module)
        clone(x).square().sum().backward()
        return [p.grad for p in clone.parameters() if p.grad is not None and p.dim() == dim]

    return {
        "conv weight gradients of the narrow ResNet-18, batch 128 (oneDNN, or im2col + MKL)":
            lambda: gradients(resnet, digits, 4),
        "linear weight gradient, batch 128 (MKL)": lambda: gradients(linear, rows, 2),
        "linear forward, batch 4 (MKL)": lambda: [linear(few)],
        "batch_norm1d batch statistics, 128 × 384": lambda: [F.batch_norm(wide, None, None, training=True)],
        "batch_norm2d batch statistics, 128 × 1 × 16 × 16": lambda: [F.batch_norm(digits, None, None, training=True)],
        "sum of 40,000 values": lambda: [flat.sum()],
    }


def check_blocks(setting: str, path: Path) -> None:
    """Write, per building block, whether 1 and 2 threads give bit-identical results under ``setting``."""
    apply_setting(setting, 1)
    same = {}
    for name, block in building_blocks().items():
        results = []
        for threads in (1, 2):
            set_threads(setting, threads)
            results.append(block())
        same[name] = all(torch.equal(a, b) for a, b in zip(*results))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(same))


def worker(setting: str, threads: int, k: int, seeds: list[int], methods: list[str], work: Path) -> None:
    """Run every method on every seed and write one file of metrics and per-step records per seed."""
    apply_setting(setting, threads)
    for seed in seeds:
        start = time.perf_counter()
        config = experiment_config("digits", k=k, seed=seed, methods=methods, device="cpu")
        context, _ = prepare_context(config, progress=False)
        runs = {}
        for method in methods:
            result = run_method(context, method, config.method_configs[method])
            curve = {"forget_acc": [r.forget_acc for r in result.curve], "loss": [r.loss for r in result.curve]}
            for view in result.curve[0].views:
                curve[f"collapse_{view}"] = [r.views[view] for r in result.curve]
            runs[method] = {**result_row(result), "curve": curve}
        record = {"setting": setting, "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.enabled,
                  "mkl_cbwr": os.environ.get("MKL_CBWR"), "mkl_threads": mkl_threads(), "k": k,
                  "seed": seed, "seconds": time.perf_counter() - start, "runs": runs}
        arm_file(work, setting, threads, k, seed).write_text(json.dumps(record))


def mkl_threads() -> int | None:
    """The number of threads MKL uses in this process, as PyTorch reports it."""
    for line in torch.__config__.parallel_info().splitlines():
        if "mkl_get_max_threads()" in line:
            return int(line.split(":")[1])
    return None


def arm_file(work: Path, setting: str, threads: int, k: int, seed: int) -> Path:
    """Where the worker of one (setting, threads, k, seed) leaves its records."""
    return work / f"{setting}-t{threads}-k{k}-seed{seed}.json"


def run_blocks(setting: str, work: Path) -> dict[str, bool]:
    """The building blocks' check under ``setting`` (in a subprocess with its environment)."""
    path = work / "blocks" / f"{setting}.json"
    if not path.exists():
        command = [sys.executable, __file__, "--blocks", setting, "--work", str(work)]
        subprocess.run(command, env={**os.environ, **SETTINGS[setting].get("env", {})}, check=True)
    return json.loads(path.read_text())


def run_arm(setting: str, threads: int, k: int, seeds: list[int], methods: list[str], work: Path) -> list[dict]:
    """The records of one arm, from earlier runs where they exist, the rest from a new worker."""
    missing = [s for s in seeds if not arm_file(work, setting, threads, k, s).exists()]
    if missing:
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               **SETTINGS[setting].get("env", {})}
        command = [sys.executable, __file__, "--worker", setting, "--threads", str(threads), "--k", str(k),
                   "--seeds", *map(str, missing), "--methods", *methods, "--work", str(work)]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        seconds = time.perf_counter() - start
        print(f"{setting}, {threads} thread(s), k={k}, seeds {missing}: {seconds:.0f} s", flush=True)
    return [json.loads(arm_file(work, setting, threads, k, s).read_text()) for s in seeds]


def curve_gap(one: dict[str, list[float]], two: dict[str, list[float]]) -> tuple[dict[str, float], int | None]:
    """Per record (forget accuracy, loss, collapse of each view), the max |difference| over the
    steps both runs have; and the first step at which any record differs (the shorter run's
    length where only the lengths differ), None where the two are the same."""
    gaps, first = {}, None
    for name, values in one.items():
        gaps[name] = 0.0
        for step, (a, b) in enumerate(zip(values, two[name])):
            if math.isnan(a) and math.isnan(b) or a == b:
                continue
            gaps[name] = max(gaps[name], abs(a - b))
            first = step if first is None else min(first, step)
    if first is None and len(one["loss"]) != len(two["loss"]):
        first = min(len(one["loss"]), len(two["loss"]))
    return gaps, first


def compare(base: list[dict], other: list[dict], methods: list[str]) -> dict[str, dict[str, Any]]:
    """Per method, the paired differences ``other − base`` over the seeds of two arms."""
    summary = {}
    for method in methods:
        pairs = [(b["runs"][method], o["runs"][method]) for b, o in zip(base, other)]
        gaps = [curve_gap(b["curve"], o["curve"]) for b, o in pairs]
        firsts = [first for _, first in gaps if first is not None]
        summary[method] = {
            **{metric: paired([o[metric] - b[metric] for b, o in pairs]) for metric in COMPARED},
            "seeds": len(pairs), "seeds_differing": len(firsts),
            "max_record_gap": {name: max(gap[name] for gap, _ in gaps) for name in gaps[0][0]},
            "first_differing_step": statistics.median(firsts) if firsts else None,
            "seconds_ratio": sum(o["seconds"] for _, o in pairs) / sum(b["seconds"] for b, _ in pairs),
        }
    return summary


def ordered(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The 1-vs-2-thread comparisons by k (as given), then by setting (as listed in SETTINGS)."""
    return sorted(payload["threads"], key=lambda e: (payload["ks"].index(e["k"]), list(SETTINGS).index(e["setting"])))


def verdict(stats: dict[str, Any]) -> str:
    """``identical``, ``loss record only`` (every record but the logged loss value and every final
    metric equal) or ``moving``, for one method's 1-vs-2-thread comparison."""
    if stats["seeds_differing"] == 0:
        return "identical"
    others = [gap for name, gap in stats["max_record_gap"].items() if name != "loss"]
    if max(others) == 0 and all(stats[m]["max_abs"] == 0 for m in COMPARED):
        return "loss record only"
    return "moving"


def summary(payload: dict[str, Any]) -> list[str]:
    """Plain conclusions drawn from the tables below: how far the default moves, which settings
    remove the move for which methods, and which building blocks no setting makes thread-independent."""
    lines = ["## Summary", ""]
    for entry in ordered(payload):
        stats = entry["methods"]
        if entry["setting"] == "default":
            differ = sum(s["seeds_differing"] for s in stats.values())
            pairs = sum(s["seeds"] for s in stats.values())
            test = max(s["test_acc"]["max_abs"] for s in stats.values())
            mean = statistics.fmean(s["test_acc"]["mean_abs"] for s in stats.values())
            collapse = statistics.fmean(s["mean_collapse"]["mean_abs"] for s in stats.values())
            steps = max(s["steps"]["max_abs"] for s in stats.values())
            lines.append(f"- Default, k = {entry['k']}: {differ} of {pairs} (method, seed) runs differ between 1 and "
                         f"2 threads. Test accuracy moves by {mean:.2f} points on average over methods and seeds "
                         f"(|Δ|; largest {test:.1f}), mean collapse by {collapse:.4f}, the step count by up to "
                         f"{steps:g}.")
            continue
        groups: dict[str, list[str]] = {}
        for method, stats_of in stats.items():
            groups.setdefault(verdict(stats_of), []).append(method)
        parts = [f"{label}: {', '.join(groups[label])}" for label in ("identical", "loss record only", "moving")
                 if label in groups]
        lines.append(f"- `{entry['setting']}`, k = {entry['k']}, {len(entry['seeds'])} seed(s): {'; '.join(parts)}.")
    everywhere = [name for name in next(iter(payload["blocks"].values()))
                  if not any(same[name] for same in payload["blocks"].values())]
    lines += [f"- Thread-dependent under every setting tried: {'; '.join(everywhere) or 'nothing'}.", ""]
    return lines


def markdown(payload: dict[str, Any]) -> str:
    """The report: how it was run, a summary, the 1-vs-2-thread move per setting, which building
    blocks depend on the thread count, and each setting's results and cost against the default."""
    env = payload["machine"]
    lines = ["# Results between 1 and 2 CPU threads (issue 17, section 1)", "",
             f"Command: `{payload['command']}`", "",
             f"Digits preset, methods {', '.join(payload['methods'])}, the shipped checkpoint "
             f"(`STAKES_CACHE_DIR={env['cache_dir']}`); torch {env['torch']}, {env['cpu_count']} CPUs ({env['cpu']}). "
             f"Full settings on seeds {payload['seeds']}, probes on seeds {payload['probe_seeds']}; "
             f"{payload['seconds'] / 60:.1f} min of worker time.", "", *summary(payload),
             "## 2 threads − 1 thread, paired by seed", "",
             "Δ = value with 2 threads − value with 1 thread, mean [95 % t-interval] over the seeds (the value "
             "itself on one seed). 'differ' counts the seeds where any per-step record (forget accuracy, loss, "
             "collapse of every view) or the step count differs; '\\|Δ\\| test' is the mean |Δ test_acc|; "
             "'max \\|Δ\\| per step' is the largest difference of the per-step forget accuracy, backbone collapse "
             "and loss over the steps both runs have, over all seeds; 'first' is the median first step that "
             "differs.", "",
             "| setting | k | method | differ | Δ test_acc | \\|Δ\\| test | Δ forget_acc | Δ mean_collapse | Δ steps "
             "| max \\|Δ\\| per step: forget acc, collapse, loss | first |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for entry in ordered(payload):
        for method, s in entry["methods"].items():
            cells = [interval(s[m], digits_of(m)) for m in COMPARED]
            cells.insert(1, f"{s['test_acc']['mean_abs']:.2f}")
            first = "—" if s["first_differing_step"] is None else f"{s['first_differing_step']:g}"
            gap = s["max_record_gap"]
            gaps = f"{gap['forget_acc']:.3g}, {gap['collapse_backbone']:.2g}, {gap['loss']:.2g}"
            lines.append(f"| {entry['setting']} | {entry['k']} | {method} | {s['seeds_differing']}/{s['seeds']} | "
                         + " | ".join(cells) + f" | {gaps} | {first} |")
    names = list(next(iter(payload["blocks"].values())))
    lines += ["", "## Which building blocks depend on the thread count", "",
              "Per setting, whether each operation gives bit-identical results with 1 and 2 threads "
              "(same: ✓, differs: ✗), on fixed random inputs in one process per setting.", "",
              "| operation | " + " | ".join(payload["blocks"]) + " |", "|---|" + "---|" * len(payload["blocks"])]
    for name in names:
        marks = ["✓" if same[name] else "✗" for same in payload["blocks"].values()]
        lines.append(f"| {name} | " + " | ".join(marks) + " |")
    lines += ["", "## Each setting against the default, same thread count", "",
              "'same results' counts the (method, seed) runs whose per-step records and step counts equal the "
              "default's bit for bit; Δ test_acc is the mean over methods and seeds of setting − default.", "",
              "| setting | threads | k | seeds | same results | Δ test_acc |", "|---|---|---|---|---|---|"]
    for entry in payload["costs"]:
        same = sum(s["seeds"] - s["seeds_differing"] for s in entry["methods"].values())
        total = sum(s["seeds"] for s in entry["methods"].values())
        delta = statistics.fmean(s["test_acc"]["mean"] for s in entry["methods"].values())
        lines.append(f"| {entry['setting']} | {entry['threads']} | {entry['k']} | {entry['seeds']} | {same}/{total} "
                     f"| {delta:+.2f} |")
    timing = payload["timing"]
    lines += ["", "## Cost", "",
              f"Seconds of the four methods' requests (proxy set, importance, steps, evaluation; not the set-up) "
              f"on k = {timing['k']}, seed {timing['seed']}, the fastest of {timing['repeats']} fresh processes per "
              "arm, run in turn (the machine is shared). These later processes reproduced the records of the "
              f"measurement above bit for bit in {timing['reproduced']} of {timing['runs']} arms, so the code and "
              "the checkpoint did not change in between.", "",
              "| setting | 1 thread | 2 threads | 2 threads against the default's 1 thread |", "|---|---|---|---|"]
    base = timing["seconds"]["default"]["1"]
    for setting, seconds in timing["seconds"].items():
        lines.append(f"| {setting} | {seconds['1']:.1f} s | {seconds['2']:.1f} s | {seconds['2'] / base:.2f}× |")
    return "\n".join(lines) + "\n"


def time_settings(settings: list[str], k: int, seed: int, repeats: int, methods: list[str], work: Path) -> dict:
    """The fastest summed method seconds of each setting at 1 and 2 threads over ``repeats``
    fresh workers, run round-robin so that a busy spell hits every arm alike."""
    best: dict[str, dict[str, float]] = {s: {"1": math.inf, "2": math.inf} for s in settings}
    reproduced = []
    for repeat in range(repeats):
        for setting in settings:
            for threads in (1, 2):
                record = run_arm(setting, threads, k, [seed], methods, work / "timing" / f"repeat{repeat}")[0]
                seconds = sum(run["seconds"] for run in record["runs"].values())
                best[setting][str(threads)] = min(best[setting][str(threads)], seconds)
                stored = run_arm(setting, threads, k, [seed], methods, work)[0]
                reproduced.append(all(curve_gap(stored["runs"][m]["curve"], record["runs"][m]["curve"])[1] is None
                                      for m in methods))
    return {"k": k, "seed": seed, "repeats": repeats, "seconds": best, "reproduced": sum(reproduced),
            "runs": len(reproduced)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[16, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--probe-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--full", nargs="+", default=["default", "no_mkldnn+mkl_strict"], choices=list(SETTINGS))
    parser.add_argument("--probe", nargs="*", default=[s for s in SETTINGS if s != "default"], choices=list(SETTINGS))
    parser.add_argument("--time", nargs="*", default=["default", "no_mkldnn+mkl_strict", "no_mkldnn+mkl_1thread"],
                        choices=list(SETTINGS), help="settings whose cost is timed on the first k and seed")
    parser.add_argument("--repeats", type=int, default=3, help="timed workers per setting and thread count")
    parser.add_argument("--methods", nargs="+", default=list(PAPER_METHODS))
    parser.add_argument("--work", default="/tmp/stakes_thread_drift", help="folder of the workers' per-seed records")
    parser.add_argument("--out", default="docs/threads.json")
    parser.add_argument("--worker", choices=list(SETTINGS), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--blocks", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.worker:
        worker(args.worker, args.threads, args.k[0], args.seeds, args.methods, work)
        return
    if args.blocks:
        check_blocks(args.blocks, work / "blocks" / f"{args.blocks}.json")
        return
    blocks = {setting: run_blocks(setting, work) for setting in SETTINGS}
    plan = [(s, args.probe_seeds) for s in args.probe if s not in args.full] + [(s, args.seeds) for s in args.full]
    threads, costs = [], []
    for k in args.k:
        for setting, seeds in plan:
            arms = {t: run_arm(setting, t, k, seeds, args.methods, work) for t in (1, 2)}
            threads.append({"setting": setting, "k": k, "seeds": seeds,
                            "methods": compare(arms[1], arms[2], args.methods)})
            if setting != "default":
                for t in (1, 2):
                    base = run_arm("default", t, k, seeds, args.methods, work)
                    costs.append({"setting": setting, "threads": t, "k": k, "seeds": seeds,
                                  "methods": compare(base, arms[t], args.methods)})
    timing = time_settings(args.time, args.k[0], args.seeds[0], args.repeats, args.methods, work)
    records = [json.loads(path.read_text()) for path in sorted(work.glob("*.json"))]
    rows = [{key: value for key, value in record.items() if key not in ("runs", "seconds")}
            | {"method": method, **{m: v for m, v in run.items() if m != "curve"}}
            for record in records for method, run in record["runs"].items()]
    payload = {"command": f"STAKES_CACHE_DIR={os.environ.get('STAKES_CACHE_DIR', '')} python {shlex.join(sys.argv)}",
               "machine": machine(), "ks": args.k, "seeds": args.seeds, "probe_seeds": args.probe_seeds,
               "methods": args.methods,
               "seconds": sum(r["seconds"] for r in records), "blocks": blocks, "threads": threads, "costs": costs,
               "timing": timing, "rows": rows}
    Path(args.out).write_text(json.dumps(payload, indent=1) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown(payload))
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.md')}")


if __name__ == "__main__":
    main()
