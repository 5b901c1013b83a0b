"""Pretraining with the L2UL recipe, and a checkpoint cache keyed by the full config.

Recipe (L2UL's ``main_pretrain_*`` scripts): SGD lr 0.01, momentum 0.9, weight decay 5e-4,
cosine annealing over the epochs, batch 128, random translation (+ flips where the dataset
allows them). A config with a shipped checkpoint (:mod:`stakes_core.models.shipped`) loads it, so
every machine starts from the same model; ``from_scratch=True`` trains here instead. Trained
weights are cached under the user's cache directory; a cached checkpoint whose checksum does not
verify is never used: it is reported in one line, removed and trained again. Processes that
need the same checkpoint at once (the workers of a sweep) train it once: the first holds the
entry's cross-process lock while it trains, the others wait for it and load the result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from tqdm.auto import tqdm

from stakes_core.data import ImageDataset, augment_batch, to_float
from stakes_core.infra.accel import DEFAULT, Acceleration, synchronize
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.infra.errors import ConfigError
from stakes_core.metrics.accuracy import accuracy
from stakes_core.models import create_model
from stakes_core.models.shipped import find_shipped, load_shipped

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule


@dataclass
class PretrainConfig:
    """Everything that determines a pretrained checkpoint (and so its cache key)."""

    model: str
    epochs: int
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0


SOURCES = ("shipped", "cache", "trained")
"""Where a pretrained model came from: the checkpoint shipped with the package, this machine's
cache (trained here before) or training just now."""


@dataclass
class Pretrained:
    """A pretrained model with how it was made and how good it is; ``source`` is one of
    :data:`SOURCES` and ``seconds`` the training time (on the machine that trained it)."""

    model: BackboneModule
    config: PretrainConfig
    test_acc: float
    seconds: float
    source: str

    @property
    def origin(self) -> str:
        """Where the model came from, in words (the CLI's and the dashboard's line)."""
        return {
            "shipped": "the shipped checkpoint, SHA-256 verified",
            "cache": "trained on this machine before, from the cache",
            "trained": f"trained here in {self.seconds:.1f} s",
        }[self.source]


def build_model(config: PretrainConfig, dataset: ImageDataset) -> BackboneModule:
    """A randomly initialised backbone shaped for ``dataset``."""
    return create_model(
        config.model, dataset.num_classes, dataset.image_shape[0], dataset.mean, dataset.std, **config.model_kwargs
    )


def train_model(
    config: PretrainConfig,
    dataset: ImageDataset,
    device: str = "cpu",
    progress: bool = True,
    accel: Acceleration = DEFAULT,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> tuple[BackboneModule, float]:
    """Train a fresh model with the recipe; returns it (eval mode, on CPU) and the seconds spent.

    The uint8 training set is moved to ``device`` once and batches are scaled and augmented
    there. ``accel`` (bf16 autocast, channels_last) is for throughput measurements; cached
    checkpoints (:func:`load_or_pretrain`) are always trained in fp32. ``on_epoch(done, total,
    loss)`` is called after every epoch (the dashboard's progress bar)."""
    if config.epochs < 1:
        raise ConfigError(f"epochs must be ≥ 1, got {config.epochs}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = accel.model(build_model(config, dataset).to(device))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    images, labels = dataset.train_images.to(device), dataset.train_labels.to(device)
    bar = tqdm(range(config.epochs), desc=f"pretrain {config.model} on {dataset.name}", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(images.shape[0], generator=generator)
        for begin in range(0, order.numel(), config.batch_size):
            idx = order[begin : begin + config.batch_size].to(device)
            x = accel.images(augment_batch(to_float(images[idx]), dataset.augmentation, generator))
            with accel.autocast(device):
                loss = loss_fn(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, config.epochs, loss.item())
    model.eval()
    synchronize(device)
    seconds = time.perf_counter() - start
    return model.cpu().to(memory_format=torch.contiguous_format), seconds


def checkpoint_config(config: PretrainConfig, dataset_config: dict[str, Any]) -> dict[str, Any]:
    """The config a checkpoint is keyed by: the dataset's identity plus the recipe."""
    return {"dataset": dataset_config, "pretrain": asdict(config), "format": 1}


def load_or_pretrain(
    config: PretrainConfig,
    dataset: ImageDataset,
    dataset_config: dict[str, Any],
    device: str = "cpu",
    progress: bool = True,
    use_cache: bool = True,
    on_epoch: Callable[[int, int, float], None] | None = None,
    from_scratch: bool = False,
) -> Pretrained:
    """The shipped checkpoint of this config when there is one (unless ``from_scratch``), else the
    cached checkpoint trained here before, else a model trained now (and cached).

    A shipped file that fails its SHA-256 raises
    :class:`~stakes_core.models.shipped.ShippedCheckpointError`; a corrupt cache entry is
    reported (:class:`~stakes_core.infra.cache.CorruptCacheWarning`), removed and trained again.
    """
    full_config = checkpoint_config(config, dataset_config)
    shipped = None if from_scratch else find_shipped(full_config)
    if shipped is not None:
        return Pretrained(model_with_weights(config, dataset, load_shipped(shipped)), config, shipped.test_acc,
                          shipped.seconds, source="shipped")
    if not use_cache:
        return train_and_measure(config, dataset, device, progress, on_epoch)
    cache = TensorCache("checkpoints")
    key = config_key(full_config)
    with cache.lock(key):  # workers that need this checkpoint at once: one trains it, the others wait and load it
        payload = cache.load_or_none(key)  # a damaged entry is warned of, removed, retrained
        if payload is not None:
            model = model_with_weights(config, dataset, payload["state_dict"])
            return Pretrained(model, config, payload["test_acc"], payload["seconds"], source="cache")
        pretrained = train_and_measure(config, dataset, device, progress, on_epoch)
        state = {"state_dict": pretrained.model.state_dict(), "test_acc": pretrained.test_acc,
                 "seconds": pretrained.seconds}
        cache.save(key, state, full_config)
        return pretrained


def train_and_measure(
    config: PretrainConfig,
    dataset: ImageDataset,
    device: str,
    progress: bool,
    on_epoch: Callable[[int, int, float], None] | None,
) -> Pretrained:
    """A model trained now with the recipe, its test accuracy measured on ``device``."""
    model, seconds = train_model(config, dataset, device, progress, on_epoch=on_epoch)
    test_acc = accuracy(model.to(device), dataset.test_images, dataset.test_labels, device=device)
    model.cpu()
    return Pretrained(model, config, test_acc, seconds, source="trained")


def model_with_weights(config: PretrainConfig, dataset: ImageDataset, state: dict[str, torch.Tensor]) -> BackboneModule:
    """A backbone for ``dataset`` holding ``state``, in eval mode."""
    model = build_model(config, dataset)
    model.load_state_dict(state)
    model.eval()
    return model
