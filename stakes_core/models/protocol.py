"""What the library needs of a classifier backbone: the :class:`Backbone` protocol.

The methods unlearn any ``torch.nn.Module`` that splits into a feature extractor g and a
linear head h (``forward(x) == classifier(features(x))``), says how wide its features are and
names the layer Grad-CAM weighs. ``create_model`` checks every registered factory's model
against it; the built-in :class:`~stakes_core.models.resnet.CifarResNet` implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeGuard, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Backbone(Protocol):
    """An image classifier the methods can unlearn and the analyses can look into.

    Images come in as float ``N×C×H×W`` in [0, 1]; the backbone normalises them itself.
    """

    feature_dim: int
    """Width of ``features(x)`` (the input width of ``classifier``)."""

    @property
    def classifier(self) -> nn.Linear:
        """The linear head h_φ, applied to ``features(x)``."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled penultimate embedding g_ψ(x), ``N × feature_dim``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, ``classifier(features(x))``."""

    def gradcam_layer(self, stage: str | None = None) -> nn.Module:
        """The module whose activations Grad-CAM weighs: by default the last convolutional
        block; ``stage`` names another stage where the backbone has several (an unknown stage
        raises :class:`~stakes_core.infra.errors.ConfigError`)."""


if TYPE_CHECKING:

    class BackboneModule(nn.Module, Backbone):
        """An ``nn.Module`` that is a :class:`Backbone`: the type ``create_model`` returns.

        Python has no intersection types, so this class exists for the type checker only;
        at run time a backbone is any ``nn.Module`` with the members (see :func:`is_backbone`).
        """


BACKBONE_MEMBERS = ("features", "classifier", "feature_dim", "forward", "gradcam_layer")
"""The members of :class:`Backbone`, in the order an error message lists the missing ones."""


def missing_members(model: object) -> list[str]:
    """The :class:`Backbone` members ``model`` lacks (empty for a backbone)."""
    return [name for name in BACKBONE_MEMBERS if not hasattr(model, name)]


def is_backbone(model: object) -> TypeGuard[BackboneModule]:
    """Whether ``model`` is an ``nn.Module`` with every :class:`Backbone` member.

    Members are looked up with ``hasattr``, as ``isinstance(model, Backbone)`` does up to
    Python 3.11; from 3.12 on that ``isinstance`` uses ``inspect.getattr_static``, which does
    not see submodules (a ``self.classifier = nn.Linear(...)`` lives in ``model._modules``)."""
    return isinstance(model, nn.Module) and not missing_members(model)
