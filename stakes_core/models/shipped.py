"""Pretrained checkpoints shipped with the package, so every machine starts from the same model.

``assets/checkpoints/manifest.json`` lists each shipped checkpoint: its file (a plain
``state_dict``), the SHA-256 of that file, the checkpoint config it answers (the dataset's
identity plus the pretraining recipe, as :func:`~stakes_core.models.pretrain.checkpoint_config`
builds it), its test accuracy and how it was made. A config that equals an entry's config loads
that file, after its SHA-256 is verified; a file that does not verify is refused, never
replaced by a silent retrain. ``benchmarks/make_shipped_checkpoint.py`` writes both files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stakes_core.infra.assets import asset_path
from stakes_core.infra.cache import config_key, file_sha256
from stakes_core.infra.errors import StakesError

MANIFEST = ("checkpoints", "manifest.json")
"""Where the manifest lives among the shipped assets."""


class ShippedCheckpointError(StakesError, RuntimeError):
    """A shipped checkpoint or its manifest is damaged: the installation is, not the user's settings."""


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One entry of the manifest: a checkpoint file and what it answers."""

    name: str
    path: Path
    sha256: str
    config: dict[str, Any]
    test_acc: float
    seconds: float
    made: dict[str, Any]

    @property
    def key(self) -> str:
        """The cache key of the config it answers (equal to a self-trained checkpoint's key)."""
        return config_key(self.config)


def shipped_checkpoints() -> list[ShippedCheckpoint]:
    """Every checkpoint listed in the shipped manifest."""
    manifest_path = asset_path(*MANIFEST)
    try:
        manifest = json.loads(manifest_path.read_text())
        return [
            ShippedCheckpoint(
                entry["name"], manifest_path.parent / entry["file"], entry["sha256"], entry["config"],
                float(entry["test_acc"]), float(entry["made"]["seconds"]), entry["made"],
            )
            for entry in manifest["checkpoints"]
        ]
    except (ValueError, KeyError, TypeError) as error:
        raise ShippedCheckpointError(f"{manifest_path} is not a valid checkpoint manifest ({error!r})") from None


def find_shipped(checkpoint: dict[str, Any]) -> ShippedCheckpoint | None:
    """The shipped checkpoint made with exactly this checkpoint config, or ``None``."""
    key = config_key(checkpoint)
    return next((entry for entry in shipped_checkpoints() if entry.key == key), None)


def load_shipped(entry: ShippedCheckpoint) -> dict[str, torch.Tensor]:
    """The weights of ``entry``, after checking the file against the manifest's SHA-256."""
    if not entry.path.is_file():
        raise ShippedCheckpointError(f"shipped checkpoint {entry.path} is missing: reinstall stakes")
    if file_sha256(entry.path) != entry.sha256:
        raise ShippedCheckpointError(
            f"shipped checkpoint {entry.path} does not match its SHA-256 in the manifest: the file is damaged "
            "(restore it from the repository, or retrain with --from-scratch)"
        )
    return torch.load(entry.path, map_location="cpu", weights_only=True)
