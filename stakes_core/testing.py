"""Tiny data, models and contexts for fast tests: what this package's own suite uses, public so
that a plugin's author tests a method, a dataset or a figure the same way.

    from stakes_core.testing import tiny_context
    outcome = MyMethod(max_epochs=5).run(tiny_context())   # a few steps on the CPU, in about a second

Nothing is downloaded or cached: the dataset is four classes of 8×8 squares in different
corners plus noise, learnable in a few steps, and the model a width-2 narrow ResNet-18.
:func:`scratch_registries` undoes what a test registered (or what the plugins it loaded did).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from stakes_core.data import ImageDataset
from stakes_core.infra.registry import scratch_registries
from stakes_core.methods import UnlearnContext
from stakes_core.metrics.structure import StructureProbe, projection_for
from stakes_core.models import create_model

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

__all__ = [
    "ForgetOnlyImages", "RetainedImageRead", "forget_only_context", "scratch_registries", "tiny_context",
    "tiny_dataset", "tiny_model", "write_tiny_preset",
]


def tiny_dataset(num_classes: int = 4, per_class: int = 24, size: int = 8, seed: int = 0) -> ImageDataset:
    """Classes are bright squares at different corners plus noise: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(num_classes).repeat_interleave(count)
        images = torch.rand(labels.numel(), 1, size, size, generator=generator) * 0.3
        half = size // 2
        for c in range(num_classes):
            row, col = divmod(c % 4, 2)
            images[labels == c, :, row * half : (row + 1) * half, col * half : (col + 1) * half] += 0.7
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels

    train_x, train_y = make(per_class)
    test_x, test_y = make(per_class // 2)
    return ImageDataset("tiny", [f"c{c}" for c in range(num_classes)], train_x, train_y, test_x, test_y, (0.4,), (0.3,))


def tiny_model(dataset: ImageDataset, width: int = 2, seed: int = 0) -> BackboneModule:
    """An untrained narrow ResNet-18 of ``width`` channels in its first stage, for ``dataset``."""
    torch.manual_seed(seed)
    return create_model("resnet18_narrow", dataset.num_classes, 1, dataset.mean, dataset.std, width=width)


def tiny_context(
    k: int = 4, anchor_dim: int = 8, width: int = 2, seed: int = 0, train_steps: int = 30
) -> UnlearnContext:
    """A context on the tiny dataset with a briefly trained tiny model and random unit anchors:
    what :meth:`~stakes_core.methods.UnlearningMethod.run` takes."""
    dataset = tiny_dataset()
    model = tiny_model(dataset, width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = dataset.train_images.float() / 255, dataset.train_labels
    for _ in range(train_steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    anchors = torch.nn.functional.normalize(torch.randn(dataset.num_classes, anchor_dim, generator=generator), dim=1)
    forget_idx = torch.randperm(dataset.num_train, generator=generator)[:k]
    probe_idx = torch.arange(dataset.num_train)[~torch.isin(torch.arange(dataset.num_train), forget_idx)][:32]
    projection = projection_for(model.feature_dim, anchor_dim, seed)
    probe = StructureProbe(dataset.train_images[probe_idx], anchors, model, projection)
    return UnlearnContext(model, dataset, forget_idx, anchors, probe, projection, seed=seed, progress=False,
                          probe_idx=probe_idx)


def write_tiny_preset(folder: Path, dataset: str = "tiny") -> Path:
    """Write a preset JSON (and its descriptions) for a run on the tiny data to ``folder``: a
    width-2 narrow ResNet-18 pretrained for 2 epochs, random 8-d anchors, k = 4, a 32-image
    probe. Register the data under ``dataset`` first (``DATASETS.register(dataset, lambda **_:
    tiny_dataset())``); a whole run through the command line then takes seconds."""
    descriptions = folder / "tiny_descriptions.json"
    descriptions.write_text(json.dumps({f"c{c}": [f"a bright square in corner {c}"] for c in range(4)}))
    preset = folder / "tiny.json"
    preset.write_text(json.dumps({
        "dataset": {"name": dataset},
        "pretrain": {"model": "resnet18_narrow", "model_kwargs": {"width": 2}, "epochs": 2},
        "anchors": {"encoder": "random:8", "descriptions": str(descriptions)}, "k": [4], "probe_size": 32,
        "methods": {},
    }))
    return preset


class RetainedImageRead(AssertionError):
    """A method read a retained training image through :class:`ForgetOnlyImages`."""


class ForgetOnlyImages:
    """Training images that hand out the forget set's and raise :class:`RetainedImageRead` for any
    other index or any other use: a retain-free method must never read D_r."""

    def __init__(self, images: torch.Tensor, forget_idx: torch.Tensor) -> None:
        self._images = images
        self._forget = set(forget_idx.tolist())
        self.shape, self.dtype = images.shape, images.dtype

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: Any) -> torch.Tensor:
        wanted = torch.arange(len(self._images))[index].flatten().tolist()
        retained = [i for i in wanted if i not in self._forget]
        if retained:
            raise RetainedImageRead(f"retained training image(s) {retained[:5]} were read")
        return self._images[index]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe for these
            raise AttributeError(name)
        raise RetainedImageRead(f"the training images were used whole (.{name}), retained ones included")


def forget_only_context(context: UnlearnContext) -> UnlearnContext:
    """``context`` whose dataset's training images are :class:`ForgetOnlyImages`: running a
    method on it proves the method reads no retained image (the probe set, measured by the loop,
    was built beforehand)."""
    guarded = ForgetOnlyImages(context.dataset.train_images, context.forget_idx)
    dataset = dataclasses.replace(context.dataset, train_images=guarded)  # type: ignore[arg-type]
    return dataclasses.replace(context, dataset=dataset)
