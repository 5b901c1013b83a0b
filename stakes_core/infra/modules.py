"""Helpers for ``torch.nn.Module`` state that every layer needs."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode inside the block; afterwards every submodule is back in its own
    previous train/eval mode (``model.train(flag)`` would put a model whose submodules were in
    mixed modes, such as one with frozen batch norm, all in one mode)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
