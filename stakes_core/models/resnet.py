"""CIFAR-style ResNets with the normalisation inside and a feature/classifier split.

- ``resnet18_cifar``: the paper's CIFAR-10 backbone (3×3 stride-1 stem followed by a 3×3
  max-pool, as in the authors' ``resnet.py``), 512-d features.
- ``resnet50_cifar``: the paper's CIFAR-100 backbone (pytorch-cifar100 layout: 3×3 stem, no
  max-pool, bottleneck stages [3, 4, 6, 3]), 2048-d features.
- ``resnet18_narrow``: the ResNet-18 layout without the max-pool and with channel widths
  ``w, 2w, 4w, 8w`` (default w=8, 64-d features): the offline default for 16×16 digits.

Every model maps images in [0, 1] to logits; ``features(x)`` returns the pooled
penultimate embedding (g_ψ in the paper) and ``classifier`` is the linear head (h_φ): each is a
:class:`~stakes_core.models.protocol.Backbone`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from stakes_core.infra.errors import ConfigError


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``; kept inside the model so inputs stay in [0, 1]."""

    mean: torch.Tensor  # buffers (registered below, saved with the weights)
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class CifarResNet(nn.Module):
    """A ResNet for small images: ``classifier(features(x))``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        stage_blocks: Sequence[int],
        num_classes: int,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
        width: int = 64,
        stem_maxpool: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"mean/std need {in_channels} values, got {len(mean)}/{len(std)}")
        self.normalize = Normalize(mean, std)
        stem: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        ]
        if stem_maxpool:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        in_planes = width
        stages = []
        for index, blocks in enumerate(stage_blocks):
            planes = width * 2**index
            layers = []
            for block_index in range(blocks):
                stride = 2 if index > 0 and block_index == 0 else 1
                layers.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = in_planes
        self.fc = nn.Linear(in_planes, num_classes)

    @property
    def classifier(self) -> nn.Linear:
        """The linear head h_φ."""
        return self.fc

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate embedding g_ψ(x) of images in [0, 1]."""
        out = self.stem(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return torch.flatten(self.pool(out), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of images in [0, 1]."""
        return self.fc(self.features(x))

    def gradcam_layer(self, stage: str | None = None) -> nn.Module:
        """The last block of ``stage`` (``layer1`` … ``layer4``; by default ``layer4``, the last
        convolutional block, whose maps are 2×2 on 16×16 digits; ``layer3`` gives finer ones)."""
        stages = {"layer1": self.layer1, "layer2": self.layer2, "layer3": self.layer3, "layer4": self.layer4}
        name = stage or "layer4"
        if name not in stages:
            raise ConfigError(f"{type(self).__name__} has no stage '{name}' for Grad-CAM (choose {', '.join(stages)})")
        return stages[name][-1]
