"""Where in the network the representation changed: linear CKA between the original model and
each unlearned model, stage by stage (stem, layer1 … layer4), on retained and on test images.

Linear CKA (Kornblith et al., 2019) compares two sets of activations of the same images up to a
rotation and a global scale: 1 means the stage represents those images the same way, values
near 0 that it no longer does. A method that collapses the structure shows the fall from the
stage where it starts; a faithful one stays near 1 on retained and test images at every stage.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from stakes_core.analysis.changes import split_data
from stakes_core.analysis.runs import LoadedRun
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import image_batches

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")
"""The stages of a :class:`~stakes_core.models.resnet.CifarResNet`, input side first."""

CKA_SPLITS = ("retain", "test")
"""Retained training images (all but the forget set) and the test set."""

MAX_IMAGES = 1000
"""Images per split: a seeded sample of this many (or all, when fewer), so the view costs one
forward pass of at most 1000 images per model and split whatever the dataset's size."""


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two activation matrices of the same ``n`` images (``n × d1`` and ``n × d2``):
    ``‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)`` after centring each feature, in float64. It lies in [0, 1]
    and is NaN when one side is constant over the images (no variation to compare)."""
    if x.dim() != 2 or y.dim() != 2:
        raise ConfigError(f"CKA needs two n × d matrices, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] != y.shape[0]:
        raise ConfigError(f"CKA needs the same images on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < 2:
        raise ConfigError(f"CKA needs at least 2 images, got {x.shape[0]}")
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    denominator = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if denominator == 0:
        return math.nan
    return float(torch.linalg.matrix_norm(y.T @ x) ** 2 / denominator)


def stage_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of :data:`STAGES` in ``model`` or, for a deployed wrapper such as StructGuard's
    ``h∘p∘g``, in its ``backbone``; a model without them is a ConfigError naming what is missing."""
    holder = getattr(model, "backbone", model)
    missing = [name for name in STAGES if not isinstance(getattr(holder, name, None), nn.Module)]
    if missing:
        raise ConfigError(
            f"{type(model).__name__} has no ResNet stage {', '.join(missing)}: layer-wise CKA needs {', '.join(STAGES)}"
        )
    return {name: getattr(holder, name) for name in STAGES}


@contextmanager
def recorded_stages(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Inside the block, every forward pass of ``model`` appends each stage's output to the
    yielded lists, globally average-pooled to ``batch × channels`` (float, CPU). The hooks are
    removed on leaving, also when a forward pass raises.

    Pooling, rather than flattening, keeps every stage at most 2048 features wide (flattened, the
    stem of a CIFAR ResNet-18 alone is 65 536 wide) and compares what each channel responds to,
    not where in the image it fired; a method that moves the channels' responses still shows."""
    recorded: dict[str, list[torch.Tensor]] = {name: [] for name in STAGES}

    def hook_for(name: str) -> Callable[..., None]:
        def keep(_module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            recorded[name].append(output.detach().flatten(2).mean(2).float().cpu())

        return keep

    handles = [module.register_forward_hook(hook_for(name)) for name, module in stage_modules(model).items()]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def stage_features(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Pooled ``n × channels`` activations of every stage for uint8 or float images (eval mode)."""
    with eval_mode(model), recorded_stages(model) as recorded:
        for _, batch in image_batches(images, batch_size, device):
            model(batch)
    return {name: torch.cat(chunks) for name, chunks in recorded.items()}


@dataclass(frozen=True)
class StageCKA:
    """Linear CKA between the original model and one method at one stage on one split."""

    method: str
    split: str
    stage: str
    cka: float


@dataclass(frozen=True)
class LayerCKA:
    """CKA per method, split and stage, with how many images each split used."""

    methods: tuple[str, ...]
    stages: tuple[str, ...]
    images: tuple[tuple[str, int], ...]
    rows: tuple[StageCKA, ...]

    def of(self, method: str, split: str) -> list[float]:
        """The CKA of one method on one split, in stage order."""
        return [row.cka for row in self.rows if row.method == method and row.split == split]


def layer_cka(
    run: LoadedRun, methods: Sequence[str] | None = None, max_images: int = MAX_IMAGES, seed: int = 0,
    batch_size: int = 256,
) -> LayerCKA:
    """CKA between the original model and each method (all the run's by default) at every stage,
    on a seeded sample of up to ``max_images`` retained training images and as many test images.
    The original's activations are computed once per split."""
    if max_images < 2:
        raise ConfigError(f"layer-wise CKA needs at least 2 images per split, got max_images={max_images}")
    chosen = run.check_methods(methods)
    generator = torch.Generator().manual_seed(seed)
    rows: list[StageCKA] = []
    sizes: list[tuple[str, int]] = []
    for split in CKA_SPLITS:
        images, _ = split_data(run, split)
        sample = torch.randperm(images.shape[0], generator=generator)[:max_images].sort().values
        images = images[sample]
        sizes.append((split, images.shape[0]))
        before = stage_features(run.model("original"), images, batch_size, run.device)
        for method in chosen:
            after = stage_features(run.model(method), images, batch_size, run.device)
            rows += [StageCKA(method, split, stage, linear_cka(before[stage], after[stage])) for stage in STAGES]
    return LayerCKA(tuple(chosen), STAGES, tuple(sizes), tuple(rows))
