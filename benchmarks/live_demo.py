"""The live demo's request, timed: the dashboard's default comparison (digits, k = 16, seed 0,
the paper's four methods) from an empty cache, as a fresh ``stakes run`` process and in phases.

Two measurements, each in fresh processes with a fresh ``$STAKES_CACHE_DIR``:

1. **CLI wall time**: ``python -m stakes_core.cli run --preset digits --k 16 --seeds 0 --quiet``,
   process start included, for each arm, alternating arms, ``--repeats`` times; the fastest
   repeat per arm is kept. Each arm runs from an empty cache (the shipped checkpoint needs
   none; the dataset is converted and the anchors encoded in the run) and from a cache that
   holds the converted dataset and the encoded anchors but no run (what the dashboard has
   once its Setup page has been opened). The arms are this checkout (``after``: methods side by side,
   ``--workers`` default) and, with ``--before DIR``, a checkout of the code before the speed
   work (run with ``PYTHONPATH=DIR``), plus this checkout with ``--workers 1``.
2. **Where the time goes** (this checkout): one child process that times its imports, loading
   the dataset, the pretrained model, the anchors and the probe set, the methods (with the
   moment each method's result is ready, counted from the start of the request, as the
   dashboard shows it), evaluating the original model and storing the run. The phases add up
   to the child's wall time.

    python benchmarks/live_demo.py --before /tmp/before --out docs/perf_live_demo.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import base_parser, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent
REQUEST = ["run", "--preset", "digits", "--k", "16", "--seeds", "0", "--quiet"]
WARM: dict[str | None, str] = {}  # arm's PYTHONPATH → its warm cache

CHILD = r"""
import json, sys, time
start = time.perf_counter()
phases = {}
def lap(name, since):
    now = time.perf_counter(); phases[name] = now - since; return now
import torch
from stakes_core.run.config import experiment_config
from stakes_core.run.context import load_dataset, pretrained_model
from stakes_core.run.experiment import run_experiment
from stakes_core.run.runstore import run_directory, store_result
t = lap("imports", start)
config = experiment_config("digits", k=16, seed=0, device="cpu")
load_dataset(config)
t = lap("dataset", t)
pretrained_model(config, progress=False)
t = lap("pretrained model (shipped)", t)
from stakes_core.anchors import build_anchors, load_descriptions, match_classes
build_anchors(match_classes(load_descriptions(config.descriptions), load_dataset(config).classes), config.encoder)
t = lap("anchors (encoded, or read from the cache)", t)
request = time.perf_counter()
ready = {}
result = run_experiment(config, progress=False, workers=WORKERS,
                        on_result=lambda name, r: ready.__setitem__(name, time.perf_counter() - request))
t = lap("request: context, methods, evaluation of the original", t)
store_result(result, run_directory(config))
t = lap("store the run", t)
print(json.dumps({"phases": phases, "wall": time.perf_counter() - start, "ready": ready,
                  "methods": {n: {"seconds": r.seconds, "timings": r.timings, "steps": r.steps}
                              for n, r in result.methods.items()},
                  "threads": torch.get_num_threads(), "environment": result.environment}))
"""


def warm_cache(pythonpath: str | None) -> str:
    """A cache holding what opening the dashboard leaves behind before Run is pressed (the
    converted dataset and the encoded anchors of the request; no run), made by this arm's code."""
    cache = tempfile.mkdtemp(prefix="live-demo-warm-")
    code = ("from stakes_core.run.config import experiment_config\n"
            "from stakes_core.run.context import prepare_context\n"
            "prepare_context(experiment_config('digits', k=16, seed=0, device='cpu'), progress=False)")
    subprocess.run([sys.executable, "-c", code], cwd=pythonpath or ROOT, env=fresh_env(cache, pythonpath), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cache


def fresh_env(cache: str, pythonpath: str | None) -> dict[str, str]:
    env = {**os.environ, "STAKES_CACHE_DIR": cache}
    env.pop("OMP_NUM_THREADS", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def cli_wall(pythonpath: str | None, extra: list[str], warm: bool) -> float:
    """Seconds of one ``stakes run`` of the request in a fresh process with an empty cache, or
    with a copy of the :func:`warm_cache` of this arm."""
    with tempfile.TemporaryDirectory() as scratch, tempfile.TemporaryDirectory() as out:
        cache = str(Path(scratch) / "cache")
        if warm:
            shutil.copytree(WARM[pythonpath], cache)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "stakes_core.cli", *REQUEST, "--out", out, *extra],
                       cwd=pythonpath or ROOT, env=fresh_env(cache, pythonpath), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def phases(workers: int | None) -> dict:
    """The phase breakdown of the request in a fresh child process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        code = CHILD.replace("WORKERS", repr(workers))
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=fresh_env(cache, None), check=True,
                              capture_output=True, text=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.splitlines()[0], "docs/perf_live_demo.json")
    parser.add_argument("--before", help="a checkout of the code before the speed work (run with PYTHONPATH)")
    args = parser.parse_args(argv)
    arms = {"after (methods side by side)": (None, [])}
    arms["after, --workers 1 (one after another)"] = (None, ["--workers", "1"])
    if args.before:
        arms["before"] = (str(Path(args.before).resolve()), [])
    for pythonpath, _ in arms.values():
        WARM.setdefault(pythonpath, warm_cache(pythonpath))
    walls: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for cache in ("empty cache", "dataset and anchors cached"):
            for name, (pythonpath, extra) in arms.items():
                label = f"{name}; {cache}"
                walls.setdefault(label, []).append(cli_wall(pythonpath, extra, warm=cache != "empty cache"))
                print(f"repeat {repeat + 1}: {label}: {walls[label][-1]:.2f} s", flush=True)
    rows = [{"arm": name, "best_s": round(min(v), 2), "all_s": ", ".join(f"{x:.1f}" for x in v)}
            for name, v in walls.items()]
    print_table(rows, ["arm", "best_s", "all_s"])
    for cache in WARM.values():
        shutil.rmtree(cache, ignore_errors=True)
    breakdown = {"side by side": phases(None), "one after another": phases(1)}
    for name, record in breakdown.items():
        print(f"\n{name}: child wall {record['wall']:.2f} s; phases " +
              ", ".join(f"{k} {v:.2f}" for k, v in record["phases"].items()) +
              "; results ready at " + ", ".join(f"{k} {v:.2f}" for k, v in record["ready"].items()))
    write_json(args.out, {"command": " ".join(["python", "benchmarks/live_demo.py", *(argv or sys.argv[1:])]),
                          "request": " ".join(["stakes", *REQUEST]), "cli_wall": walls, "breakdown": breakdown})


if __name__ == "__main__":
    main()
