"""StructGuard's projector ``p`` and its deployed classifier ``h∘p∘g``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule


class Projector(nn.Module):
    """``p_ω``: ``Linear(d, a) → BatchNorm1d → ReLU → Linear(a, d)``, randomly initialised.

    With ``generator`` the linear layers draw their initial weights from it, not from torch's
    process-wide generator, exactly as ``nn.Linear`` draws them (same values as after
    ``torch.manual_seed`` with the generator's seed): methods running in parallel threads then
    cannot change each other's initialisation."""

    def __init__(self, feature_dim: int, anchor_dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.hidden = nn.Sequential(linear(feature_dim, anchor_dim, generator), nn.BatchNorm1d(anchor_dim), nn.ReLU())
        self.out = linear(anchor_dim, feature_dim, generator)
        self.align_on_output = feature_dim == anchor_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.outputs_and_view(features)[0]

    def outputs_and_view(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projected features (fed to the head) and the embedding the structure uses."""
        hidden = self.hidden(features)
        out = self.out(hidden)
        return out, out if self.align_on_output else hidden


def linear(in_features: int, out_features: int, generator: torch.Generator | None) -> nn.Linear:
    """``nn.Linear(in_features, out_features)``; with ``generator``, initialised from it by
    ``nn.Linear.reset_parameters``'s rule (Kaiming-uniform weight, uniform bias in ±1/√fan_in)."""
    if generator is None:
        return nn.Linear(in_features, out_features)
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features)
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(in_features) if in_features > 0 else 0.0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


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
