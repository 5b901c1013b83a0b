"""Any folder of class sub-folders of images (``root/<class>/<image>``): how users bring their
own data, e.g. Lacuna-10 faces.

If ``root/train`` and ``root/test`` both exist they are the split; otherwise all images are
split by a seeded stratified draw. Flips are off by default because the content is unknown
(text or digits are not mirror-invariant); pass ``flip=True`` for natural photos.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from stakes_core.data.base import DATASETS, Augmentation, ImageDataset
from stakes_core.data.batches import channel_mean_std
from stakes_core.data.errors import DatasetFormatError, DatasetNotFoundError
from stakes_core.infra.errors import ConfigError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"})


def _scan(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted sub-folder names) and every image path with its class index."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetFormatError(f"no class sub-folders in {folder}: expected {folder}/<class>/<image>")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        images = sorted(
            p for p in (folder / name).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not images:
            kinds = " ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetFormatError(f"class folder {folder / name} has no images ({kinds})")
        paths += images
        labels += [index] * len(images)
    return classes, paths, labels


def _read(paths: list[Path], image_size: int, channels: int) -> torch.Tensor:
    """Decode, convert to RGB or L, resize bilinearly and stack as uint8 ``N×C×S×S``."""
    mode = "RGB" if channels == 3 else "L"
    out = torch.empty((len(paths), channels, image_size, image_size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as opened:
                image = opened.convert(mode).resize((image_size, image_size), Image.Resampling.BILINEAR)
                pixels = np.array(image, dtype=np.uint8).reshape(image_size, image_size, channels)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DatasetFormatError(f"cannot read image {path}: {err}") from None
        out[i] = torch.from_numpy(pixels).permute(2, 0, 1)
    return out


def _split(
    paths: list[Path], labels: list[int], test_fraction: float, split_seed: int
) -> tuple[list[Path], list[int], list[Path], list[int]]:
    """Seeded stratified split of one pool of images into train and test."""
    from sklearn.model_selection import train_test_split

    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(paths)), test_size=test_fraction, stratify=labels, random_state=split_seed
        )
    except ValueError as err:
        raise DatasetFormatError(f"cannot split {len(paths)} images stratified by class: {err}") from None
    return (
        [paths[i] for i in train_idx],
        [labels[i] for i in train_idx],
        [paths[i] for i in test_idx],
        [labels[i] for i in test_idx],
    )


@DATASETS.register("imagefolder")
def load_image_folder(
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    channels: int = 3,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    flip: bool = False,
    **_,
) -> ImageDataset:
    """Load ``root/<class>/<image>`` (or ``root/{train,test}/<class>/<image>``) as square
    uint8 images; mean/std come from the training images. Unknown keyword arguments are
    ignored; ``test_fraction`` and ``split_seed`` only matter without a train/test layout."""
    if root is None:
        raise ConfigError("the imagefolder dataset needs root=<folder of class sub-folders>")
    if channels not in (1, 3):
        raise ConfigError(f"channels={channels} is invalid: choose 1 (grayscale) or 3 (RGB)")
    if image_size < 1:
        raise ConfigError(f"image_size={image_size} is invalid: it must be a positive number of pixels")
    folder = Path(root)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"image folder {folder} does not exist: expected {folder}/<class>/<image>")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        classes, train_paths, train_labels = _scan(folder / "train")
        test_classes, test_paths, test_labels = _scan(folder / "test")
        if test_classes != classes:
            raise DatasetFormatError(
                f"{folder / 'test'} must hold the same class folders as {folder / 'train'} "
                f"(train: {', '.join(classes)}; test: {', '.join(test_classes)})"
            )
    else:
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError(f"test_fraction={test_fraction} is invalid: choose 0 < test_fraction < 1")
        classes, paths, labels = _scan(folder)
        train_paths, train_labels, test_paths, test_labels = _split(paths, labels, test_fraction, split_seed)
    train_images = _read(train_paths, image_size, channels)
    mean, std = channel_mean_std(train_images)
    return ImageDataset(
        name="imagefolder",
        classes=classes,
        train_images=train_images,
        train_labels=torch.tensor(train_labels, dtype=torch.int64),
        test_images=_read(test_paths, image_size, channels),
        test_labels=torch.tensor(test_labels, dtype=torch.int64),
        mean=mean,
        std=std,
        augmentation=Augmentation(pad=image_size // 8, flip=flip),
    )
