"""CIFAR-10 and CIFAR-100, read from torchvision's on-disk format into uint8 tensors.

torchvision is imported inside the loader so that importing :mod:`stakes_core.data` stays fast.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import platformdirs
import torch

from stakes_core.data.base import DATASETS, Augmentation, ImageDataset
from stakes_core.data.errors import DatasetNotFoundError

_SPECS = {
    # name: (display name, torchvision class, folder in the archive, mean, std)
    "cifar10": (
        "CIFAR-10",
        "CIFAR10",
        "cifar-10-batches-py",
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
    ),
    "cifar100": (
        "CIFAR-100",
        "CIFAR100",
        "cifar-100-python",
        (0.5071, 0.4867, 0.4408),
        (0.2675, 0.2565, 0.2761),
    ),
}


def default_data_root() -> Path:
    """Where downloaded datasets live: ``$STAKES_DATA_DIR`` when set, else
    ``<user data dir>/stakes/datasets`` (``platformdirs``)."""
    root = os.environ.get("STAKES_DATA_DIR")
    return Path(root) if root else Path(platformdirs.user_data_dir("stakes")) / "datasets"


def _load_cifar(name: str, root: str | os.PathLike | None, download: bool) -> ImageDataset:
    """Read both splits of one CIFAR variant, turning torchvision's and pickle's failures on
    missing or damaged files into a one-line :class:`DatasetNotFoundError`."""
    import torchvision.datasets

    display, class_name, folder, mean, std = _SPECS[name]
    where = Path(root) if root is not None else default_data_root()
    how = (
        f"pass download=True (CLI: --download) on a machine with internet, "
        f"or place the extracted '{folder}' folder there"
    )
    if not (where / folder).is_dir() and not download:
        raise DatasetNotFoundError(f"{display} not found under {where}; {how}")
    dataset_cls = getattr(torchvision.datasets, class_name)
    try:
        train = dataset_cls(str(where), train=True, download=download)
        test = dataset_cls(str(where), train=False, download=download)
    except RuntimeError as err:
        if "not found or corrupted" not in str(err):
            raise
        raise DatasetNotFoundError(
            f"{display} under {where / folder} is incomplete or corrupt (failed its MD5 check); "
            f"delete that folder and {how}"
        ) from None
    except OSError as err:
        if not download:
            raise
        raise DatasetNotFoundError(
            f"could not download {display} into {where} ({err}); "
            f"place the extracted '{folder}' folder there instead"
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        raise DatasetNotFoundError(
            f"{display} under {where / folder} could not be read ({type(err).__name__}); "
            f"delete that folder and {how}"
        ) from None
    return ImageDataset(
        name=name,
        classes=list(train.classes),
        train_images=_to_tensor(train.data),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=_to_tensor(test.data),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        mean=mean,
        std=std,
        augmentation=Augmentation(pad=4, flip=True),
    )


def _to_tensor(data) -> torch.Tensor:
    """torchvision's N×32×32×3 uint8 array → contiguous N×3×32×32 uint8 tensor."""
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()


@DATASETS.register("cifar10")
def load_cifar10(root: str | None = None, download: bool = False, **_) -> ImageDataset:
    """CIFAR-10 (50,000 train / 10,000 test, 10 classes); unknown keyword arguments are ignored."""
    return _load_cifar("cifar10", root, download)


@DATASETS.register("cifar100")
def load_cifar100(root: str | None = None, download: bool = False, **_) -> ImageDataset:
    """CIFAR-100 (50,000 train / 10,000 test, 100 fine classes); unknown keyword arguments are
    ignored."""
    return _load_cifar("cifar100", root, download)
