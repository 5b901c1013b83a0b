"""Relearn time: how many fine-tuning steps on the forget set bring a model's forget accuracy
back to the original model's. A model that only hid the forgotten instances (a small move of
the last layers) relearns them in a few steps; one that never knew them, the retrained model,
takes as long as learning them from scratch. The field reports it beside the accuracies and
membership attacks (its "relearn time": Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020).

Each step is one full-batch SGD step (momentum) on the cross-entropy of the whole forget set,
on a copy of the model in eval mode: batch norm keeps its stored statistics, since running
statistics estimated from k ≤ 128 images would themselves change the forget accuracy. Forget
accuracy is measured before each step; the count is the number of steps taken when it first
reaches the target, ``0`` when the model already has it, and ``None`` when ``max_steps`` steps
did not get there. A loss that stops being finite (the step was too large for the model's
landscape: on digits, L2UL's k = 4 model at lr 0.003) is an error that says so, not a count.

Defaults, chosen on digits (seed 0, k = 4 and 16, NegGrad, L2UL and the retrained model): lr
0.001 with momentum 0.9 brings every unlearned model back within 10–40 steps; lr 0.01 with
momentum diverged on all of them (a gradient norm near 100 on NegGrad's forget set).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import torch

from stakes_core.analysis.runs import AnalysisError, LoadedRun
from stakes_core.data import to_float
from stakes_core.infra.errors import ConfigError
from stakes_core.metrics.accuracy import accuracy

RELEARN_LR = 0.001
RELEARN_MOMENTUM = 0.9
RELEARN_MAX_STEPS = 200


def relearn_steps(
    model: torch.nn.Module,
    forget_images: torch.Tensor,
    forget_labels: torch.Tensor,
    target_acc: float,
    lr: float = RELEARN_LR,
    max_steps: int = RELEARN_MAX_STEPS,
    device: str = "cpu",
    momentum: float = RELEARN_MOMENTUM,
) -> int | None:
    """Full-batch SGD steps on the forget set until a copy of ``model`` reaches ``target_acc``
    (percent) on it: 0 when it already does, ``None`` when ``max_steps`` steps were not enough.
    ``model`` itself is left unchanged."""
    if lr <= 0 or max_steps < 0:
        raise ConfigError(f"relearning needs lr > 0 and max_steps ≥ 0, got lr={lr} and max_steps={max_steps}")
    if forget_labels.numel() == 0:
        raise ConfigError("relearning needs at least one forget image")
    learner = copy.deepcopy(model).to(device).eval()
    for parameter in learner.parameters():
        parameter.requires_grad_(True)
    images = forget_images.to(device)
    images = to_float(images) if images.dtype == torch.uint8 else images
    labels = forget_labels.to(device)
    optimizer = torch.optim.SGD(learner.parameters(), lr=lr, momentum=momentum)
    for step in range(max_steps + 1):
        if accuracy(learner, images, labels, device=device) >= target_acc:
            return step
        if step == max_steps:
            break
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(learner(images), labels)
        if not torch.isfinite(loss):
            raise AnalysisError(f"relearning diverged at step {step} (the loss is {loss.item()}): lower lr (now {lr})")
        loss.backward()
        optimizer.step()
    return None


@dataclass
class RelearnView:
    """Per method: the steps to relearn the forget set up to the original model's forget
    accuracy ``target_acc`` (``None``: not within ``max_steps``), and the forget accuracy it
    started from."""

    steps: dict[str, int | None]
    start_acc: dict[str, float]
    target_acc: float
    lr: float
    max_steps: int


def relearn_view(
    run: LoadedRun, methods: Sequence[str] | None = None, lr: float = RELEARN_LR, max_steps: int = RELEARN_MAX_STEPS,
) -> RelearnView:
    """Relearn time of each method's model (all the run's analysable ones when ``methods`` is
    ``None``, a ``retrain`` among them) towards the original model's forget accuracy."""
    forget = torch.tensor(run.forget_indices)
    images = to_float(run.dataset.train_images[forget])
    labels = run.dataset.train_labels[forget]
    target = accuracy(run.model("original"), images, labels, device=run.device)
    steps: dict[str, int | None] = {}
    start_acc: dict[str, float] = {}
    for name in run.check_methods(methods):
        model = run.model(name)
        start_acc[name] = accuracy(model, images, labels, device=run.device)
        steps[name] = relearn_steps(model, images, labels, target, lr, max_steps, run.device)
    return RelearnView(steps, start_acc, target, lr, max_steps)
