"""Tests for stakes_core.data: loaders (digits, CIFAR on-disk format, image folders),
forget/retain/probe index sets and the batching helpers. CPU only, no network."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stakes_core.data import (
    Augmentation,
    DatasetFormatError,
    DatasetNotFoundError,
    augment_batch,
    choose_forget_indices,
    choose_probe_indices,
    create_dataset,
    list_datasets,
    retain_indices,
    to_float,
)
from stakes_core.infra.registry import UnknownNameError

# --------------------------------------------------------------------------- registry


def test_registry_lists_builtin_loaders_and_rejects_unknown_names() -> None:
    assert {"digits", "cifar10", "cifar100", "imagefolder"} <= set(list_datasets())
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'"):
        create_dataset("mnist")


@pytest.mark.slow
def test_import_does_not_load_torchvision_or_sklearn() -> None:
    code = "import sys, stakes_core.data; print('torchvision' in sys.modules, 'sklearn' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(root)},
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return create_dataset("digits", root="/ignored", download=False)


def test_digits_shapes_dtype_and_classes(digits) -> None:
    assert digits.train_images.shape == (1437, 1, 16, 16)
    assert digits.test_images.shape == (360, 1, 16, 16)
    assert digits.train_images.dtype == torch.uint8 and digits.test_images.dtype == torch.uint8
    assert digits.train_labels.dtype == torch.int64
    assert digits.classes == [str(d) for d in range(10)]
    assert digits.num_classes == 10 and digits.num_train == 1437
    assert digits.augmentation == Augmentation(pad=2, flip=False)
    assert len(digits.mean) == 1 and 0.0 < digits.mean[0] < 1.0 and 0.0 < digits.std[0] < 1.0
    assert digits.train_images.max() > 200  # real ink reaches close to white


def test_digits_split_is_stratified(digits) -> None:
    train_counts = torch.bincount(digits.train_labels, minlength=10)
    test_counts = torch.bincount(digits.test_labels, minlength=10)
    assert (train_counts > 0).all() and (test_counts > 0).all()
    share = test_counts.float() / (train_counts + test_counts).float()
    assert ((share - 0.2).abs() < 0.02).all()


def test_digits_split_depends_only_on_split_seed(digits) -> None:
    again = create_dataset("digits")
    assert torch.equal(again.train_images, digits.train_images)
    assert torch.equal(again.test_labels, digits.test_labels)
    other = create_dataset("digits", split_seed=1)
    assert not torch.equal(other.train_images, digits.train_images)


def test_digits_other_image_size() -> None:
    big = create_dataset("digits", image_size=32)
    assert big.train_images.shape == (1437, 1, 32, 32)


# --------------------------------------------------------------------------- CIFAR


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def _planar_images(n: int, first_label: int) -> np.ndarray:
    """n×3072 channel-planar images, all zero except a marker pixel per channel in image 0
    and a per-image brightness in the last pixel of the blue plane."""
    data = np.zeros((n, 3072), dtype=np.uint8)
    data[0, 0 * 1024 + 1 * 32 + 2] = 200  # R at (h=1, w=2)
    data[0, 1 * 1024 + 3 * 32 + 4] = 100  # G at (h=3, w=4)
    data[0, 2 * 1024 + 5 * 32 + 6] = 50  # B at (h=5, w=6)
    data[:, 3071] = np.arange(first_label, first_label + n)
    return data


def _write_cifar10(root: Path, per_batch: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        labels = [(b + i) % 10 for i in range(per_batch)]
        _pickle(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5",
            "labels": labels,
            "data": _planar_images(per_batch, 10 * b),
            "filenames": [f"img_{b}_{i}.png" for i in range(per_batch)],
        })
    _pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "labels": [9, 8, 7],
        "data": _planar_images(3, 0),
        "filenames": ["t0.png", "t1.png", "t2.png"],
    })
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072})
    return folder


def _write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    _pickle(folder / "train", {
        "data": _planar_images(4, 0), "fine_labels": [5, 99, 0, 42], "coarse_labels": [1, 2, 3, 4],
        "filenames": ["a", "b", "c", "d"], "batch_label": "training batch 1 of 1",
    })
    _pickle(folder / "test", {
        "data": _planar_images(2, 0), "fine_labels": [7, 3], "coarse_labels": [0, 0],
        "filenames": ["e", "f"], "batch_label": "testing batch 1 of 1",
    })
    fine = [f"fine_{i:02d}" for i in range(100)]
    _pickle(folder / "meta", {"fine_label_names": fine, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return folder


@pytest.fixture
def skip_md5(monkeypatch):
    """Our tiny files cannot match torchvision's MD5 sums; accept every file that exists."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())


