"""Backbones by name: ``create_model``, ``list_models``, ``register_model``."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from stakes_core.infra.registry import Registry
from stakes_core.models.resnet import BasicBlock, Bottleneck, CifarResNet

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
    num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], width: int = 8
) -> CifarResNet:
    """ResNet-18 layout with widths w..8w and no max-pool: small and fast on a CPU."""
    return CifarResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, mean, std, width=width)


def create_model(
    name: str, num_classes: int, in_channels: int, mean: Sequence[float], std: Sequence[float], **kwargs
) -> CifarResNet:
    """Build the backbone ``name`` with random weights."""
    return MODELS.get(name)(num_classes=num_classes, in_channels=in_channels, mean=mean, std=std, **kwargs)


def list_models() -> list[str]:
    return MODELS.names()


def register_model(name: str, factory: Callable[..., nn.Module] | None = None):
    """Add a backbone; the factory takes ``num_classes, in_channels, mean, std, **kwargs`` and
    returns a module with ``features(x)``, ``classifier`` and ``feature_dim``."""
    return MODELS.register(name, factory)


__all__ = ["CifarResNet", "MODELS", "create_model", "list_models", "register_model"]
