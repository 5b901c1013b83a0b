"""The authors' importance loop in one pass: the order in which their loop visits the proxy
batches, and a recorder that replays the batch-norm updates of the repeated visits (see
:mod:`stakes_core.methods.structguard`, option ``importance``)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

BatchNorm = nn.modules.batchnorm._BatchNorm


def cycle_visits(batch_sizes: list[int], target: int) -> list[int]:
    """Batch indices in the order the authors' loop visits them: cycling the batches until at
    least ``target`` samples were seen (the last visit may overshoot)."""
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be positive, got {batch_sizes}")
    visits: list[int] = []
    seen = 0
    while seen < max(target, 1):
        visits.append(len(visits) % len(batch_sizes))
        seen += batch_sizes[visits[-1]]
    return visits


class BatchStatsRecorder:
    """Records, under a key, the per-channel batch mean and unbiased variance that each
    train-mode batch-norm layer of a model normalises with during a forward pass;
    ``replay`` applies the running-statistics updates that recorded passes made, again."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [
            m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]
        self.batches: dict[int, list[tuple[BatchNorm, torch.Tensor, torch.Tensor]]] = {}

    @contextlib.contextmanager
    def recording(self, key: int) -> Iterator[None]:
        """Record the forward passes run inside the block under ``key``."""
        records = self.batches.setdefault(key, [])

        @torch.no_grad()
        def hook(layer: BatchNorm, inputs: tuple[torch.Tensor, ...]) -> None:
            if layer.training:
                x = inputs[0].detach().float()
                dims = [d for d in range(x.dim()) if d != 1]
                records.append((layer, x.mean(dims), x.var(dims, unbiased=True)))

        handles = [layer.register_forward_pre_hook(hook) for layer in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @staticmethod
    def replay(batches: list[list[tuple[BatchNorm, torch.Tensor, torch.Tensor]]]) -> None:
        """Apply the running-statistics updates that the recorded forward passes made, again."""
        for stats in batches:
            for layer, mean, var in stats:
                running_mean, running_var, tracked = layer.running_mean, layer.running_var, layer.num_batches_tracked
                # only layers that track running statistics are recorded (see __init__)
                assert running_mean is not None and running_var is not None and tracked is not None
                tracked += 1
                factor = layer.momentum if layer.momentum is not None else 1.0 / float(tracked)
                running_mean.mul_(1 - factor).add_(mean, alpha=factor)
                running_var.mul_(1 - factor).add_(var, alpha=factor)
