"""One cell of a sweep as a worker runs it, and what the store keeps about it.

:func:`execute_cell` is what every executor calls in its worker (a pool process, a Ray task, a
SLURM job): it takes a :class:`CellTask` (plain data, so it pickles to any of them), points the
worker at the sweep's cache, loads the plugins, sets the torch threads, writes everything the
cell prints to its log and runs the cell through the run store
(:func:`~stakes_core.run.runstore.load_or_run_exclusive`). An exception of the cell is caught
and returned as a failed :class:`CellOutcome` with its last line; its traceback is in the log.

The store keeps, in its hidden ``.sweep`` folder, each cell's log (``logs/<entry>.log``, every
attempt appended) and the record of its last outcome (``cells/<entry>.json``: ok or failed,
the error line, the wall seconds, the executor), which is how a later sweep knows which
cells failed before (``--retry-failed``) and how long cells take (the dry run's estimate).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from stakes_core.infra.accel import torch_threads
from stakes_core.infra.cache import atomic_write_bytes
from stakes_core.infra.plugins import load_plugins
from stakes_core.run.config import ExperimentConfig, resolve_device
from stakes_core.run.runstore import SWEEP_FOLDER, load_or_run_exclusive


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell: its label, config (as a dict), the store and cache
    folders (paths every worker sees), its log, the plugins to load and the torch threads."""

    label: str
    config: dict[str, Any]
    entry: str
    store: str
    cache: str
    plugins: tuple[str, ...]
    threads: int

    @property
    def log(self) -> Path:
        return log_path(Path(self.store), self.entry)


@dataclass(frozen=True)
class CellOutcome:
    """How a cell ended: ``ok``; ``ran`` is false when its entry was stored meanwhile by another
    sweep; ``seconds`` is the wall time in the worker; ``error`` the last line of its failure."""

    label: str
    ok: bool
    ran: bool
    seconds: float
    error: str | None = None


def log_path(store: Path, entry: str) -> Path:
    return store / SWEEP_FOLDER / "logs" / f"{entry}.log"


def record_path(store: Path, entry: str) -> Path:
    return store / SWEEP_FOLDER / "cells" / f"{entry}.json"


def error_line(error: BaseException) -> str:
    """The last line of an exception as Python prints it (``ValueError: ...``)."""
    return traceback.format_exception_only(type(error), error)[-1].strip()


def execute_cell(task: CellTask, whole_process: bool = True) -> CellOutcome:
    """Run one cell in this worker and say how it ended. ``whole_process`` also sends what C
    code writes (file descriptors 1 and 2) to the log: right in a worker process, wrong in the
    process that draws the sweep's progress bar."""
    start = time.perf_counter()
    os.environ["STAKES_CACHE_DIR"] = task.cache
    try:
        with torch_threads(task.threads), captured_output(task.log, whole_process):
            print(f"=== {task.label}: {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()}, "
                  f"pid {os.getpid()}, {task.threads} torch thread(s)", flush=True)
            try:
                _, ran = run_task(task)
            except Exception as error:  # the cell's failure, reported as its outcome; the traceback is logged
                traceback.print_exc()
                return CellOutcome(task.label, False, True, time.perf_counter() - start, error_line(error))
            print(f"=== {'ran and stored' if ran else 'stored meanwhile by another sweep'} in "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
    except OSError as error:  # the log itself cannot be written
        return CellOutcome(task.label, False, False, time.perf_counter() - start, error_line(error))
    return CellOutcome(task.label, True, ran, time.perf_counter() - start)


def run_task(task: CellTask) -> tuple[Path, bool]:
    """The cell's run, made (or found stored) in the task's store."""
    load_plugins(task.plugins, source="the sweep")
    config = ExperimentConfig(**task.config)
    resolve_device(config.device)  # a GPU cell on a machine without one fails here, in one line
    return load_or_run_exclusive(config, task.store, progress=False)


@contextmanager
def captured_output(path: Path, whole_process: bool) -> Iterator[None]:
    """Append everything printed, warned and logged inside the block to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8", buffering=1) as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)] if whole_process else []
        if whole_process:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        handler = logging.StreamHandler(log)
        logging.getLogger().addHandler(handler)
        try:
            with redirect_stdout(log), redirect_stderr(log):
                yield
        finally:
            logging.getLogger().removeHandler(handler)
            log.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def note(task: CellTask, text: str) -> None:
    """Append a line of the driver's (a lost worker, a requeue) to the cell's log."""
    path = task.log
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")


def write_record(task: CellTask, outcome: CellOutcome, executor: str) -> None:
    """Keep the last outcome of ``task``'s cell in the store (atomically)."""
    config = task.config
    record = {**asdict(outcome), "entry": task.entry, "executor": executor, "log": str(task.log),
              "dataset": config["dataset"]["name"], "method": config["methods"][0], "k": config["k"],
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_bytes(record_path(Path(task.store), task.entry), json.dumps(record, indent=1).encode())


def read_record(store: Path, entry: str) -> dict[str, Any] | None:
    """The last recorded outcome of a cell, or ``None`` when there is none (or it is unreadable)."""
    try:
        record = json.loads(record_path(store, entry).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def read_records(store: Path) -> list[dict[str, Any]]:
    """Every readable cell record of ``store``."""
    folder = store / SWEEP_FOLDER / "cells"
    found = [read_record(store, path.stem) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return [record for record in found if record is not None]
