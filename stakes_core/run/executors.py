"""Where the cells of a sweep run: a local process pool, a Ray cluster or SLURM (submitit).

Each executor is a class over :class:`Executor` in :data:`EXECUTORS`. The sweep's driver
(:mod:`stakes_core.run.driver`) hands it tasks with :meth:`Executor.submit` and collects
them with :meth:`Executor.finished`, keeping at most :attr:`Executor.capacity` in flight; the
executor only starts and watches work, with an existing engine:

- ``local``: ``concurrent.futures.ProcessPoolExecutor`` (spawned processes), ``workers`` at
  once with ``threads`` torch threads each (by default ``workers × threads ≤`` the cores); one
  worker runs the cells in this process, one after the other;
- ``ray``: each cell a Ray task asking for ``threads`` CPUs and ``gpus_per_cell`` GPUs, on a
  local cluster that :func:`ray.init` starts, or on the cluster at ``address``;
- ``slurm``: each cell a submitit job (the first batch one array job) with the partition,
  time limit, CPUs and GPUs asked for, or submitit's local executor where there is no SLURM.

A worker that dies (killed, out of memory, a preempted job) is reported as *lost*, and the
driver runs its cell once more. Ray and submitit are optional extras; a missing one is a
one-line :class:`MissingExtraError` with the command that installs it.
"""

from __future__ import annotations

import importlib
import itertools
import multiprocessing
import os
import socket
import time
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar
from urllib.parse import urlparse

from stakes_core.infra.errors import ConfigError, StakesError
from stakes_core.run.cells import CellOutcome, CellTask, execute_cell

EXTRAS = {"ray": "ray==2.60.0", "submitit": "submitit==1.5.4"}
"""The pinned optional engines, by module (``pip install 'stakes[ray]'``, ``'stakes[slurm]'``)."""
LOST = "its worker process died before the cell finished (killed, out of memory or preempted)"


class MissingExtraError(StakesError, ImportError):
    """An executor's engine is not installed."""


class ClusterUnreachableError(StakesError, ConnectionError):
    """``--address`` names a Ray cluster that does not answer."""


def cores() -> int:
    """The CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def require(module: str, extra: str, executor: str) -> ModuleType:
    """Import an optional engine, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(
            f"the {executor} executor needs {module}, which is not installed: pip install 'stakes[{extra}]' "
            f"(or pip install {EXTRAS[module]})"
        ) from None


@dataclass
class ExecutorOptions:
    """What the command line says about where cells run; ``None`` means the executor's default."""

    workers: int | None = None
    threads: int | None = None
    address: str | None = None
    connect_timeout: float = 30.0
    partition: str | None = None
    time_min: int = 60
    gpus_per_cell: int = 0
    mem_gb: float | None = None
    folder: Path | None = None


@dataclass(frozen=True)
class Finished:
    """A task that left the executor: its outcome, or ``None`` with ``problem`` when it was lost."""

    handle: int
    outcome: CellOutcome | None
    problem: str = LOST


