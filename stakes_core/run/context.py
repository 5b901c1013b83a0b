"""The shared starting point of every method of a run: the dataset, the pretrained model (shipped or cached),
the anchors, the forget set, the probe set and the projection, built from an
:class:`~stakes_core.run.config.ExperimentConfig`. The analyses rebuild a saved run's context
the same way."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import TYPE_CHECKING, Any, Callable

import torch

from stakes_core.anchors import build_anchors, load_descriptions, match_classes
from stakes_core.anchors.variants import (
    check_anchor_source,
    permuted_anchors,
    prototype_anchors,
    random_anchors,
    rotated_anchors,
)
from stakes_core.data import ImageDataset, choose_forget_indices, choose_probe_indices, create_dataset
from stakes_core.infra.accel import Acceleration
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import UnlearnContext
from stakes_core.metrics.structure import StructureProbe, projection_for
from stakes_core.models.pretrain import PretrainConfig, Pretrained, load_or_pretrain
from stakes_core.models.retrain import RetrainReference
from stakes_core.run.config import ExperimentConfig

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule


def dataset_fingerprint(dataset: ImageDataset) -> dict[str, Any]:
    """What a checkpoint's dataset is, by content: two folders with equal options but other
    images get other checkpoints, and moving a dataset on disk keeps its checkpoint."""
    digest = hashlib.sha256()
    for tensor in (dataset.train_images, dataset.train_labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return {"name": dataset.name, "shape": list(dataset.image_shape), "train_sha256": digest.hexdigest()}


@functools.lru_cache(maxsize=2)
def _cached_dataset(options_json: str) -> tuple[ImageDataset, dict[str, Any]]:
    """A dataset and its fingerprint, loaded once per process for a grid of (k, seed) runs."""
    options = json.loads(options_json)
    dataset = create_dataset(options.pop("name"), **options)
    return dataset, dataset_fingerprint(dataset)


def dataset_with_fingerprint(config: ExperimentConfig) -> tuple[ImageDataset, dict[str, Any]]:
    """The dataset of ``config`` and its :func:`dataset_fingerprint` (loaded once per process)."""
    return _cached_dataset(json.dumps(config.dataset, sort_keys=True))


def load_dataset(config: ExperimentConfig) -> ImageDataset:
    """The dataset of ``config`` (loaded once per process)."""
    return dataset_with_fingerprint(config)[0]


def pretrained_model(
    config: ExperimentConfig, progress: bool = True, on_epoch: Callable[[int, int, float], None] | None = None
) -> Pretrained:
    """The pretrained model of ``config``: the shipped checkpoint, or with ``config.from_scratch``
    the one trained on this machine (cached; trained first when there is none);
    ``on_epoch(done, total, loss)`` reports training progress."""
    dataset, fingerprint = dataset_with_fingerprint(config)
    return load_or_pretrain(
        PretrainConfig(**config.pretrain), dataset, fingerprint, config.device, progress, on_epoch=on_epoch,
        from_scratch=config.from_scratch,
    )


def prepare_context(config: ExperimentConfig, progress: bool = True) -> tuple[UnlearnContext, Pretrained]:
    """Load the dataset, pretrained model (shipped or cached) and anchors (cached) of ``config`` and build
    the shared context every method of the run starts from."""
    dataset = load_dataset(config)
    if not 0 < config.k < dataset.num_train:
        raise ConfigError(
            f"k={config.k} is invalid: choose 1 ≤ k < {dataset.num_train} (the number of training images)"
        )
    pretrained = pretrained_model(config, progress)
    descriptions = match_classes(load_descriptions(config.descriptions), dataset.classes)
    device = config.device
    original = pretrained.model.to(device).eval()
    for parameter in original.parameters():
        parameter.requires_grad_(False)
    anchors = source_anchors(config, descriptions, original, dataset).to(device)
    forget_idx = choose_forget_indices(dataset.num_train, config.k, config.seed)
    probe_idx = choose_probe_indices(dataset.num_train, forget_idx, config.probe_size, config.seed)
    projection = projection_for(original.feature_dim, anchors.shape[1], seed=config.seed)
    if projection is not None:
        projection = projection.to(device)
    probe = StructureProbe(dataset.train_images[probe_idx], anchors, original, projection, device)
    reference = RetrainReference(
        PretrainConfig(**config.pretrain), dataset, dataset_with_fingerprint(config)[1], forget_idx, device,
        pretrained.seconds,
    )
    context = UnlearnContext(
        original, dataset, forget_idx, anchors, probe, projection, config.seed, device, progress, config.record_every,
        probe_idx, accel=Acceleration(config.precision, config.channels_last), retrain=reference,
    )
    return context, pretrained


def source_anchors(
    config: ExperimentConfig, descriptions: dict[str, list[str]], original: BackboneModule, dataset: ImageDataset
) -> torch.Tensor:
    """The anchors of ``config.anchor_source`` (:mod:`stakes_core.anchors.variants`): the text
    anchors, one of their seeded controls, or the visual prototypes."""
    source = check_anchor_source(config.anchor_source)
    if source == "prototypes":
        images, labels = dataset.train_images, dataset.train_labels
        return prototype_anchors(original, images, labels, dataset.num_classes, config.device)
    anchors = build_anchors(descriptions, config.encoder)
    if source == "random":
        return random_anchors(anchors.shape[0], anchors.shape[1], config.seed)
    controls = {"permuted": permuted_anchors, "rotated": rotated_anchors}
    return controls[source](anchors, config.seed) if source in controls else anchors
