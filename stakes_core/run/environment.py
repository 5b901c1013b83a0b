"""What besides the config determines a run's numbers, recorded in its ``summary.json``.

The same config gives other numbers under another PyTorch, thread count, device or processor
(floating-point sums are ordered differently), under other code versions, or from another
pretrained model. :func:`environment_record` writes all of these down, so that a table pooling
runs can say when they were not made alike (:func:`stakes_core.report.table.environment_warning`).
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy
import torch

from stakes_core.methods import LOOP_VERSION, METHODS

CPUINFO = Path("/proc/cpuinfo")


def stakes_version() -> str:
    """The installed version of the ``stakes`` distribution (``"not installed"`` in a bare checkout)."""
    try:
        return metadata.version("stakes")
    except metadata.PackageNotFoundError:
        return "not installed"


def code_versions(methods: list[str]) -> dict[str, int]:
    """The shared loop's version and each method's (what a run key holds, see ``runstore``)."""
    return {"loop": LOOP_VERSION, **{name: METHODS.get(name).version for name in methods}}


def cpu_model() -> str:
    """The processor's model name: ``/proc/cpuinfo`` on Linux (where ``platform.processor()`` is
    often empty), else what ``platform`` knows."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_name(device: str) -> str | None:
    """The accelerator's name for a CUDA device, ``"Apple MPS"`` for MPS, ``None`` on the CPU."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "Apple MPS" if device == "mps" else None


def environment_record(device: str, methods: list[str], checkpoint_source: str, workers: int = 1) -> dict[str, Any]:
    """Everything outside the config that determines a run's numbers (``checkpoint_source`` as
    :data:`~stakes_core.models.pretrain.SOURCES` names it). ``threads`` is the intra-op thread
    count each method ran with: the process's, divided among ``workers`` methods run at once."""
    return {
        "stakes": stakes_version(),
        "code_versions": code_versions(methods),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "threads": max(1, torch.get_num_threads() // workers),
        "workers": workers,
        "device": device,
        "cpu": cpu_model(),
        "gpu": gpu_name(device),
        "shipped_checkpoint": checkpoint_source == "shipped",
    }
