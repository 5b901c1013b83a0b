"""The field's gold reference: a model trained from scratch without the forget set.

:func:`load_or_retrain` trains a fresh backbone on D_r = train \\ D_f with the preset's
pretraining recipe and a seed, and caches it (cache part ``retrained``) under the checkpoint's
config plus the SHA-256 of the sorted forget indices, so a grid of methods, stopping targets and
analyses over one forget set trains it once. The same function trains U-LiRA's shadow models
(:mod:`stakes_core.analysis.ulira`): other seeds, with or without the forget set.

Cost: a retrain is one pretraining on slightly fewer images: seconds on digits, hours on
CIFAR without a GPU. :func:`estimate_seconds` says what it will cost before it starts, from the
time the original checkpoint took to train. A retrain that is stopped (Ctrl-C, the dashboard's
Cancel, a failure) stores nothing: the entry is written only once training has finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from stakes_core.data import ImageDataset, retain_indices
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.infra.errors import StakesError
from stakes_core.models.pretrain import (
    PretrainConfig,
    Pretrained,
    checkpoint_config,
    model_with_weights,
    train_and_measure,
)

CACHE_PART = "retrained"


class RetrainCancelled(StakesError):
    """A retrain stopped before it finished (nothing was stored)."""


def forget_sha256(forget_idx: torch.Tensor | None) -> str:
    """The SHA-256 of the sorted forget indices (``"none"`` for a model trained on all of D)."""
    if forget_idx is None:
        return "none"
    values = torch.sort(forget_idx.to(torch.int64).flatten()).values
    return hashlib.sha256(values.numpy().tobytes()).hexdigest()


def without_forget_set(dataset: ImageDataset, forget_idx: torch.Tensor) -> ImageDataset:
    """``dataset`` with the forget images removed from its training split (the test split unchanged)."""
    keep = retain_indices(dataset.num_train, forget_idx)
    return dataclasses.replace(
        dataset, train_images=dataset.train_images[keep], train_labels=dataset.train_labels[keep]
    )


def retrain_key(config: PretrainConfig, fingerprint: dict[str, Any], forget_idx: torch.Tensor | None) -> dict[str, Any]:
    """What a retrained model is keyed by: the original checkpoint's config (dataset and recipe,
    including the seed) and the forget set that was left out."""
    return {"checkpoint": checkpoint_config(config, fingerprint), "without": forget_sha256(forget_idx), "format": 1}


def estimate_seconds(original_seconds: float, num_train: int, num_retained: int) -> float:
    """A retrain's cost on the machine that trained the original: its time scaled to D_r's size."""
    return original_seconds * num_retained / max(num_train, 1)


def load_or_retrain(
    config: PretrainConfig,
    dataset: ImageDataset,
    fingerprint: dict[str, Any],
    forget_idx: torch.Tensor | None,
    device: str = "cpu",
    progress: bool = True,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> Pretrained:
    """The model trained with ``config`` on ``dataset`` without ``forget_idx`` (on all of it for
    ``None``), from the cache or trained now and cached; ``source`` says which."""
    cache = TensorCache(CACHE_PART)
    full_config = retrain_key(config, fingerprint, forget_idx)
    key = config_key(full_config)
    with cache.lock(key):
        payload = cache.load_or_none(key)
        if payload is not None:
            model = model_with_weights(config, dataset, payload["state_dict"])
            return Pretrained(model, config, payload["test_acc"], payload["seconds"], source="cache")
        data = dataset if forget_idx is None else without_forget_set(dataset, forget_idx)
        trained = train_and_measure(config, data, device, progress, on_epoch)
        cache.save(key, {"state_dict": trained.model.state_dict(), "test_acc": trained.test_acc,
                         "seconds": trained.seconds}, full_config)
        return trained


@dataclass
class RetrainReference:
    """The retrain reference of one run: built on first use (by the ``retrain`` method, the
    ``stop_at="retrain"`` target or an analysis) and shared by every method of the run.
    ``cancel``, once set, stops a retrain in progress at its next epoch."""

    config: PretrainConfig
    dataset: ImageDataset
    fingerprint: dict[str, Any]
    forget_idx: torch.Tensor
    device: str = "cpu"
    original_seconds: float = float("nan")
    cancel: threading.Event = field(default_factory=threading.Event)
    _model: Pretrained | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def estimate(self) -> float:
        """Seconds a retrain costs on the machine that trained the original (NaN when unknown)."""
        return estimate_seconds(self.original_seconds, self.dataset.num_train,
                                self.dataset.num_train - self.forget_idx.numel())

    def cost_line(self) -> str:
        """What the retrain will cost, in one line (said before it starts)."""
        retained = self.dataset.num_train - self.forget_idx.numel()
        size = f"{self.config.epochs} epochs of {self.config.model} on {retained:,} images"
        if self.estimate != self.estimate:  # NaN
            return f"retrain: {size} (no timing of the original to estimate from)"
        took = f"the original took {self.original_seconds:.0f} s to train"
        return f"retrain: {size}, about {self.estimate:.0f} s ({took})"

    def cached(self) -> bool:
        """Whether the retrained model is already in the cache (so using it costs no training)."""
        key = config_key(retrain_key(self.config, self.fingerprint, self.forget_idx))
        return self._model is not None or TensorCache(CACHE_PART).exists(key)

    def model(self, progress: bool = True, on_epoch: Callable[[int, int, float], None] | None = None) -> Pretrained:
        """The retrained model (trained once per run, under a lock; later calls share it)."""
        def checked(done: int, total: int, loss: float) -> None:
            if self.cancel.is_set():
                raise RetrainCancelled(f"the retrain was cancelled after {done} of {total} epochs; nothing was stored")
            if on_epoch is not None:
                on_epoch(done, total, loss)

        with self._lock:
            if self._model is None:
                self._model = load_or_retrain(self.config, self.dataset, self.fingerprint, self.forget_idx,
                                              self.device, progress, checked)
            return self._model