def test_cifar10_reads_real_on_disk_format(tmp_path, skip_md5) -> None:
    _write_cifar10(tmp_path)
    ds = create_dataset("cifar10", root=str(tmp_path))
    assert ds.train_images.shape == (10, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    img = ds.train_images[0]
    assert (img[0, 1, 2], img[1, 3, 4], img[2, 5, 6]) == (200, 100, 50)
    assert img[0, 2, 1] == 0 and img[:2].sum() == 300  # not transposed, nothing else lit
    # batches are concatenated in order 1..5; the marker pixel carries 10·batch + i
    assert ds.train_images[:, 2, 31, 31].tolist() == [10, 11, 20, 21, 30, 31, 40, 41, 50, 51]
    assert ds.train_labels.tolist() == [(b + i) % 10 for b in range(1, 6) for i in range(2)]
    assert ds.test_labels.tolist() == [9, 8, 7]
    assert ds.classes[0] == "airplane" and ds.num_classes == 10
    assert ds.augmentation == Augmentation(pad=4, flip=True)
    assert ds.mean == (0.4914, 0.4822, 0.4465) and ds.std == (0.2023, 0.1994, 0.2010)


def test_cifar100_reads_fine_labels(tmp_path, skip_md5) -> None:
    _write_cifar100(tmp_path)
    ds = create_dataset("cifar100", root=tmp_path)
    assert ds.train_images.shape == (4, 3, 32, 32)
    assert ds.train_images[0, 1, 3, 4] == 100
    assert ds.train_labels.tolist() == [5, 99, 0, 42] and ds.test_labels.tolist() == [7, 3]
    assert ds.num_classes == 100 and ds.classes[99] == "fine_99"
    assert ds.mean == (0.5071, 0.4867, 0.4408) and ds.augmentation == Augmentation(pad=4, flip=True)


def test_cifar_missing_folder_says_where_and_how(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        create_dataset("cifar10", root=str(tmp_path), download=False)
    message = str(info.value)
    assert str(tmp_path) in message and "download" in message and "cifar-10-batches-py" in message
    assert "\n" not in message


def test_cifar_default_root_comes_from_env(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAKES_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError, match="CIFAR-100 not found under .*data"):
        create_dataset("cifar100")


def test_cifar_truncated_batch_fails_md5_with_clear_error(tmp_path) -> None:
    folder = _write_cifar10(tmp_path)
    raw = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetNotFoundError, match="corrupt") as info:
        create_dataset("cifar10", root=tmp_path)
    assert str(folder) in str(info.value) and "download" in str(info.value)


def test_cifar_unreadable_pickle_is_a_clear_error(tmp_path, skip_md5) -> None:
    folder = _write_cifar10(tmp_path)
    raw = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(raw[:100])
    with pytest.raises(DatasetNotFoundError, match="could not be read"):
        create_dataset("cifar10", root=tmp_path)


# --------------------------------------------------------------------------- image folders

COLOURS = {"apple": (255, 0, 0), "kiwi": (0, 255, 0), "plum": (0, 0, 255)}


def _write_class_images(folder: Path, per_class: int) -> None:
    for name, colour in COLOURS.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            suffix = ".PNG" if i == 0 else ".png"  # extensions are case-insensitive
            Image.new("RGB", (10, 14), colour).save(folder / name / f"{i}{suffix}")
        (folder / name / "notes.txt").write_text("not an image")


def _check_colours(images: torch.Tensor, labels: torch.Tensor) -> None:
    names = sorted(COLOURS)
    for image, label in zip(images, labels):
        expected = torch.tensor(COLOURS[names[label]], dtype=torch.uint8)[:, None, None]
        assert torch.equal(image, expected.expand_as(image))


def test_imagefolder_split_by_fraction(tmp_path) -> None:
    _write_class_images(tmp_path, per_class=5)
    ds = create_dataset("imagefolder", root=tmp_path, image_size=8, test_fraction=0.2, download=True)
    assert ds.classes == ["apple", "kiwi", "plum"]
    assert ds.train_images.shape == (12, 3, 8, 8) and ds.test_images.shape == (3, 3, 8, 8)
    assert ds.train_images.dtype == torch.uint8
    assert sorted(ds.test_labels.tolist()) == [0, 1, 2]  # stratified: one per class
    _check_colours(ds.train_images, ds.train_labels)
    _check_colours(ds.test_images, ds.test_labels)
    assert ds.augmentation == Augmentation(pad=1, flip=False)
    assert ds.mean == pytest.approx((1 / 3, 1 / 3, 1 / 3), abs=1e-4)
    again = create_dataset("imagefolder", root=tmp_path, image_size=8)
    assert torch.equal(again.test_labels, ds.test_labels)


def test_imagefolder_train_test_layout_and_grayscale(tmp_path) -> None:
    _write_class_images(tmp_path / "train", per_class=3)
    _write_class_images(tmp_path / "test", per_class=1)
    ds = create_dataset("imagefolder", root=str(tmp_path), image_size=16, flip=True)
    assert ds.classes == ["apple", "kiwi", "plum"]
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.test_labels.tolist() == [0, 1, 2]
    _check_colours(ds.train_images, ds.train_labels)
    assert ds.augmentation == Augmentation(pad=2, flip=True)
    gray = create_dataset("imagefolder", root=tmp_path, image_size=16, channels=1)
    assert gray.train_images.shape == (9, 1, 16, 16) and len(gray.mean) == 1


def test_imagefolder_test_classes_must_match_train(tmp_path) -> None:
    _write_class_images(tmp_path / "train", per_class=1)
    (tmp_path / "test" / "apple").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "test" / "apple" / "a.png")
    with pytest.raises(DatasetFormatError, match="same class folders"):
        create_dataset("imagefolder", root=tmp_path)