class Executor(ABC):
    """Starts tasks and reports them finished; the driver decides what to run when."""

    name: ClassVar[str]

    def __init__(self, options: ExecutorOptions) -> None:
        for value, what, least in ((options.workers, "--workers", 1), (options.threads, "--threads", 1),
                                   (options.time_min, "--time", 1), (options.gpus_per_cell, "--gpus-per-cell", 0)):
            if value is not None and value < least:
                raise ConfigError(f"{what} must be at least {least}, got {value}")
        if options.connect_timeout <= 0:
            raise ConfigError(f"--connect-timeout must be above 0 seconds, got {options.connect_timeout:g}")
        self.options = options
        self.workers = options.workers or self.default_workers()
        self.threads = options.threads or max(1, cores() // self.workers)
        self._ids = itertools.count()

    def default_workers(self) -> int:
        """Cells at once when ``--workers`` is not given: the machine's cores."""
        return cores()

    @property
    def capacity(self) -> int:
        """At most this many tasks in flight."""
        return self.workers

    def describe(self) -> str:
        return f"{self.name}: {self.workers} worker(s) × {self.threads} torch thread(s)"

    def start(self) -> None:
        """Connect or start the engine (before the first task)."""

    @abstractmethod
    def submit(self, tasks: list[CellTask]) -> list[int]:
        """Start ``tasks``; one handle per task."""

    @abstractmethod
    def finished(self, handles: list[int], timeout: float) -> list[Finished]:
        """The tasks of ``handles`` that ended, waiting up to ``timeout`` s for at least one."""

    def close(self) -> None:
        """Stop what still runs and let the engine go (also after Ctrl-C)."""

    def next_handle(self) -> int:
        return next(self._ids)


class SerialExecutor(Executor):
    """One cell after the other in this process (``local`` with one worker)."""

    name = "local"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
        self.queue: dict[int, CellTask] = {}

    def submit(self, tasks: list[CellTask]) -> list[int]:
        handles = [self.next_handle() for _ in tasks]
        self.queue.update(zip(handles, tasks))
        return handles

    def finished(self, handles: list[int], timeout: float) -> list[Finished]:
        handle = handles[0]
        return [Finished(handle, execute_cell(self.queue.pop(handle), whole_process=False))]


class LocalExecutor(Executor):
    """A pool of spawned worker processes on this machine."""

    name = "local"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
        self.pool: ProcessPoolExecutor | None = None
        self.futures: dict[int, Future[CellOutcome]] = {}

    def submit(self, tasks: list[CellTask]) -> list[int]:
        if self.pool is None:  # first use, or the last pool broke when a worker died
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context)
        handles = []
        for task in tasks:
            handle = self.next_handle()
            self.futures[handle] = self.pool.submit(execute_cell, task, True)
            handles.append(handle)
        return handles

    def finished(self, handles: list[int], timeout: float) -> list[Finished]:
        wait([self.futures[h] for h in handles], timeout=timeout, return_when=FIRST_COMPLETED)
        ended = []
        for handle in handles:
            future = self.futures[handle]
            if not future.done():
                continue
            del self.futures[handle]
            try:
                ended.append(Finished(handle, future.result()))
            except BrokenProcessPool:  # a worker died; the pool ends every task it held
                ended.append(Finished(handle, None))
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
                    self.pool = None
        return ended

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a Ray address (``host:port`` or ``ray://host:port``); ``None`` for
    ``auto``, which Ray resolves from this machine."""
    if address == "auto":
        return None
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    if not parsed.hostname or parsed.port is None:
        raise ConfigError(f"--address '{address}' is not host:port, ray://host:port or auto")
    return parsed.hostname, parsed.port


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Return once ``host:port`` accepts a connection; raise :class:`ClusterUnreachableError`
    after ``timeout`` seconds of trying."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as error:
            problem = error.strerror or str(error) or type(error).__name__
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterUnreachableError(
                f"cannot reach the Ray cluster at {host}:{port} within {timeout:g} s ({problem}); start it with "
                "`ray start --head` there, check the address, or leave out --address for a local cluster"
            )
        time.sleep(min(0.5, left))


class RayExecutor(Executor):
    """Each cell a Ray task, on a local cluster or the one at ``--address``."""

    name = "ray"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
        self.ray: Any = require("ray", "ray", "ray")
        self.host = split_address(options.address) if options.address else None  # a malformed address fails now
        self.refs: dict[int, Any] = {}
        self.remote: Any = None  # execute_cell as a Ray task with this sweep's CPUs and GPUs (after start)
        self.started_here = False

    def describe(self) -> str:
        where = f"the cluster at {self.options.address}" if self.options.address else "a local cluster"
        gpus = f", {self.options.gpus_per_cell} GPU(s)" if self.options.gpus_per_cell else ""
        return f"ray on {where}: {self.workers} cell(s) at once, each {self.threads} CPU(s){gpus}"

    def start(self) -> None:
        ray, address = self.ray, self.options.address
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
        if address:
            if self.host is not None:
                wait_for_port(*self.host, self.options.connect_timeout)
            try:
                ray.init(address=address, **quiet)
            except (ConnectionError, RuntimeError, TimeoutError) as error:
                raise ClusterUnreachableError(f"cannot join the Ray cluster at {address}: {error}") from None
            if self.options.workers is None:  # as many at once as the cluster has room for
                self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // self.threads)
        else:
            ray.init(num_cpus=self.workers * self.threads, **quiet)
        self.started_here = True
        self.remote = ray.remote(execute_cell).options(
            num_cpus=self.threads, num_gpus=self.options.gpus_per_cell, max_retries=0
        )

    def submit(self, tasks: list[CellTask]) -> list[int]:
        handles = [self.next_handle() for _ in tasks]
        for handle, task in zip(handles, tasks):
            self.refs[handle] = self.remote.remote(task, True)
        return handles

    def finished(self, handles: list[int], timeout: float) -> list[Finished]:
        ray = self.ray
        by_ref = {self.refs[h]: h for h in handles}
        ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=timeout)
        ended = []
        for ref in ready:
            handle = by_ref[ref]
            del self.refs[handle]
            try:
                ended.append(Finished(handle, ray.get(ref)))
            except ray.exceptions.RayError as error:  # the worker died or the node went away
                ended.append(Finished(handle, None, f"{LOST}: {str(error).strip().splitlines()[0]}"))
        return ended

    def close(self) -> None:
        for ref in self.refs.values():
            self.ray.cancel(ref, force=True)
        self.refs.clear()
        if self.started_here:
            self.ray.shutdown()
            self.started_here = False


class SlurmExecutor(Executor):
    """Each cell a submitit job: on SLURM when ``sbatch`` is there, else submitit's local executor."""

    name = "slurm"

    def __init__(self, options: ExecutorOptions) -> None:
        super().__init__(options)
        self.submitit: Any = require("submitit", "slurm", "slurm")
        self.jobs: dict[int, Any] = {}
        folder = options.folder or Path("submitit")
        self.executor = self.submitit.AutoExecutor(folder=str(folder))
        self.on_slurm = self.executor.cluster == "slurm"
        if self.on_slurm and options.workers is None:
            self.workers = 1 << 30  # every cell queued at once, SLURM decides what runs
        parameters: dict[str, Any] = {
            "timeout_min": options.time_min, "cpus_per_task": self.threads, "gpus_per_node": options.gpus_per_cell,
            "name": "stakes-sweep",
        }
        if options.mem_gb is not None:
            parameters["mem_gb"] = options.mem_gb
        if self.on_slurm:
            if options.partition:
                parameters["slurm_partition"] = options.partition
            if options.workers is not None:
                parameters["slurm_array_parallelism"] = options.workers
        self.executor.update_parameters(**parameters)

    def default_workers(self) -> int:
        return cores()

    def describe(self) -> str:
        where = "SLURM" if self.on_slurm else "submitit's local executor (no SLURM here)"
        gpus = f", {self.options.gpus_per_cell} GPU(s)" if self.options.gpus_per_cell else ""
        running = "every cell queued" if self.workers >= 1 << 30 else f"{self.workers} cell(s) at once"
        return f"slurm via {where}: {running}, each {self.threads} CPU(s){gpus}, {self.options.time_min} min limit"

    def submit(self, tasks: list[CellTask]) -> list[int]:
        with self.executor.batch():  # one array job on SLURM
            jobs = [self.executor.submit(execute_cell, task, True) for task in tasks]
        handles = [self.next_handle() for _ in jobs]
        self.jobs.update(zip(handles, jobs))
        return handles

    def finished(self, handles: list[int], timeout: float) -> list[Finished]:
        deadline = time.monotonic() + timeout
        while True:
            done = [h for h in handles if self.jobs[h].done()]
            if done or time.monotonic() >= deadline:
                break
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        ended = []
        for handle in done:
            job = self.jobs.pop(handle)
            try:
                ended.append(Finished(handle, job.result()))
            except Exception as error:  # submitit's UncompletedJobError/FailedJobError: the job itself died
                ended.append(Finished(handle, None, f"{LOST}: {str(error).strip().splitlines()[0]}"))
        return ended

    def close(self) -> None:
        for job in self.jobs.values():
            job.cancel(check=False)
        self.jobs.clear()


EXECUTORS: dict[str, type[Executor]] = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}
"""The executors by the name ``--executor`` takes."""


def create_executor(name: str, options: ExecutorOptions) -> Executor:
    """The executor ``name`` with ``options`` (``local`` with one worker runs in this process)."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor '{name}' (choose from: {', '.join(EXECUTORS)})")
    if name == "local" and (options.workers or cores()) == 1:
        return SerialExecutor(options)
    return EXECUTORS[name](options)
