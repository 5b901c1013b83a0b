"""Backbones by name: ``create_model``, ``list_models``, ``register_model``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

from torch import nn

from stakes_core.infra.registry import Registry
from stakes_core.models.protocol import BACKBONE_MEMBERS, Backbone, is_backbone, missing_members
from stakes_core.models.resnet import BasicBlock, Bottleneck, CifarResNet

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


@MODELS.register("resnet18_cifar")
def resnet18_cifar(num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float]) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-18 (3×3 stem + max-pool, 512-d features)."""
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, mean, std, width=64, stem_maxpool=True)


@MODELS.register("resnet50_cifar")
def resnet50_cifar(num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float]) -> CifarResNet:
    """The paper's CIFAR-100 ResNet-50 (pytorch-cifar100 layout, 2048-d features)."""
    return CifarResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, mean, std, width=64)


@MODELS.register("resnet18_narrow")
def resnet18_narrow(
    num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], width: int = 8,
    stem_maxpool: bool = False,
) -> CifarResNet:
    """ResNet-18 layout with widths w..8w: small and fast on a CPU. No max-pool by default (16×16
    digits); ``stem_maxpool`` halves the maps after the stem, which makes 32×32 images cost what
    16×16 ones do (about 3.3× fewer seconds per training step at width 4, measured on 2 cores)."""
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, mean, std, width=width,
                       stem_maxpool=stem_maxpool)


def create_model(
    name: str, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], **kwargs: Any
) -> BackboneModule:
    """Build the backbone ``name`` with random weights; a factory whose model is not a
    :class:`Backbone` ``nn.Module`` raises ``TypeError`` naming what it lacks."""
    model = MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std, **kwargs)
    if not is_backbone(model):
        missing = missing_members(model)
        lacks = f"it lacks {', '.join(missing)}" if missing else "it is not a torch.nn.Module"
        raise TypeError(f"model factory '{name}' returned a {type(model).__name__} that is not a Backbone: {lacks}")
    return model


def list_models() -> list[str]:
    """Names of every registered backbone, sorted."""
    return MODELS.names()


def register_model(
    name: str, factory: Callable[..., nn.Module] | None = None
) -> Callable[..., nn.Module] | Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Add a backbone; usable directly or as a decorator.

    The factory takes ``num_classes, in_channels, mean, std, **kwargs`` and returns a
    ``torch.nn.Module`` that is a :class:`~stakes_core.models.protocol.Backbone`:

    - ``features(x)``: the pooled penultimate embedding of images in [0, 1], ``N × feature_dim``;
    - ``classifier``: the linear head (an ``nn.Linear``), so ``forward(x) == classifier(features(x))``;
    - ``feature_dim``: the width of the features;
    - ``forward(x)``: the logits;
    - ``gradcam_layer(stage=None)``: the module Grad-CAM weighs (by default the last convolutional block).

    :func:`create_model` checks this and names the missing members.
    """
    return MODELS.register(name, factory)


__all__ = ["BACKBONE_MEMBERS", "Backbone", "CifarResNet", "MODELS", "create_model", "list_models", "register_model"]
