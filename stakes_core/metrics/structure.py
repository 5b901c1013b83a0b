"""Instance-to-anchor structure and the structural-collapse metric.

The paper's "structure" of a set of instances is the affinity matrix
``S = normalize(V) · Aᵀ`` between their L2-normalised embeddings ``V`` and the anchors
``A`` (one unit row per class). When the embedding width differs from the anchor width,
embeddings pass through a fixed random projection ``R`` with unit-norm columns (the authors'
ResNet-50 recipe, generalised in method.md quirk Q8).

Structural collapse at unlearning step t is ``1 − mean_i cos(S₀ᵢ, Sₜᵢ)`` over a fixed probe
set of retained training instances: 0 when every instance keeps its affinity profile.
"""

from __future__ import annotations

from typing import Callable, Protocol, TypeGuard

import torch
import torch.nn.functional as F

from stakes_core.data import to_float
from stakes_core.infra.modules import eval_mode

Embedder = Callable[[torch.Tensor], torch.Tensor]


class FeatureModel(Protocol):
    """A model with backbone features ``features(x)``: every backbone
    (:class:`~stakes_core.models.protocol.Backbone`) and StructGuard's deployed h∘p∘g."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate embedding g(x)."""


def has_features(model: object) -> TypeGuard[FeatureModel]:
    """Whether ``model`` has a callable ``features`` (a method or a submodule)."""
    return callable(getattr(model, "features", None))


def affinities(embeddings: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """``S = normalize(V) · Aᵀ``: one row of anchor affinities per instance (N × b)."""
    if embeddings.shape[1] != anchors.shape[1]:
        raise ValueError(f"embedding width {embeddings.shape[1]} does not match anchor width {anchors.shape[1]}")
    return F.normalize(embeddings, dim=1) @ anchors.t()


def row_cosine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of corresponding rows of two matrices."""
    return F.cosine_similarity(first, second, dim=1, eps=1e-8)


def structure_discrepancy(reference: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """``1 − mean_i cos(Sᵢ^ref, Sᵢ^cur)``: the alignment loss and the collapse metric."""
    return 1.0 - row_cosine(reference, current).mean()


def random_projection(in_dim: int, out_dim: int, seed: int) -> torch.Tensor:
    """A fixed ``in_dim × out_dim`` Gaussian matrix with unit-norm columns."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(in_dim, out_dim, generator=generator), dim=0)


def projection_for(feature_dim: int, anchor_dim: int, seed: int) -> torch.Tensor | None:
    """The projection ``R`` the structure needs, or ``None`` when the widths already agree."""
    return None if feature_dim == anchor_dim else random_projection(feature_dim, anchor_dim, seed)


def backbone_embedder(model: torch.nn.Module, projection: torch.Tensor | None) -> Embedder:
    """Embedding used to compare every method: backbone features ``g(x)``, through ``R`` if set."""
    if not has_features(model):
        raise TypeError(f"{type(model).__name__} has no features(x): it is not a backbone")

    def embed(x: torch.Tensor) -> torch.Tensor:
        features = model.features(x)
        return features if projection is None else features @ projection.to(features.device)

    return embed


class StructureProbe:
    """A fixed set of retained instances whose structure is tracked during unlearning.

    ``reference`` holds S₀, the structure under the original model; ``collapse(embed)`` gives
    the collapse of any embedding function against it. Embedding is done in eval mode by the
    caller's model; this class only batches and compares.
    """

    def __init__(
        self,
        images: torch.Tensor,
        anchors: torch.Tensor,
        original: torch.nn.Module,
        projection: torch.Tensor | None,
        device: str = "cpu",
        batch_size: int = 512,
    ) -> None:
        self.images = to_float(images) if images.dtype == torch.uint8 else images
        self.anchors = anchors.to(device)
        self.projection = projection
        self.device = device
        self.batch_size = batch_size
        self.reference = self.structure(backbone_embedder(original, projection), original)

    @torch.no_grad()
    def structure(self, embed: Embedder, model: torch.nn.Module) -> torch.Tensor:
        """Affinity matrix of the probe images under ``embed`` (``model`` is put in eval mode)."""
        with eval_mode(model):
            rows = [
                affinities(embed(self.images[i : i + self.batch_size].to(self.device)), self.anchors)
                for i in range(0, self.images.shape[0], self.batch_size)
            ]
        return torch.cat(rows)

    def collapse(self, embed: Embedder, model: torch.nn.Module) -> float:
        """Structural collapse of ``embed`` relative to the original model's structure."""
        return structure_discrepancy(self.reference, self.structure(embed, model)).item()
