"""Accuracy metrics with names nobody can misread.

All accuracies are percentages in [0, 100], measured in eval mode:
- ``retain_acc``: top-1 accuracy on the training set minus the forget set (A_r),
- ``forget_acc``: top-1 accuracy on the forget set (A_f; unlearning drives it to 0),
- ``test_acc``: top-1 accuracy on the held-out test set (A_test),
- ``deletion_rate``: ``100 - forget_acc``, the share of forget instances now misclassified.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from stakes_core.data import ImageDataset, retain_indices, to_float
from stakes_core.infra.modules import eval_mode

Classifier = Callable[[torch.Tensor], torch.Tensor]


def image_batches(images: torch.Tensor, batch_size: int, device: str) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, float batch on device)`` for uint8 or float images."""
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device)
        yield start, to_float(batch) if batch.dtype == torch.uint8 else batch


@torch.no_grad()
def logits(model: Classifier, images: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> torch.Tensor:
    """Model outputs (CPU float) for uint8 or float images, in batches; the caller sets eval mode."""
    return torch.cat([model(batch).float().cpu() for _, batch in image_batches(images, batch_size, device)])


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> torch.Tensor:
    """Top-1 predictions (CPU int64) for uint8 or float images; the caller sets eval mode."""
    predictions = [model(batch).argmax(1).cpu() for _, batch in image_batches(images, batch_size, device)]
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def correct_fraction(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512, device: str = "cpu"
) -> torch.Tensor:
    """Share of ``images`` labelled correctly, as a 0-d float tensor left on ``device`` (so a
    training loop can read it together with its other numbers in one host transfer)."""
    if labels.numel() == 0:
        raise ValueError("cannot measure accuracy on an empty set")
    labels = labels.to(device)
    hits = [(model(batch).argmax(1) == labels[start : start + len(batch)]).sum()
            for start, batch in image_batches(images, batch_size, device)]
    return torch.stack(hits).sum().float() / labels.numel()


def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512, device: str = "cpu"
) -> float:
    """Top-1 accuracy in percent."""
    return 100.0 * correct_fraction(model, images, labels, batch_size, device).item()


def evaluate(
    model: torch.nn.Module, dataset: ImageDataset, forget_idx: torch.Tensor, batch_size: int = 512, device: str = "cpu"
) -> dict[str, float]:
    """retain/forget/test accuracy and deletion rate of ``model`` (put in eval mode, then restored)."""
    with eval_mode(model):
        keep = retain_indices(dataset.num_train, forget_idx)
        forget_acc = accuracy(model, dataset.train_images[forget_idx], dataset.train_labels[forget_idx],
            batch_size, device)
        return {
            "retain_acc": accuracy(model, dataset.train_images[keep], dataset.train_labels[keep], batch_size, device),
            "forget_acc": forget_acc,
            "test_acc": accuracy(model, dataset.test_images, dataset.test_labels, batch_size, device),
            "deletion_rate": 100.0 - forget_acc,
        }
