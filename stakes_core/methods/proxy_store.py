"""Proxy sets kept on disk, so runs that differ only in what they do with the set share one.

A proxy set (targeted L2-PGD examples of the forget set, :func:`build_proxy_set`) depends only on
the attacked model's weights, the forget images and labels, the attack's settings, the target
rule (and, for ``"semantic"`` targets, the anchors' similarity), the generator's seed, the device
and the precision. A study that runs StructGuard with ten kinds of anchors or three structure
spaces on one forget set therefore attacks the same model the same way ten times; this store
keys a set by the content of all of the above (weights and images hashed, not named), so the
second run loads what the first built, bit for bit. The seconds the build took are stored with
it and charged to every run that uses it, as the in-memory share does: a run's seconds stay
those of a request that ran alone.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict
from typing import Callable

import torch

from stakes_core.infra.accel import Acceleration
from stakes_core.infra.cache import TensorCache, config_key, state_sha256
from stakes_core.methods.attacks import PGDConfig

NAMESPACE = "proxy_sets"
"""The cache part that holds the sets (``<cache>/proxy_sets``)."""

FORMAT = 1
"""Part of every key: bump it when :func:`build_proxy_set`'s output for the same inputs changes."""


def tensor_sha256(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def proxy_key(
    attacked: torch.nn.Module,
    forget_images: torch.Tensor,
    forget_labels: torch.Tensor,
    n_adv: int,
    pgd: PGDConfig,
    target_rule: str,
    target_tau: float,
    target_similarity: torch.Tensor | None,
    seed: int,
    device: str,
    accel: Acceleration,
) -> tuple[str, dict[str, object]]:
    """The store key of one proxy set and the description saved beside it: every input that
    changes the set's bytes, by content."""
    description: dict[str, object] = {
        "format": FORMAT,
        "model_sha256": state_sha256(attacked.state_dict()),
        "forget_images_sha256": tensor_sha256(forget_images),
        "forget_labels_sha256": tensor_sha256(forget_labels),
        "n_adv": n_adv,
        "pgd": asdict(pgd),
        "target_rule": target_rule,
        "target_tau": target_tau if target_rule == "semantic" else None,
        "similarity_sha256": tensor_sha256(target_similarity) if target_similarity is not None else None,
        "seed": seed,
        "device": torch.device(device).type,
        "precision": accel.precision,
        "channels_last": accel.channels_last,
        "torch": torch.__version__,
    }
    return "proxy-" + config_key(description), description


def stored_proxy_set(
    key: str, description: dict[str, object], build: Callable[[], tuple[torch.Tensor, torch.Tensor]], device: str
) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """The set under ``key``, the seconds its build took and whether it was built now: loaded
    when stored (a damaged entry is rebuilt), else built by ``build`` and stored. A cross-process
    lock makes concurrent runs build it once."""
    cache = TensorCache(NAMESPACE)
    with cache.lock(key):
        stored = cache.load_or_none(key)
        if stored is not None:
            return stored["images"].to(device), stored["targets"].to(device), float(stored["seconds"]), False
        start = time.perf_counter()
        images, targets = build()
        seconds = time.perf_counter() - start
        payload = {"images": images.detach().cpu(), "targets": targets.detach().cpu(), "seconds": torch.tensor(seconds)}
        cache.save(key, payload, description)
    return images, targets, seconds, True
