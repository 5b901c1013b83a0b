"""Do the stakes agree with the model? A representational-similarity check of the anchors.

The anchors say which classes are alike (the cosine matrix ``A·Aᵀ`` of the text embeddings);
the original model has its own view of that, measured two ways:

- ``features``: the cosine between the class means of the backbone's features on the training
  images (the visual prototypes of :func:`~stakes_core.anchors.variants.prototype_anchors`);
- ``confusion``: the soft-confusion matrix on the test images (row ``c`` is the mean softmax over
  the test images of true class ``c``), symmetrised as ``(M + Mᵀ)/2`` so that the pair
  ``(c, d)`` has one similarity, as the anchor cosine does.

The agreement is Spearman's ρ between the off-diagonal entries of the two matrices (each class
pair once), with a one-sided Mantel permutation test: the classes of the model's matrix are
shuffled (its rows and columns together), which keeps each matrix's own structure and breaks
only the pairing of class ``c`` with class ``c``. Stakes can only help where this ρ is high:
where the descriptions say what the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy.stats import rankdata

from stakes_core.anchors.build import anchor_similarity as row_cosines
from stakes_core.anchors.variants import prototype_anchors
from stakes_core.data import DatasetFormatError, ImageDataset
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import logits

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

MODEL_VIEWS = {
    "features": "cosine of class-mean backbone features (training images)",
    "confusion": "soft confusion (mean softmax per true class, test images), symmetrised (M + Mᵀ)/2",
}
"""The model's two class-similarity matrices, by name, with what each one is."""

PERMUTATION_BLOCK = 2_000_000
"""Entries of permuted rank matrices held in memory at once (about 16 MB of float64)."""


@dataclass(frozen=True)
class AgreementResult:
    """Spearman ρ between the off-diagonal entries of two class-similarity matrices and its
    one-sided permutation p-value (``(count + 1)/(permutations + 1)``, where ``count`` is the
    number of class shufflings with a ρ at least as high). The matrices are kept for the figure."""

    rho: float
    p_value: float
    n_pairs: int
    permutations: int
    anchor_matrix: np.ndarray
    model_matrix: np.ndarray

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """The class pairs ``(c, d)``, ``c < d``, in the order of the entries."""
        rows, columns = np.triu_indices(len(self.anchor_matrix), k=1)
        return tuple(zip(rows.tolist(), columns.tolist()))

    @property
    def anchor_entries(self) -> np.ndarray:
        """The anchor similarity of each class pair (the scatter's x)."""
        return self.anchor_matrix[np.triu_indices(len(self.anchor_matrix), k=1)]

    @property
    def model_entries(self) -> np.ndarray:
        """The model's similarity of each class pair (the scatter's y)."""
        return self.model_matrix[np.triu_indices(len(self.model_matrix), k=1)]


def model_class_similarity(
    model: BackboneModule, images: torch.Tensor, labels: torch.Tensor, num_classes: int, device: str = "cpu"
) -> torch.Tensor:
    """The ``num_classes × num_classes`` cosine between the class means of ``model.features``
    over ``images`` (symmetric, ones on the diagonal; CPU)."""
    return row_cosines(prototype_anchors(model, images, labels, num_classes, device))


@torch.no_grad()
def soft_confusion(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, device: str = "cpu"
) -> torch.Tensor:
    """Row ``c``: the mean softmax of ``model`` over the images of true class ``c`` (each row sums
    to 1; not symmetric: use ``(M + Mᵀ)/2`` to compare it with a similarity matrix). CPU float64."""
    with eval_mode(model):
        probabilities = torch.softmax(logits(model, images, device=device).double(), dim=1)
    if probabilities.shape[1] != num_classes:
        raise ConfigError(f"the model has {probabilities.shape[1]} outputs but the dataset has {num_classes} classes")
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise DatasetFormatError(f"the soft confusion needs images of every class; none of class {missing}")
    sums = torch.zeros(num_classes, num_classes, dtype=torch.float64).index_add_(0, labels.cpu(), probabilities)
    return sums / counts[:, None]


