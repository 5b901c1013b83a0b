"""Where the model changed: accuracy per class and true × predicted class counts, before and
after each method, on the retained training images, the forget set and the test set.

Overall accuracies hide which classes paid for forgetting; these tables say it class by class
and show which wrong class the forgotten (and the test) images moved to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from stakes_core.analysis.runs import AnalysisError, LoadedRun
from stakes_core.data import retain_indices
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import predict

SPLITS = ("retain", "forget", "test")
"""Retained training images (all but the forget set), the forget set and the test set."""

MATRIX_SPLITS = ("forget", "test")
"""The splits whose prediction matrices are compared."""


@dataclass(frozen=True)
class ClassAccuracy:
    """One model's top-1 accuracy on one class of one split, with its counts (accuracy in
    percent, NaN when the split has no image of the class)."""

    model: str
    split: str
    class_index: int
    correct: int
    count: int

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.count if self.count else math.nan


@dataclass(frozen=True)
class PerClassAccuracy:
    """Per-class accuracy of the original model and each method on every split."""

    models: tuple[str, ...]
    classes: tuple[str, ...]
    forget_classes: tuple[int, ...]
    rows: tuple[ClassAccuracy, ...]

    def of(self, model: str, split: str) -> list[ClassAccuracy]:
        """The rows of one model and split, in class order."""
        return [row for row in self.rows if row.model == model and row.split == split]

    def overall(self, model: str, split: str) -> float:
        """Accuracy of the whole split (percent): the per-class accuracies weighted by class counts."""
        rows = self.of(model, split)
        return 100.0 * sum(r.correct for r in rows) / sum(r.count for r in rows)


@dataclass(frozen=True)
class PredictionMatrices:
    """True class × predicted class counts of the original model and one method on one split."""

    method: str
    split: str
    classes: tuple[str, ...]
    before: torch.Tensor
    after: torch.Tensor

    @property
    def difference(self) -> torch.Tensor:
        """``after − before``: each row sums to 0 (the images of a class only move between predictions)."""
        return self.after - self.before


def split_data(run: LoadedRun, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images and labels of one of :data:`SPLITS` of the run."""
    dataset = run.dataset
    if split == "test":
        return dataset.test_images, dataset.test_labels
    if split == "forget":
        chosen = torch.as_tensor(run.forget_indices, dtype=torch.long)
    elif split == "retain":
        chosen = retain_indices(dataset.num_train, torch.as_tensor(run.forget_indices, dtype=torch.long))
    else:
        raise AnalysisError(f"unknown split '{split}' (choose from: {', '.join(SPLITS)})")
    return dataset.train_images[chosen], dataset.train_labels[chosen]


def prediction_matrix(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, device: str = "cpu"
) -> torch.Tensor:
    """``matrix[t, p]``: how many images of true class ``t`` the model predicts as ``p`` (int64)."""
    with eval_mode(model):
        predictions = predict(model, images, device=device)
    pairs = labels.long().cpu() * num_classes + predictions
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_accuracy(run: LoadedRun, methods: Sequence[str] | None = None) -> PerClassAccuracy:
    """Accuracy per class of the original model and each method (all the run's by default) on
    the retained training images, the forget set and the test set."""
    models = ["original", *run.check_methods(methods)]
    num_classes = run.dataset.num_classes
    rows: list[ClassAccuracy] = []
    for split in SPLITS:
        images, labels = split_data(run, split)
        for model in models:
            matrix = prediction_matrix(run.model(model), images, labels, num_classes, run.device)
            rows += [
                ClassAccuracy(model, split, c, int(matrix[c, c]), int(matrix[c].sum())) for c in range(num_classes)
            ]
    forget_labels = run.dataset.train_labels[torch.as_tensor(run.forget_indices, dtype=torch.long)]
    return PerClassAccuracy(
        tuple(models), tuple(run.dataset.classes), tuple(sorted(set(forget_labels.tolist()))), tuple(rows)
    )


def prediction_matrices(run: LoadedRun, methods: Sequence[str] | None = None) -> dict[str, list[PredictionMatrices]]:
    """For each method (all the run's by default), the forget-set and test-set matrices of the
    original model and of the method. The original's are computed once."""
    chosen = run.check_methods(methods)
    num_classes = run.dataset.num_classes
    data = {split: split_data(run, split) for split in MATRIX_SPLITS}

    def counts(model: str, split: str) -> torch.Tensor:
        return prediction_matrix(run.model(model), *data[split], num_classes, run.device)

    before = {split: counts("original", split) for split in MATRIX_SPLITS}
    classes = tuple(run.dataset.classes)
    return {
        method: [PredictionMatrices(method, split, classes, before[split], counts(method, split))
                 for split in MATRIX_SPLITS]
        for method in chosen
    }
