"""Accuracy metrics with names nobody can misread.

All accuracies are percentages in [0, 100], measured in eval mode:
- ``retain_acc``: top-1 accuracy on the training set minus the forget set (A_r),
- ``forget_acc``: top-1 accuracy on the forget set (A_f; unlearning drives it to 0),
- ``test_acc``: top-1 accuracy on the held-out test set (A_test),
- ``deletion_rate``: ``100 - forget_acc``, the share of forget instances now misclassified.
"""

from __future__ import annotations

from typing import Callable

import torch

from stakes_core.data import ImageDataset, retain_indices, to_float

Classifier = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: Classifier, images: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> torch.Tensor:
    """Top-1 predictions (CPU int64) for uint8 or float images; the caller sets eval mode."""
    predictions = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device)
        if batch.dtype == torch.uint8:
            batch = to_float(batch)
        predictions.append(model(batch).argmax(1).cpu())
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


def accuracy(model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512, device: str = "cpu") -> float:
    """Top-1 accuracy in percent."""
    if labels.numel() == 0:
        raise ValueError("cannot measure accuracy on an empty set")
    return 100.0 * (predict(model, images, batch_size, device) == labels.cpu()).float().mean().item()


def evaluate(
    model: torch.nn.Module, dataset: ImageDataset, forget_idx: torch.Tensor, batch_size: int = 512, device: str = "cpu"
) -> dict[str, float]:
    """retain/forget/test accuracy and deletion rate of ``model`` (put in eval mode, then restored)."""
    was_training = model.training
    model.eval()
    try:
        keep = retain_indices(dataset.num_train, forget_idx)
        forget_acc = accuracy(model, dataset.train_images[forget_idx], dataset.train_labels[forget_idx], batch_size, device)
        return {
            "retain_acc": accuracy(model, dataset.train_images[keep], dataset.train_labels[keep], batch_size, device),
            "forget_acc": forget_acc,
            "test_acc": accuracy(model, dataset.test_images, dataset.test_labels, batch_size, device),
            "deletion_rate": 100.0 - forget_acc,
        }
    finally:
        model.train(was_training)
