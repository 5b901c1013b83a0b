"""SGD with momentum and weight decay, the update every method of this package uses.

Why not ``torch.optim.SGD``: constructing any ``torch.optim.Optimizer`` imports ``torch._dynamo``
(its ``add_param_group`` is wrapped to disable the compiler), which costs 1.3 s on this
project's 2-core CPU — about a sixth of a live demo's budget, paid by every fresh process (the
CLI, a notebook kernel, a sweep worker). This class performs the same arithmetic as
``torch.optim.SGD``'s single-tensor path (the one PyTorch takes on the CPU), in the same
order, so its updates are bit-identical to it (``tests/test_speed_equivalence.py`` checks
this); it keeps ``param_groups`` and ``zero_grad`` so code written for a torch optimiser
reads the same. Plugins are free to use any ``torch.optim`` optimiser instead.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class SGD:
    """``torch.optim.SGD(params, lr, momentum, weight_decay)`` without dampening or Nesterov;
    ``params`` is an iterable of parameters or of groups (dicts with ``"params"`` and optional
    per-group ``lr``, ``momentum`` or ``weight_decay``)."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], lr: float,
        momentum: float = 0.0, weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        items: list[Any] = list(params)
        groups: list[dict[str, Any]] = items if items and isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = [
            {**defaults, **group, "params": list(group["params"])} for group in groups
        ]
        self.momentum_buffers: dict[torch.nn.Parameter, torch.Tensor] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (``None``, or zeros with ``set_to_none=False``)."""
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                if set_to_none:
                    parameter.grad = None
                else:
                    parameter.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient (those without one are skipped)."""
        for group in self.param_groups:
            lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                grad = parameter.grad
                if weight_decay != 0:
                    grad = grad.add(parameter, alpha=weight_decay)
                if momentum != 0:
                    buffer = self.momentum_buffers.get(parameter)
                    if buffer is None:
                        buffer = grad.detach().clone()
                        self.momentum_buffers[parameter] = buffer
                    else:
                        buffer.mul_(momentum).add_(grad, alpha=1.0)
                    grad = buffer
                parameter.add_(grad, alpha=-lr)
