"""Shared plumbing of the benchmark scripts: thread pinning, timing, tables and JSON output.

Every benchmark pins PyTorch to ``--threads`` threads (default 1, so that the arms compared
in one run share the same conditions on a busy machine), repeats each arm and keeps the
fastest repeat (the least disturbed by other processes), and writes its numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable


def base_parser(description: str, out: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark has."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per arm; the fastest is kept")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=out, help="JSON file to write")
    return parser


def pin_threads(threads: int) -> None:
    """Pin PyTorch (and OpenMP, for libraries imported later) to ``threads`` threads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def warm_up() -> float:
    """Pay PyTorch's one-off cost of the first optimiser in a process (it imports
    ``torch._dynamo``) before anything is timed; returns the seconds it took."""
    import torch

    start = time.perf_counter()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return time.perf_counter() - start


def environment(device: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    return {"torch": torch.__version__, "python": platform.python_version(), "device": device, "gpu": gpu,
            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def best_time(run: Callable[[], Any], repeats: int, device: str = "cpu") -> tuple[float, Any]:
    """The fastest of ``repeats`` wall-clock timings of ``run()`` and its last result."""
    from stakes_core.infra.accel import synchronize

    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def race(arms: dict[str, Callable[[], Any]], repeats: int, device: str = "cpu") -> dict[str, tuple[float, Any]]:
    """Time every arm ``repeats`` times in round-robin order (so that a busy spell on the
    machine hits all arms alike); per arm, the fastest time and the last result."""
    best: dict[str, tuple[float, Any]] = {name: (float("inf"), None) for name in arms}
    for _ in range(repeats):
        for name, run in arms.items():
            seconds, result = best_time(run, 1, device)
            best[name] = (min(best[name][0], seconds), result)
    return best


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A small Markdown table of ``rows`` on stdout."""
    def cell(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |")


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON and say where."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")


def with_retained_count(context: Any, retained: int) -> Any:
    """A copy of an ``UnlearnContext`` that reports |D_r| = ``retained`` (e.g. CIFAR's 50,000 − k
    on a small dataset); only StructGuard's authors' importance loop reads that count."""
    from dataclasses import dataclass, fields

    from stakes_core.methods import UnlearnContext

    @dataclass
    class RetainedCount(UnlearnContext):
        retained: int = 0

        @property
        def num_retained(self) -> int:
            return self.retained

    return RetainedCount(**{f.name: getattr(context, f.name) for f in fields(context)}, retained=retained)
