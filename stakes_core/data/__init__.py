"""Datasets as in-memory uint8 tensors, forget/retain/probe index sets, and batching helpers.

Loaders are looked up by name (``create_dataset("digits")``); importing this package
registers the built-in ones without importing torchvision or scikit-learn.
"""

from __future__ import annotations

from stakes_core.data import cifar, digits, imagefolder, shapes  # noqa: F401  (registers the loaders)
from stakes_core.data.base import DATASETS, Augmentation, ImageDataset
from stakes_core.data.batches import augment_batch, to_float
from stakes_core.data.errors import DatasetFormatError, DatasetNotFoundError
from stakes_core.data.forget import (
    choose_forget_indices,
    choose_probe_indices,
    retain_indices,
)


def create_dataset(name: str, **kwargs) -> ImageDataset:
    """Build the dataset registered as ``name``; raises ``UnknownNameError`` for unknown names."""
    return DATASETS.get(name)(**kwargs)


def list_datasets() -> list[str]:
    """Names of every registered dataset, sorted."""
    return DATASETS.names()


__all__ = [
    "DATASETS",
    "Augmentation",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageDataset",
    "augment_batch",
    "choose_forget_indices",
    "choose_probe_indices",
    "create_dataset",
    "list_datasets",
    "retain_indices",
    "to_float",
]
