"""Opt-in accelerator settings: bf16 autocast and channels_last memory layout.

Both are off by default, so the default path computes in fp32 with the contiguous layout
and gives the same numbers as before these settings existed. ``bf16`` changes results
beyond floating-point noise (it is a lower precision); ``channels_last`` only reorders
memory, which changes results at the level of floating-point rounding (a different
convolution kernel), amplified by iterative procedures such as PGD. Both pay off on GPUs;
on a CPU ``channels_last`` also speeds up narrow convolutions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Iterator, TypeVar

import torch

from stakes_core.infra.errors import ConfigError

PRECISIONS = ("fp32", "bf16")

M = TypeVar("M", bound=torch.nn.Module)


@dataclass(frozen=True)
class Acceleration:
    """``precision``: ``"fp32"`` (default) or ``"bf16"`` (autocast the forward passes of the
    attack and of the update steps); ``channels_last``: NHWC layout for models and images."""

    precision: str = "fp32"
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")

    def autocast(self, device: str) -> ContextManager:
        """Autocast to bf16 on ``device`` when asked for, else a no-op context."""
        if self.precision == "bf16":
            return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def model(self, model: M) -> M:
        """``model`` converted in place to channels_last when asked for (returned for chaining)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """A 4-d image batch in the requested layout."""
        if self.channels_last and images.dim() == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images


DEFAULT = Acceleration()


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device`` (before reading a wall clock); no-op on the CPU."""
    kind = torch.device(device).type
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def torch_threads(count: int | None = None) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block (kept as it is for
    ``None``) and put back afterwards, whatever the block did to it."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
