"""The on-disk cache for checkpoints, encoded anchors and proxy sets.

Entries live under the user's cache directory (``platformdirs``), or ``$STAKES_CACHE_DIR``
when set. Each entry is written atomically (temporary file + ``os.replace``) next to a small
JSON sidecar that records the SHA-256 of the payload, so a truncated or tampered file is
detected on load instead of silently used, and a failed write never replaces a good entry.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import platformdirs
import torch

from stakes_core.infra.errors import StakesError


class CorruptCacheError(StakesError, RuntimeError):
    """A cache entry exists but its checksum or content is wrong."""


def cache_root() -> Path:
    """The directory that holds every cache entry of this project."""
    root = os.environ.get("STAKES_CACHE_DIR") or platformdirs.user_cache_dir("stakes")
    return Path(root)


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config; equal configs give equal keys."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's weights by content (names, shapes and values, in key order)."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TensorCache:
    """A namespace of the cache holding ``torch.save`` payloads of tensors and plain data.

    ``save`` writes ``<key>.pt`` and ``<key>.json`` (checksum + the config that produced it);
    ``load`` verifies the checksum and loads with ``weights_only=True``.
    """

    def __init__(self, namespace: str, root: Path | None = None) -> None:
        self.directory = (root or cache_root()) / namespace

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.pt", self.directory / f"{key}.json"

    def exists(self, key: str) -> bool:
        payload, meta = self.paths(key)
        return payload.exists() and meta.exists()

    def save(self, key: str, payload: Any, config: dict[str, Any]) -> Path:
        """Store ``payload`` under ``key``; the sidecar is written last, so it marks completeness."""
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        payload_path, meta_path = self.paths(key)
        atomic_write_bytes(payload_path, data)
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "config": config}
        atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=str).encode())
        return payload_path

    def load(self, key: str) -> Any:
        """Load the payload under ``key``; raise :class:`CorruptCacheError` if it does not verify."""
        payload_path, meta_path = self.paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            expected = meta["sha256"]
        except (OSError, ValueError, KeyError) as error:
            raise CorruptCacheError(f"cache entry {meta_path} is unreadable ({error}); delete it to rebuild") from None
        if file_sha256(payload_path) != expected:
            raise CorruptCacheError(
                f"checksum mismatch for {payload_path}: the file is corrupt; delete it to rebuild"
            )
        try:
            return torch.load(payload_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for bad pickles
            raise CorruptCacheError(f"cannot load {payload_path}: {error}") from None
