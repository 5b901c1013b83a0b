"""Helpers that turn stored uint8 images into model inputs: scaling and augmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stakes_core.data.base import Augmentation


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) → float32 in [0, 1], the scale every model receives."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images (0..255), got {images.dtype}: scale only once")
    return images.to(torch.float32).div_(255.0)


def channel_mean_std(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``N×C×H×W`` images on the [0, 1] scale, rounded to
    4 decimals (the normalisation constants a loader derives from its training images)."""
    scaled = to_float(images).transpose(0, 1).reshape(images.shape[1], -1)
    mean = tuple(round(v, 4) for v in scaled.mean(dim=1).tolist())
    std = tuple(round(v, 4) for v in scaled.std(dim=1).tolist())
    return mean, std


def augment_batch(x: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Randomly translate each image of the float batch ``x`` (``N×C×H×W``) by up to
    ``aug.pad`` pixels (zero-padded random crop) and, when ``aug.flip``, flip it horizontally
    with probability 1/2.

    All randomness comes from ``generator`` (drawn on its own device), so a seeded generator
    gives the same batch every time. Returns ``x`` itself when the augmentation does nothing.
    """
    n, _, height, width = x.shape
    if aug.pad > 0:
        span = 2 * aug.pad + 1
        offsets = torch.randint(0, span, (2, n), generator=generator, device=generator.device)
        offsets = offsets.to(x.device)
        padded = F.pad(x, (aug.pad, aug.pad, aug.pad, aug.pad))
        rows = offsets[0, :, None] + torch.arange(height, device=x.device)  # N×H
        cols = offsets[1, :, None] + torch.arange(width, device=x.device)  # N×W
        index = rows[:, None, :, None].expand(-1, x.shape[1], -1, padded.shape[3])
        padded = padded.gather(2, index)  # N×C×H×(W+2·pad): the chosen rows
        index = cols[:, None, None, :].expand(-1, x.shape[1], height, -1)
        x = padded.gather(3, index)  # N×C×H×W: the chosen columns
    if aug.flip:
        flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
        x = torch.where(flips.to(x.device)[:, None, None, None], x.flip(3), x)
    return x
