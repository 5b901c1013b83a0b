"""scikit-learn's 8×8 handwritten digits (1,797 real images), upsampled to a small square.

Bundled with scikit-learn, so it needs no download: the dataset for fast end-to-end runs. The
converted tensors are cached (the cache's ``datasets`` part, keyed by the options and the
scikit-learn version): importing scikit-learn and its dependencies costs 1.5 s on this
project's CPU, which a fresh process (the CLI, a notebook kernel) would otherwise pay per run.
"""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import torch
import torch.nn.functional as F

from stakes_core.data.base import DATASETS, Augmentation, ImageDataset
from stakes_core.data.batches import channel_mean_std
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.infra.errors import ConfigError


def _to_uint8(images_0_16: torch.Tensor, image_size: int) -> torch.Tensor:
    """Scale 0..16 pixels to [0, 1], upsample bilinearly and quantise to uint8 N×1×S×S."""
    x = (images_0_16 / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)


@DATASETS.register("digits")
def load_digits_dataset(image_size: int = 16, split_seed: int = 0, **_) -> ImageDataset:
    """Load the digits with a fixed seeded stratified 80/20 split (1,437 train / 360 test).

    Unknown keyword arguments (``root``, ``download``, ...) are ignored so one factory can
    call every loader the same way. Flips stay off: digits are not mirror-invariant.
    """
    if image_size < 1:
        raise ConfigError(f"image_size={image_size} is invalid: it must be a positive number of pixels")
    options = {"image_size": image_size, "split_seed": split_seed, "scikit-learn": version("scikit-learn")}
    cache, key = TensorCache("datasets"), "digits-" + config_key(options)
    with cache.lock(key):
        tensors = cache.load_or_none(key)
        if tensors is None:
            tensors = _convert(image_size, split_seed)
            cache.save(key, tensors, options)
    mean, std = channel_mean_std(tensors["train_images"])
    return ImageDataset(
        name="digits", classes=[str(d) for d in range(10)], **tensors, mean=mean, std=std,
        augmentation=Augmentation(pad=2, flip=False),
    )


def _convert(image_size: int, split_seed: int) -> dict[str, torch.Tensor]:
    """The split and upsampled tensors, from scikit-learn's copy of the images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=bunch.target, random_state=split_seed
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return {
        "train_images": _to_uint8(images[train_idx], image_size), "train_labels": labels[train_idx],
        "test_images": _to_uint8(images[test_idx], image_size), "test_labels": labels[test_idx],
    }
