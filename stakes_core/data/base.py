"""The in-memory image dataset every loader returns, and the dataset registry."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stakes_core.infra.registry import Registry


@dataclass(frozen=True)
class Augmentation:
    """Train-time augmentation for pretraining: random translation by up to ``pad`` pixels
    (zero-padded random crop) and, when ``flip`` is true, random horizontal flips."""

    pad: int = 0
    flip: bool = False


@dataclass
class ImageDataset:
    """A labelled image classification set held in memory as uint8 tensors.

    Images are ``N×C×H×W`` uint8 (0..255); models receive ``images.float() / 255`` in [0, 1]
    and normalise with ``mean``/``std`` themselves, as in the paper's code.
    """

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: Augmentation = Augmentation()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])


DATASETS: Registry = Registry("dataset")
