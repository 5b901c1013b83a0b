"""Running a sweep: the cells that are not stored go to an executor, one progress bar follows
them, and each outcome is recorded in the store.

:func:`plan` says what a sweep would do (``stakes sweep --dry-run``): every cell, whether it is
stored or failed before, and the time left estimated from the store's own timings.
:func:`run_sweep` runs the cells to do with an executor (:mod:`stakes_core.run.executors`),
at most its capacity in flight. A cell whose worker died is run once more; a cell that failed
is recorded with its error line and log, and a later sweep leaves it alone unless asked to
retry it (``retry_failed``), so a cell that always fails does not cost every rerun its time.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from stakes_core.infra.cache import cache_root
from stakes_core.infra.plugins import loaded_plugins
from stakes_core.run.cells import CellOutcome, CellTask, note, read_record, write_record
from stakes_core.run.executors import Executor
from stakes_core.run.runstore import SWEEP_FOLDER
from stakes_core.run.sweep import Cell, Sweep, estimate_seconds, human_seconds, stored_cells, stored_timings

ATTEMPTS = 2
"""How often a cell is started before a lost worker counts as its failure."""


@dataclass
class Plan:
    """What a sweep would do: every cell with its state (``stored``, ``failed before`` or ``to
    run``), the cells to run, and their estimated seconds (``unknown`` cells had no timing)."""

    sweep: Sweep
    states: list[str]
    to_run: list[Cell]
    estimate: float
    unknown: int

    def count(self, state: str) -> int:
        return self.states.count(state)

    def headline(self) -> str:
        """``120 cells (k 3 × seed 10 × method 4) in STORE: 40 stored, 2 failed before, 78 to run``."""
        def size(axis: str) -> str:
            return f"{axis} {len({str(c.values[axis]) for c in self.sweep.cells if axis in c.values})}"

        sizes = " × ".join(size(axis) for axis in self.sweep.axes if "." not in axis)
        sizes += "".join(f"; {size(axis)} per {axis.split('.')[0]} cell" for axis in self.sweep.axes if "." in axis)
        return (f"{len(self.states)} cells{f' ({sizes})' if sizes else ''} in {self.sweep.store}: "
                f"{self.count('stored')} stored, {self.count('failed before')} failed before, "
                f"{len(self.to_run)} to run")

    def estimate_line(self, workers: int) -> str:
        """The time left, in one line, from the store's own timings."""
        if not self.to_run:
            return "nothing to run"
        if self.unknown == len(self.to_run):
            return "no estimate: the store has no timings of these methods yet"
        missing = f" ({self.unknown} cells with no timing to go by left out)" if self.unknown else ""
        return (f"about {human_seconds(self.estimate)} of cell time{missing}, about "
                f"{human_seconds(self.estimate / max(1, min(workers, len(self.to_run))))} with {workers} at once "
                "(from the store's own timings)")


def plan(sweep: Sweep, retry_failed: bool = False) -> Plan:
    """The state of every cell and the cells to run (failed ones only with ``retry_failed``)."""
    states = []
    for cell, stored in zip(sweep.cells, stored_cells(sweep)):
        record = None if stored else read_record(sweep.store, cell.directory.name)
        states.append("stored" if stored else "failed before" if record and not record.get("ok") else "to run")
    to_run = [cell for cell, state in zip(sweep.cells, states)
              if state == "to run" or (state == "failed before" and retry_failed)]
    estimate, unknown = estimate_seconds(to_run, stored_timings(sweep.store))
    return Plan(sweep, states, to_run, estimate, unknown)


def task_for(cell: Cell, sweep: Sweep, threads: int) -> CellTask:
    """The plain-data task of ``cell`` (every path absolute, for workers on other machines)."""
    return CellTask(
        label=cell.label(sweep.axes), config=asdict(cell.config), entry=cell.directory.name,
        store=str(sweep.store.resolve()), cache=str(cache_root().resolve()), plugins=tuple(loaded_plugins()),
        threads=threads,
    )


@dataclass
class Failure:
    """A failed cell: its label, the error line and where its log is."""

    label: str
    error: str
    log: Path

    def __str__(self) -> str:
        return f"{self.label}: {self.error} (log: {self.log})"


@dataclass
class SweepReport:
    """What :func:`run_sweep` did: every outcome, the failures, the cells rerun after a lost
    worker, and the wall seconds."""

    outcomes: list[CellOutcome] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_sweep(sweep: Sweep, cells: list[Cell], executor: Executor, progress: bool = True) -> SweepReport:
    """Run ``cells`` of ``sweep`` with ``executor``; one bar shows done / running / failed and
    the ETA. Interrupted (Ctrl-C), the executor stops what runs; stored cells stay stored."""
    report = SweepReport()
    start = time.perf_counter()
    pending = deque(task_for(cell, sweep, executor.threads) for cell in cells)
    starts: Counter[str] = Counter()
    in_flight: dict[int, CellTask] = {}
    if pending:
        executor.start()  # connects (or fails to) before the bar is drawn
    bar = tqdm(total=len(pending), desc="sweep", unit="cell", disable=not progress, dynamic_ncols=True)
    try:
        while pending or in_flight:
            room = min(executor.capacity - len(in_flight), len(pending))
            batch = [pending.popleft() for _ in range(room)]
            if batch:
                for task in batch:
                    starts[task.entry] += 1
                in_flight.update(zip(executor.submit(batch), batch))
                show(bar, len(in_flight), len(report.failures))
            for ended in executor.finished(list(in_flight), timeout=1.0):
                task = in_flight.pop(ended.handle)
                outcome = ended.outcome
                if outcome is None:
                    note(task, f"{ended.problem} (start {starts[task.entry]} of at most {ATTEMPTS})")
                    if starts[task.entry] < ATTEMPTS:
                        report.requeued.append(task.label)
                        pending.appendleft(task)
                        continue
                    outcome = CellOutcome(task.label, False, False, 0.0, ended.problem)
                write_record(task, outcome, executor.name)
                report.outcomes.append(outcome)
                if not outcome.ok:
                    report.failures.append(Failure(task.label, outcome.error or "failed", task.log))
                bar.update(1)
                show(bar, len(in_flight), len(report.failures))
    finally:
        executor.close()
        bar.close()
        report.seconds = time.perf_counter() - start
    return report


def show(bar: tqdm, running: int, failed: int) -> None:
    bar.set_postfix_str(f"running {running}, failed {failed}", refresh=True)


def summary_lines(report: SweepReport, total: int) -> list[str]:
    """The end of a sweep in words: how many cells ran, were found stored meanwhile, were
    rerun after a lost worker, and one line per failure."""
    ran = sum(outcome.ok and outcome.ran for outcome in report.outcomes)
    shared = sum(outcome.ok and not outcome.ran for outcome in report.outcomes)
    lines = [f"sweep: {ran} of {total} cells ran in {human_seconds(report.seconds)}"
             + (f", {shared} stored meanwhile by another sweep" if shared else "")
             + (f", {len(report.failures)} failed" if report.failures else "")]
    if report.requeued:
        lines.append(f"rerun after their worker died: {', '.join(report.requeued)}")
    lines += [f"failed: {failure}" for failure in report.failures]
    return lines


def default_folder(sweep: Sweep) -> Path:
    """Where submitit keeps its job files: the store's hidden ``.sweep/submitit/<pid of the driver>``."""
    return sweep.store / SWEEP_FOLDER / "submitit" / str(os.getpid())
