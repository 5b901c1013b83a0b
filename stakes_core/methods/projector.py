"""StructGuard's projector ``p`` and its deployed classifier ``h∘p∘g``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule


class Projector(nn.Module):
    """``p_ω``: ``Linear(d, a) → BatchNorm1d → ReLU → Linear(a, d)``, randomly initialised."""

    def __init__(self, feature_dim: int, anchor_dim: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(feature_dim, anchor_dim), nn.BatchNorm1d(anchor_dim), nn.ReLU())
        self.out = nn.Linear(anchor_dim, feature_dim)
        self.align_on_output = feature_dim == anchor_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.outputs_and_view(features)[0]

    def outputs_and_view(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected features (fed to the head) and the embedding the structure uses."""
        hidden = self.hidden(features)
        out = self.out(hidden)
        return out, out if self.align_on_output else hidden


class ProjectedClassifier(nn.Module):
    """The deployed StructGuard model ``h∘p∘g``, a :class:`~stakes_core.models.protocol.Backbone`
    whose ``features``, ``classifier``, ``feature_dim`` and Grad-CAM layer are still the
    backbone's (g and h): only ``forward`` puts the projector between them."""

    def __init__(self, backbone: BackboneModule, projector: Projector) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = projector
        self.feature_dim = backbone.feature_dim

    @property
    def classifier(self) -> nn.Linear:
        return self.backbone.classifier

    def gradcam_layer(self, stage: str | None = None) -> nn.Module:
        return self.backbone.gradcam_layer(stage)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.classifier(self.projector(self.backbone.features(x)))
