"""The issue-16 measurement of `stakes sweep`: one digits grid run by every executor, a rerun of
a complete grid, and a grid killed halfway with SIGKILL and rerun.

The grid is 3 k × 10 seeds × the paper's 4 methods (120 cells; ``--quick``: k 4, seeds 0–1,
neggrad and adv, 4 cells, to check the script). Every arm is the user's command,
``stakes sweep ... --threads 1 --quiet`` in a subprocess, timed from start to exit, on a store
of its own (fresh, so nothing is skipped) and a shared cache whose anchors are built before any
arm is timed (the digits model ships). The arms:

- ``serial``: ``--executor local --workers 1`` (the cells one after the other, in one process);
- ``local``: ``--executor local --workers 2`` (two spawned worker processes);
- ``ray``: ``--executor ray --workers 2`` (a local Ray cluster with 2 CPUs, started by the sweep);
- ``slurm``: ``--executor slurm --workers 2`` (submitit's local executor: no SLURM here).

Every cell runs with one torch thread, so every arm's cells must equal the serial arm's: each
stored cell's per-step records (step, epoch, forget accuracy, every collapse view, the loss and
its terms; not the seconds) are compared with the serial arm's. Per arm: the wall time, the
speed-up over serial, and the per-cell overhead ``(wall × cells at once − Σ cell seconds) /
cells``, where a cell's seconds are its wall time in the worker (its record in the store).

Then: the serial command again on its complete store (the seconds to skip every cell); and a
fresh ``local`` grid whose process group is killed with SIGKILL once half its cells are stored,
then rerun: the rerun must run exactly the missing cells, and its cells must equal the serial arm's.

    OMP_NUM_THREADS=1 python benchmarks/sweep_bench.py --out docs/sweeps.json
    OMP_NUM_THREADS=1 python benchmarks/sweep_bench.py --quick --out /tmp/sweeps_quick.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import environment, print_table, write_json

from stakes_core.anchors import build_anchors, load_descriptions
from stakes_core.run.results import RunResult, find_runs

ARMS = {
    "serial": ["--executor", "local", "--workers", "1"],
    "local": ["--executor", "local", "--workers", "2"],
    "ray": ["--executor", "ray", "--workers", "2"],
    "slurm": ["--executor", "slurm", "--workers", "2"],
}
FULL = ["--k", "4", "8", "16", "--seeds", "0-9", "--methods", "neggrad", "adv", "l2ul", "structguard"]
QUICK = ["--k", "4", "--seeds", "0-1", "--methods", "neggrad", "adv"]
HEADLINE = re.compile(r"^(\d+) cells.*: (\d+) stored, (\d+) failed before, (\d+) to run$", re.M)
RAN = re.compile(r"^sweep: (\d+) of (\d+) cells ran", re.M)


def sweep_command(grid: list[str], store: Path, arm: list[str]) -> list[str]:
    return [sys.executable, "-m", "stakes_core.cli", "sweep", *grid, "--store", str(store), "--threads", "1",
            "--device", "cpu", "--quiet", *arm]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``command``; its wall seconds and stdout (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def records(directory: Path) -> dict[str, list[str]]:
    """The per-step records of a stored cell without their timings, as comparable text."""
    run = RunResult.load(directory)
    return {name: [repr((r.step, r.epoch, r.forget_acc, sorted(r.views.items()), r.loss, sorted(r.terms.items())))
                   for r in result.curve] for name, result in run.methods.items()}


def differing(store: Path, reference: Path) -> list[str]:
    """Entries of ``store`` whose per-step records differ from (or are missing in) ``reference``."""
    return [d.name for d in find_runs(store) if not (reference / d.name).is_dir()
            or records(d) != records(reference / d.name)]


def cell_seconds(store: Path) -> list[float]:
    """The wall seconds of every cell that ran into ``store`` (its record)."""
    folder = store / ".sweep" / "cells"
    found = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return [record["seconds"] for record in found if record["ok"] and record["ran"]]


def arm_row(name: str, wall: float, store: Path, parallel: int, serial_wall: float | None) -> dict[str, Any]:
    seconds = cell_seconds(store)
    cells = len(find_runs(store))
    return {"arm": name, "cells": cells, "wall_s": wall, "cell_s_sum": sum(seconds),
            "at_once": parallel, "overhead_per_cell_s": (wall * parallel - sum(seconds)) / cells,
            "speedup_vs_serial": serial_wall / wall if serial_wall else 1.0}


def kill_halfway(grid: list[str], store: Path, env: dict[str, str], cells: int) -> dict[str, Any]:
    """Start a 2-worker local grid, SIGKILL its process group once half the cells are stored,
    then rerun it; what was stored, what the rerun ran, and its time."""
    command = sweep_command(grid, store, ARMS["local"])
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    while not store.is_dir() or len(find_runs(store)) < cells // 2:
        if process.poll() is not None:
            raise SystemExit("the grid to kill ended before half its cells were stored")
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = time.perf_counter() - start
    stored = len(find_runs(store))
    partial = sum(1 for p in store.iterdir() if p.name.endswith(".partial"))
    wall, out = timed(command, env)
    headline, ran = HEADLINE.search(out), RAN.search(out)
    assert headline and ran, out
    return {"killed_after_s": killed_after, "stored_at_kill": stored, "partial_folders_left": partial,
            "rerun_stored": int(headline[2]), "rerun_to_run": int(headline[4]), "rerun_ran": int(ran[1]),
            "rerun_wall_s": wall, "only_missing_ran": int(headline[2]) == stored and int(ran[1]) == cells - stored}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 cells instead of 120, to check the script")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--work", help="folder for the stores and the cache (default: a fresh temporary one)")
    parser.add_argument("--out", default="docs/sweeps.json")
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    work = Path(args.work or tempfile.mkdtemp(prefix="sweep_bench_"))
    for store in work.glob("store-*"):
        shutil.rmtree(store)
    env = {**os.environ, "STAKES_CACHE_DIR": str(work / "cache"), "OMP_NUM_THREADS": "1"}
    os.environ["STAKES_CACHE_DIR"] = env["STAKES_CACHE_DIR"]
    build_anchors(load_descriptions("digits"), "minilm")  # cached before any arm is timed

    rows, equal = [], {}
    serial_wall = None
    for name in ["serial", *[arm for arm in args.arms if arm != "serial"]]:
        store = work / f"store-{name}"
        wall, out = timed(sweep_command(grid, store, ARMS[name]), env)
        print(f"{name}: {wall:.1f} s — {out.strip().splitlines()[-1]}", flush=True)
        serial_wall = serial_wall or wall
        rows.append(arm_row(name, wall, store, 1 if name == "serial" else 2, serial_wall))
        equal[name] = differing(store, work / "store-serial")
    cells = rows[0]["cells"]
    skip_wall, skip_out = timed(sweep_command(grid, work / "store-serial", ARMS["serial"]), env)
    kill = kill_halfway(grid, work / "store-killed", env, cells)
    kill["differing_from_serial"] = differing(work / "store-killed", work / "store-serial")
    print_table(rows, ["arm", "cells", "wall_s", "cell_s_sum", "at_once", "overhead_per_cell_s", "speedup_vs_serial"])
    print(f"rerun of the complete grid: {skip_wall:.1f} s ({skip_out.strip().splitlines()[-1]})")
    print(f"killed halfway: {json.dumps(kill)}")
    print(f"cells differing from serial: {json.dumps(equal)}")
    write_json(args.out, {
        "command": " ".join(["python", "benchmarks/sweep_bench.py", *sys.argv[1:]]),
        "grid": grid, "arms": rows, "differing_from_serial": equal,
        "rerun_complete_s": skip_wall, "killed_halfway": kill,
        "environment": environment("cpu"), "date": time.strftime("%Y-%m-%d"),
    })
    if any(equal.values()) or kill["differing_from_serial"] or not kill["only_missing_ran"]:
        raise SystemExit("a check failed (see above)")


if __name__ == "__main__":
    main()
