"""The synthetic shapes dataset: seeded drawing, balanced classes whose pixels carry their attributes,
option checks, and the assets that go with it (descriptions, preset, shipped checkpoint)."""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch

from stakes_core.anchors import build_anchors, load_descriptions, match_classes
from stakes_core.data import create_dataset, list_datasets
from stakes_core.data.shapes import CLASSES, COLOURS, FILLS, SHAPES, draw_splits
from stakes_core.infra.errors import ConfigError
from stakes_core.metrics.accuracy import accuracy
from stakes_core.models.pretrain import PretrainConfig, checkpoint_config, model_with_weights
from stakes_core.models.shipped import find_shipped, load_shipped
from stakes_core.run.context import dataset_fingerprint
from stakes_core.run.presets import load_preset

SMALL = {"train_per_class": 20, "test_per_class": 5}


@pytest.fixture(scope="module")
def small():
    return create_dataset("shapes", root="/ignored", download=False, **SMALL)


def test_shapes_is_registered_with_twelve_attribute_classes(small) -> None:
    assert "shapes" in list_datasets()
    assert small.classes == CLASSES and small.num_classes == 12
    assert CLASSES[0] == "red_filled_circle" and CLASSES[-1] == "blue_outline_triangle"
    assert {tuple(name.split("_")) for name in CLASSES} == set(itertools.product(COLOURS, FILLS, SHAPES))


def test_shapes_tensors_and_balance(small) -> None:
    assert small.train_images.shape == (240, 3, 32, 32) and small.test_images.shape == (60, 3, 32, 32)
    assert small.train_images.dtype == torch.uint8 and small.test_images.dtype == torch.uint8
    assert small.train_labels.dtype == torch.int64 and small.test_labels.dtype == torch.int64
    assert torch.equal(torch.bincount(small.train_labels, minlength=12), torch.full((12,), 20))
    assert torch.equal(torch.bincount(small.test_labels, minlength=12), torch.full((12,), 5))
    assert len(small.mean) == 3 and all(0.0 < s < 1.0 for s in small.std)
    assert small.augmentation.flip


def test_same_seed_same_images_other_seed_other_images(small) -> None:
    drawn = draw_splits(32, 20, 5, seed=0)  # drawn afresh, not from the cache
    assert torch.equal(drawn["train_images"], small.train_images)
    assert torch.equal(drawn["test_labels"], small.test_labels)
    other = draw_splits(32, 20, 5, seed=1)
    assert not torch.equal(other["train_images"], small.train_images)
    assert not torch.equal(drawn["train_images"][:60], drawn["test_images"])  # the splits are separate draws


def coloured_pixels(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the pixels clearly redder and clearly bluer than the greyish background."""
    red_minus_blue = images[:, 0].float() - images[:, 2].float()
    return (red_minus_blue > 80).flatten(1).sum(1), (red_minus_blue < -80).flatten(1).sum(1)


def test_each_class_shows_its_colour_and_fill(small) -> None:
    reds, blues = coloured_pixels(small.train_images)
    own_colour = {}
    for label, name in enumerate(CLASSES):
        rows = small.train_labels == label
        colour = name.split("_")[0]
        red, blue = reds[rows].float().mean(), blues[rows].float().mean()
        assert (red > 4 * blue) if colour == "red" else (blue > 4 * red), name
        own_colour[name] = float(red if colour == "red" else blue)
    for colour, shape in itertools.product(COLOURS, SHAPES):
        assert own_colour[f"{colour}_filled_{shape}"] > 1.5 * own_colour[f"{colour}_outline_{shape}"]


def test_larger_images_are_drawn_too() -> None:
    drawn = draw_splits(48, 2, 1, seed=0)
    assert drawn["train_images"].shape == (24, 3, 48, 48)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"image_size": 8}, "image_size=8 is too small"),
        ({"train_per_class": 0}, "train_per_class=0 is invalid"),
        ({"test_per_class": -3}, "test_per_class=-3 is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
    ],
)
def test_bad_options_are_one_line_config_errors(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        create_dataset("shapes", **options)
    assert "\n" not in str(error.value)


def test_descriptions_state_each_class_attributes() -> None:
    descriptions = load_descriptions("shapes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a name mismatch would warn
        assert list(match_classes(descriptions, CLASSES)) == CLASSES
    for name, attributes in descriptions.items():
        colour, fill, shape = name.split("_")
        assert 4 <= len(attributes) <= 6
        assert all(word in attributes[0] for word in (colour, fill, shape)), name


def test_minilm_anchors_follow_the_shared_attributes() -> None:
    anchors = torch.nn.functional.normalize(build_anchors(load_descriptions("shapes"), "minilm").float(), dim=1)
    similarity = anchors @ anchors.T
    by_shared: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for first, second in itertools.combinations(range(len(CLASSES)), 2):
        shared = sum(a == b for a, b in zip(CLASSES[first].split("_"), CLASSES[second].split("_")))
        by_shared[shared].append(float(similarity[first, second]))
    means = [sum(values) / len(values) for values in by_shared.values()]
    assert means[0] < means[1] < means[2]
    index = CLASSES.index
    red_circle = similarity[index("red_filled_circle")]
    assert red_circle[index("red_outline_circle")] > red_circle[index("blue_outline_triangle")]


def test_the_preset_and_its_shipped_checkpoint() -> None:
    preset = load_preset("shapes")
    assert preset["dataset"]["name"] == "shapes" and preset["k"] == [16, 64, 128, 256]
    assert preset["anchors"] == {"encoder": "minilm", "descriptions": "shapes"}
    assert {"neggrad", "adv", "l2ul", "structguard"} <= set(preset["methods"])
    options = dict(preset["dataset"])
    dataset = create_dataset(options.pop("name"), **options)
    assert dataset.num_train >= 10_000 and dataset.image_shape == (3, 32, 32)
    recipe = PretrainConfig(**preset["pretrain"])
    entry = find_shipped(checkpoint_config(recipe, dataset_fingerprint(dataset)))
    assert entry is not None and entry.name == "shapes"  # the drawing reproduces the shipped training set
    assert entry.path.stat().st_size < 3_000_000 and entry.test_acc >= 90.0
    model = model_with_weights(recipe, dataset, load_shipped(entry))
    assert accuracy(model, dataset.test_images, dataset.test_labels) == entry.test_acc