def test_imagefolder_missing_root(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        create_dataset("imagefolder", root=tmp_path / "nowhere")


def test_imagefolder_without_class_folders(tmp_path) -> None:
    Image.new("RGB", (4, 4)).save(tmp_path / "loose.png")
    with pytest.raises(DatasetFormatError, match="no class sub-folders"):
        create_dataset("imagefolder", root=tmp_path)


def test_imagefolder_empty_class_folder(tmp_path) -> None:
    _write_class_images(tmp_path, per_class=2)
    (tmp_path / "zucchini").mkdir()
    with pytest.raises(DatasetFormatError, match="zucchini has no images"):
        create_dataset("imagefolder", root=tmp_path)


def test_imagefolder_unreadable_image_names_the_file(tmp_path) -> None:
    _write_class_images(tmp_path, per_class=5)
    (tmp_path / "kiwi" / "broken.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(DatasetFormatError, match="broken.jpg"):
        create_dataset("imagefolder", root=tmp_path)


# --------------------------------------------------------------------------- forget sets


def test_forget_sets_are_nested_across_k() -> None:
    sets = [choose_forget_indices(1437, k, seed=3) for k in (16, 64, 256)]
    assert [s.numel() for s in sets] == [16, 64, 256]
    assert torch.equal(sets[1][:16], sets[0]) and torch.equal(sets[2][:64], sets[1])
    assert sets[2].unique().numel() == 256 and sets[2].dtype == torch.int64
    assert torch.equal(choose_forget_indices(1437, 64, seed=3), sets[1])
    assert not torch.equal(choose_forget_indices(1437, 64, seed=4), sets[1])


@pytest.mark.parametrize("k", [0, -5, 1437, 5000, 2.5, True])
def test_forget_k_is_validated(k) -> None:
    with pytest.raises(ValueError, match=f"k={k!r} is invalid"):
        choose_forget_indices(1437, k, seed=0)


def test_forget_k_message_names_the_range() -> None:
    with pytest.raises(ValueError, match="choose 1 ≤ k < 1437 \\(the number of training images\\)"):
        choose_forget_indices(1437, 0, seed=0)


def test_retain_is_the_sorted_complement() -> None:
    forget = choose_forget_indices(100, 10, seed=1)
    retain = retain_indices(100, forget)
    assert retain.numel() == 90 and torch.equal(retain, retain.sort().values)
    assert torch.equal(torch.cat([forget, retain]).sort().values, torch.arange(100))


def test_probe_excludes_forget_and_is_deterministic() -> None:
    forget = choose_forget_indices(200, 50, seed=2)
    probe = choose_probe_indices(200, forget, size=40, seed=2)
    assert probe.numel() == 40 and probe.unique().numel() == 40
    assert not torch.isin(probe, forget).any()
    assert torch.equal(probe, choose_probe_indices(200, forget, size=40, seed=2))
    assert not torch.equal(probe, choose_probe_indices(200, forget, size=40, seed=9))
    everything = choose_probe_indices(200, forget, size=1000, seed=2)
    assert torch.equal(everything.sort().values, retain_indices(200, forget))


# --------------------------------------------------------------------------- batches


def test_to_float_scales_uint8_once() -> None:
    images = torch.arange(8, dtype=torch.uint8).reshape(2, 1, 2, 2)
    x = to_float(images)
    assert x.dtype == torch.float32 and torch.allclose(x, images.float() / 255)
    assert to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="expected uint8"):
        to_float(x)


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` moved by (dy, dx) with zeros filling the uncovered border."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[:, max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = (
        image[:, max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    )
    return out


def _batch(n: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, 6, 7, generator=torch.Generator().manual_seed(0)) + 0.1


def test_augment_without_pad_or_flip_is_identity() -> None:
    x = _batch()
    assert torch.equal(augment_batch(x, Augmentation(0, False), torch.Generator().manual_seed(1)), x)


def test_augment_translates_each_image_by_a_zero_filled_shift() -> None:
    x, pad = _batch(), 2
    out = augment_batch(x, Augmentation(pad=pad, flip=False), torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    shifts = range(-pad, pad + 1)
    seen = set()
    for image, moved in zip(x, out):
        found = [(dy, dx) for dy in shifts for dx in shifts if torch.equal(moved, _shifted(image, dy, dx))]
        assert len(found) == 1
        seen.add(found[0])
    assert len(seen) > 5  # shifts really vary per image


def test_augment_flips_some_images() -> None:
    x = _batch()
    out = augment_batch(x, Augmentation(pad=0, flip=True), torch.Generator().manual_seed(1))
    flipped = [torch.equal(o, i.flip(-1)) for i, o in zip(x, out)]
    kept = [torch.equal(o, i) for i, o in zip(x, out)]
    assert all(f != k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_augment_is_deterministic_for_a_seeded_generator() -> None:
    x, aug = _batch(), Augmentation(pad=3, flip=True)
    first = augment_batch(x, aug, torch.Generator().manual_seed(5))
    assert torch.equal(first, augment_batch(x, aug, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, augment_batch(x, aug, torch.Generator().manual_seed(6)))
