"""Grad-CAM maps of chosen instances under the original and the unlearned models (paper Fig. 4).

Maps come from ``pytorch_grad_cam.GradCAM`` on the backbone's
:meth:`~stakes_core.models.protocol.Backbone.gradcam_layer` (for the ResNets the last block of
``layer4`` by default, the last convolutional block; ``stage="layer3"`` gives maps twice as
fine), for the deployed model: ``h∘g`` for the baselines and ``h∘p∘g`` for StructGuard, whose projector sits
after the pooled features and so still receives the gradient. The target is the instance's
true class by default (``target="label"``) — where does the model look for the class it was
asked to forget? — or each model's own prediction (``target="predicted"``).

The camera is used as a context manager, so its hooks are released even when a batch fails.
During a batch only the target block's parameters require gradients: Grad-CAM needs
``∂y_c/∂A`` at that block, and skipping the earlier layers' weight gradients makes it faster
without changing the maps.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from stakes_core.analysis.runs import AnalysisError, Instances, LoadedRun
from stakes_core.infra.modules import eval_mode
from stakes_core.models.protocol import is_backbone, missing_members

CAM_TARGETS = ("label", "predicted")


def target_block(model: nn.Module, stage: str | None = None) -> nn.Module:
    """The layer Grad-CAM weighs in a deployed classifier: its ``gradcam_layer(stage)``
    (``None``: the backbone's default; StructGuard's h∘p∘g answers with its backbone's)."""
    if not is_backbone(model):
        lacks = ", ".join(missing_members(model)) or "nn.Module"
        raise AnalysisError(f"{type(model).__name__} is not a Backbone (it lacks {lacks}): no layer for Grad-CAM")
    return model.gradcam_layer(stage)


@contextmanager
def gradients_only_for(model: nn.Module, block: nn.Module) -> Iterator[None]:
    """Let only ``block``'s parameters require gradients inside the context; restore after."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    inside = {id(p) for p in block.parameters()}
    try:
        for parameter, _ in saved:
            parameter.requires_grad_(id(parameter) in inside)
        yield
    finally:
        for parameter, flag in saved:
            parameter.requires_grad_(flag)


def gradcam_maps(
    model: nn.Module, images: torch.Tensor, classes: Sequence[int] | None, stage: str | None = None,
    batch_size: int = 64, device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps (N × H × W in [0, 1]) for ``classes`` (``None``: the predicted class) and
    the model's predictions, in batches; hooks are gone when this returns."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    block = target_block(model, stage)
    maps, predictions = [], []
    with eval_mode(model), gradients_only_for(model, block), GradCAM(model=model, target_layers=[block]) as cam:
        for start in range(0, images.shape[0], batch_size):
            batch = images[start : start + batch_size].to(device)
            chosen = None if classes is None else classes[start : start + batch_size]
            targets = None if chosen is None else [ClassifierOutputTarget(int(c)) for c in chosen]
            maps.append(cam(input_tensor=batch, targets=targets))
            predictions.append(cam.outputs.argmax(1).cpu().numpy())
    return np.concatenate(maps).astype(np.float32), np.concatenate(predictions)


@dataclass
class GradCAMView:
    """Images, their Grad-CAM maps and predictions under each model (``"original"`` first)."""

    instances: Instances
    images: np.ndarray
    labels: list[int]
    classes: list[str]
    maps: dict[str, np.ndarray]
    predictions: dict[str, list[int]]
    target: str
    stage: str  # the stage asked for, or "last block" (the backbone's default)
    seconds: float


def gradcam_view(
    run: LoadedRun, instances: Instances, methods: Sequence[str] | None = None, target: str = "label",
    stage: str | None = None, batch_size: int = 64,
) -> GradCAMView:
    """Grad-CAM of ``instances`` under the original model and each of ``methods``."""
    if target not in CAM_TARGETS:
        raise AnalysisError(f"Grad-CAM target '{target}' is not one of {', '.join(CAM_TARGETS)}")
    start = time.perf_counter()
    images, labels = run.images(instances), run.labels(instances)
    classes = labels.tolist() if target == "label" else None
    maps, predictions = {}, {}
    for name in ["original", *run.check_methods(methods)]:
        maps[name], predicted = gradcam_maps(run.model(name), images, classes, stage, batch_size, run.device)
        predictions[name] = predicted.tolist()
    return GradCAMView(
        instances, images.numpy(), labels.tolist(), list(run.dataset.classes), maps, predictions, target,
        stage or "last block", time.perf_counter() - start,
    )