def model_similarities(model: BackboneModule, dataset: ImageDataset, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The model's class similarity under each of :data:`MODEL_VIEWS`: feature cosine on the
    training images, symmetrised soft confusion on the test images."""
    num_classes = dataset.num_classes
    confusion = soft_confusion(model, dataset.test_images, dataset.test_labels, num_classes, device)
    return {
        "features": model_class_similarity(model, dataset.train_images, dataset.train_labels, num_classes, device),
        "confusion": (confusion + confusion.T) / 2,
    }


def anchor_agreement(
    anchor_similarity: torch.Tensor | np.ndarray,
    model_similarity: torch.Tensor | np.ndarray,
    permutations: int = 10_000,
    seed: int = 0,
) -> AgreementResult:
    """Spearman ρ between the off-diagonal entries (upper triangle) of two symmetric class
    similarity matrices, and its Mantel p-value: the classes of ``model_similarity`` are
    shuffled ``permutations`` times (seeded) and the share of shufflings with a ρ at least as
    high is reported with the ``+1`` correction (one-sided: agreement means ρ > 0)."""
    anchors = _square_matrix(anchor_similarity, "the anchor similarity")
    model = _square_matrix(model_similarity, "the model similarity")
    if anchors.shape != model.shape:
        raise ConfigError(f"the anchor similarity is {anchors.shape[0]}×{anchors.shape[0]} but the model similarity "
                          f"is {model.shape[0]}×{model.shape[0]}: they must cover the same classes")
    n = anchors.shape[0]
    if n < 3:
        raise ConfigError(f"{n} classes are too few for the permutation test: it needs at least 3 (two classes "
                          "give a single pair, nothing to rank)")
    if isinstance(permutations, bool) or not isinstance(permutations, (int, np.integer)) or permutations < 1:
        raise ConfigError(f"permutations must be a whole number ≥ 1, got {permutations!r}")
    permutations = int(permutations)
    rows, columns = np.triu_indices(n, k=1)
    anchor_ranks = _centred_ranks(anchors[rows, columns], "the anchor similarity")
    model_ranks = _centred_ranks(model[rows, columns], "the model similarity")
    scale = float(np.sqrt((anchor_ranks**2).sum() * (model_ranks**2).sum()))
    rho = float(anchor_ranks @ model_ranks) / scale
    # a shuffling of the classes permutes the model's entries, so their centred ranks only move:
    # each shuffled ρ is one dot product with the same normalisation
    rank_matrix = np.zeros((n, n))
    rank_matrix[rows, columns] = model_ranks
    rank_matrix[columns, rows] = model_ranks
    generator = np.random.default_rng(seed)
    block = max(1, PERMUTATION_BLOCK // len(rows))
    at_least = 0
    for start in range(0, permutations, block):
        orders = generator.permuted(np.tile(np.arange(n), (min(block, permutations - start), 1)), axis=1)
        shuffled = rank_matrix[orders[:, rows], orders[:, columns]] @ anchor_ranks / scale
        at_least += int((shuffled >= rho - 1e-12).sum())
    return AgreementResult(rho, (at_least + 1) / (permutations + 1), len(rows), permutations, anchors, model)


def anchor_model_agreement(
    anchors: torch.Tensor, model: BackboneModule, dataset: ImageDataset, device: str = "cpu",
    permutations: int = 10_000, seed: int = 0,
) -> dict[str, AgreementResult]:
    """The agreement of ``anchors`` (one row per class of ``dataset``) with ``model`` under
    each of :data:`MODEL_VIEWS`, keyed ``"features"`` and ``"confusion"``."""
    if anchors.ndim != 2 or anchors.shape[0] != dataset.num_classes:
        raise ConfigError(f"the anchors have shape {tuple(anchors.shape)} but the dataset has {dataset.num_classes} "
                          "classes: one anchor row per class is needed")
    anchor_cosines = row_cosines(anchors.cpu())
    return {
        view: anchor_agreement(anchor_cosines, similarity, permutations, seed)
        for view, similarity in model_similarities(model, dataset, device).items()
    }


def _square_matrix(matrix: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """``matrix`` as float64 numpy, checked to be square, finite and symmetric."""
    values = np.asarray(matrix.detach().cpu().double() if isinstance(matrix, torch.Tensor) else matrix, float)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ConfigError(f"{name} must be a square class × class matrix, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ConfigError(f"{name} has values that are not finite")
    if not np.allclose(values, values.T, rtol=1e-5, atol=1e-6):
        raise ConfigError(f"{name} is not symmetric; symmetrise it first, e.g. (M + Mᵀ)/2")
    return values


def _centred_ranks(entries: np.ndarray, name: str) -> np.ndarray:
    """Average ranks of ``entries`` minus their mean (Spearman's ρ is Pearson's r of these)."""
    ranks = rankdata(entries)
    if np.ptp(ranks) == 0:
        raise ConfigError(f"{name} is the same for every class pair: a rank correlation is undefined")
    return ranks - ranks.mean()
