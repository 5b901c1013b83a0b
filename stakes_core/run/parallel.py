"""The methods of one request run at once, one per worker thread, over one shared context.

Why threads: every method of a request starts from the same prepared context (pretrained
model, anchors, probe set, proxy sets), which a thread shares for free and a process would
have to rebuild (2–4 s of imports and set-up on this project's CPU). PyTorch releases the
interpreter lock inside its kernels, so two methods on a 2-core CPU run 1.5× faster together
than one after the other (docs/performance.md, section 5).

What makes it exact: each worker runs its method with ``torch.get_num_threads() // workers``
intra-op threads, and a method's results depend only on its inputs and that thread count.
The shipped methods draw no random number from torch's process-wide generator
(:attr:`~stakes_core.methods.base.UnlearningMethod.uses_global_rng` is ``False``), so running
them side by side gives, bit for bit, what running them one after another with the same thread
count gives (``tests/test_parallel.py``). A method that does draw from the global generator
(the default for a user's method) never runs beside another such method. A method waits for
the methods it :meth:`~stakes_core.methods.base.UnlearningMethod.needs` (StructGuard as
released attacks L2UL's result).

Callbacks (``on_step``, ``on_result``) are called in the caller's thread, so a dashboard can
draw from them. An exception raised by a callback, or a Ctrl-C, cancels every running method at
its next step and is raised again once they have stopped. A method that fails stops the
others the same way; its exception is raised with a note naming the method.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from stakes_core.infra.accel import torch_threads
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import StepRecord, UnlearnContext, create_method
from stakes_core.run.results import MethodResult

ResultCallback = Callable[[str, MethodResult], None]
StepCallback = Callable[[str, StepRecord], None]
RunMethod = Callable[[UnlearnContext, str, "dict[str, Any] | None", "StepCallback | None"], MethodResult]


class _Cancelled(Exception):
    """Raised inside a worker's step callback to stop its method (never leaves this module)."""


def default_workers(methods: int, device: str) -> int:
    """One worker per method up to the torch threads this process may use, on the CPU; one
    on an accelerator (its kernels already fill the device)."""
    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(methods, torch.get_num_threads()))


def check_workers(workers: int | None, methods: int, device: str) -> int:
    """``workers``, or :func:`default_workers` for ``None``; below 1 is a one-line error."""
    if workers is None:
        return default_workers(methods, device)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1 (got {workers})")
    return min(workers, max(methods, 1))


def run_methods(
    context: UnlearnContext,
    methods: dict[str, dict[str, Any]],
    run_one: RunMethod,
    on_step: StepCallback | None = None,
    on_result: ResultCallback | None = None,
    workers: int | None = None,
) -> dict[str, MethodResult]:
    """Run every method of ``methods`` (name → hyperparameters, in request order) on
    ``context`` with ``run_one``; ``workers`` at once (default :func:`default_workers`; 1 runs
    them one after another in this thread, as before parallel runs existed)."""
    count = check_workers(workers, len(methods), context.device)
    if count == 1:
        results = {}
        for name, hyperparameters in methods.items():
            results[name] = run_one(context, name, hyperparameters, on_step)
            if on_result is not None:
                on_result(name, results[name])
        return results
    with torch_threads(max(1, torch.get_num_threads() // count)):
        return _ParallelRun(context, methods, run_one, count).run(on_step, on_result)


@dataclasses.dataclass
class _Event:
    kind: str  # "step", "done" or "failed"
    method: str
    payload: Any = None


class _ParallelRun:
    """One request's methods on ``workers`` threads; the caller's thread schedules them and
    delivers their events."""

    def __init__(self, context: UnlearnContext, methods: dict[str, dict[str, Any]], run_one: RunMethod,
                 workers: int) -> None:
        self.context = dataclasses.replace(context, progress=False)  # one bar for all, drawn here
        self.progress = context.progress
        self.methods, self.run_one, self.workers = methods, run_one, workers
        self.instances = {name: create_method(name, **hp) for name, hp in methods.items()}
        self.events: queue.Queue[_Event] = queue.Queue()
        self.cancel = threading.Event()
        self.threads: dict[str, threading.Thread] = {}

    def run(self, on_step: StepCallback | None, on_result: ResultCallback | None) -> dict[str, MethodResult]:
        pending, results = list(self.methods), dict[str, MethodResult]()
        bar = tqdm(total=len(pending), desc="methods", unit="method", disable=not self.progress, leave=False)
        latest: dict[str, int] = {}
        try:
            while pending or self.threads:
                self._start_ready(pending, set(results))
                event = self._next_event()
                if event is None:
                    continue
                if event.kind == "step":
                    latest[event.method] = event.payload.step
                    bar.set_postfix_str(", ".join(f"{m} step {s}" for m, s in latest.items() if m in self.threads))
                    if on_step is not None:
                        on_step(event.method, event.payload)
                    continue
                self.threads.pop(event.method).join()
                if event.kind == "failed":
                    error: BaseException = event.payload
                    error.add_note(f"stakes: raised by method '{event.method}' (run in a worker thread beside others)")
                    raise error
                results[event.method] = event.payload
                bar.update(1)
                if on_result is not None:
                    on_result(event.method, event.payload)
        finally:
            bar.close()
            self._stop_all()
        return {name: results[name] for name in self.methods}

    def _start_ready(self, pending: list[str], finished: set[str]) -> None:
        """Start pending methods, in request order, while a worker is free: a method starts once
        every method it needs that is part of this request has finished, and one that uses the
        global generator only when no other such method is running."""
        for name in list(pending):
            if len(self.threads) >= self.workers:
                return
            method = self.instances[name]
            waits = [m for m in method.needs() if m in self.methods and m not in finished]
            rng_busy = method.uses_global_rng and any(self.instances[m].uses_global_rng for m in self.threads)
            if waits or rng_busy:
                continue
            pending.remove(name)
            thread = threading.Thread(target=self._work, args=(name,), name=f"stakes-{name}", daemon=True)
            self.threads[name] = thread
            thread.start()

    def _next_event(self) -> _Event | None:
        """The next event, or ``None`` after a short wait (so Ctrl-C is seen promptly)."""
        try:
            return self.events.get(timeout=0.1)
        except queue.Empty:
            return None

    def _work(self, name: str) -> None:
        def on_step(method: str, record: StepRecord) -> None:
            if self.cancel.is_set():
                raise _Cancelled
            self.events.put(_Event("step", method, record))

        try:
            result = self.run_one(self.context, name, self.methods[name], on_step)
        except _Cancelled:  # the caller is already stopping every worker and reads no more events
            return
        except BaseException as error:  # delivered to the caller's thread, which raises it
            self.events.put(_Event("failed", name, error))
        else:
            self.events.put(_Event("done", name, result))

    def _stop_all(self) -> None:
        """Cancel the methods still running and wait until each has stopped."""
        self.cancel.set()
        for thread in self.threads.values():
            thread.join()
        self.threads.clear()
