"""Where the anchors come from: the paper's text anchors, or one of the ablation's controls.

- ``text``: the encoder applied to the attribute descriptions (the paper's stakes);
- ``permuted``: the same text anchors given to other classes (a seeded permutation that moves
  every class): each anchor keeps its meaning, but it describes another class;
- ``rotated``: the text anchors times a seeded random orthogonal matrix, so the anchors keep
  their similarities to each other but lose any relation to the encoder's space;
- ``random``: seeded random unit vectors as wide as the text anchors: no meaning at all;
- ``prototypes``: visual prototypes, the normalised class means of the pretrained backbone's
  features over the training set (the paper's "visual prototype" ablation; unlike the text
  anchors they look at the training data).

The seeded controls draw from the run's seed, so a study paired by seed pairs each seed's text
anchors with that seed's control.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from stakes_core.data import DatasetFormatError
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import image_batches

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

ANCHOR_SOURCES: dict[str, str] = {
    "text": "text (the paper's)",
    "permuted": "text, given to other classes",
    "rotated": "text, randomly rotated",
    "random": "random unit vectors",
    "prototypes": "visual prototypes",
}
"""Each anchor source and its short label."""


def check_anchor_source(source: str) -> str:
    """``source`` when it is known, else a :class:`ConfigError` naming the choices."""
    if source not in ANCHOR_SOURCES:
        raise ConfigError(f"anchor source '{source}' is not one of {', '.join(ANCHOR_SOURCES)}")
    return source


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A seeded permutation of ``range(n)`` that moves every element (``n ≥ 2``)."""
    if n < 2:
        raise ConfigError("permuted anchors need at least two classes")
    while True:
        order = torch.randperm(n, generator=generator)
        if not (order == torch.arange(n)).any():
            return order


def permuted_anchors(anchors: torch.Tensor, seed: int) -> torch.Tensor:
    """The anchors with rows shuffled by a seeded :func:`derangement`: class c gets another
    class's anchor, and the set of anchors (so ``AᵀA``) is unchanged."""
    return anchors[derangement(anchors.shape[0], torch.Generator().manual_seed(seed))]


def random_anchors(num_classes: int, width: int, seed: int) -> torch.Tensor:
    """``num_classes`` seeded random unit vectors of ``width`` (float32, CPU)."""
    draws = torch.randn(num_classes, width, generator=torch.Generator().manual_seed(seed))
    return F.normalize(draws, dim=1)


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed ``n × n`` orthogonal matrix (float64)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # not biased by QR's sign convention


def rotated_anchors(anchors: torch.Tensor, seed: int) -> torch.Tensor:
    """``A·Q`` for a seeded random orthogonal ``Q``: the same Gram matrix ``A·Aᵀ``, another subspace."""
    q = random_orthogonal(anchors.shape[1], torch.Generator().manual_seed(seed))
    return (anchors.double().cpu() @ q).float()


@torch.no_grad()
def prototype_anchors(
    model: BackboneModule, images: torch.Tensor, labels: torch.Tensor, num_classes: int, device: str = "cpu"
) -> torch.Tensor:
    """Unit class means of ``model.features`` (``num_classes × feature_dim``, CPU)."""
    sums = torch.zeros(num_classes, model.feature_dim)
    with eval_mode(model):
        for start, batch in image_batches(images, 512, device):
            sums.index_add_(0, labels[start : start + len(batch)], model.features(batch).float().cpu())
    counts = torch.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise DatasetFormatError(f"visual prototypes need images of every class; none of class {missing}")
    return F.normalize(sums / counts[:, None], dim=1)
