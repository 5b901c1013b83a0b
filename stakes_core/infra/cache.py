"""The on-disk cache for checkpoints, encoded anchors and proxy sets.

Entries live under the user's cache directory (``platformdirs``), or ``$STAKES_CACHE_DIR``
when set. Each entry is written atomically (temporary file + ``os.replace``) next to a small
JSON sidecar that records the SHA-256 of the payload, so a truncated or tampered file is
detected on load instead of silently used, and a failed write never replaces a good entry.
A write that fails (a full disk, a path through a file) leaves nothing behind and raises a
one-line :class:`WriteError` naming the path; a damaged entry is either refused
(:meth:`TensorCache.load`) or removed and rebuilt (:meth:`TensorCache.load_or_none`).
Processes that build the same entry at once (the workers of a sweep) take its cross-process
lock first (:meth:`TensorCache.lock`), so one builds it and the others wait and load it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
import warnings
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator

import platformdirs
import torch

from stakes_core.infra.errors import StakesError
from stakes_core.infra.locks import file_lock


class CorruptCacheError(StakesError, RuntimeError):
    """A cache entry exists but its checksum or content is wrong."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}; delete it to rebuild")
        self.problem = problem


class CorruptCacheWarning(UserWarning):
    """A damaged cache entry was removed and is being rebuilt (:meth:`TensorCache.load_or_none`)."""


class WriteError(StakesError, OSError):
    """A file or folder could not be written: a full disk, a path through a file, no permission,
    a read-only file system. The message names what was being written and the problem."""

    def __init__(self, target: Path, problem: str) -> None:
        super().__init__(f"cannot write {target}: {problem}")
        self.target = target
        self.problem = problem


def blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or ``path`` itself) when it is not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def write_error(error: OSError, target: Path) -> WriteError:
    """``error``, raised while writing ``target``, as a one-line :class:`WriteError` naming
    ``target`` (an inner one, naming a file of ``target``, is named by ``target`` instead)."""
    if isinstance(error, WriteError):
        return WriteError(target, error.problem)
    problem = error.strerror or str(error)
    blocker = blocking_file(Path(error.filename)) if error.filename else None
    if error.errno == errno.ENOTDIR and blocker is not None:
        problem = f"{blocker} is a file, not a folder"
    elif error.filename and Path(error.filename) != target:
        problem = f"{problem} ({error.filename})"
    return WriteError(target, problem)


@contextmanager
def writing(target: Path) -> Iterator[None]:
    """Report an ``OSError`` raised inside the block as a :class:`WriteError` naming ``target``."""
    try:
        yield
    except OSError as error:
        raise write_error(error, target) from error


def check_writable_folder(folder: Path) -> None:
    """Raise :class:`WriteError` now when ``folder`` cannot be made or written into (a file on
    its path, no write permission), before work whose results would be written there."""
    blocker = blocking_file(folder)
    if blocker is not None:
        raise WriteError(folder, f"{blocker} is a file, not a folder")
    existing = next(candidate for candidate in (folder, *folder.parents) if candidate.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(folder, f"{os.strerror(errno.EACCES)} ({existing})")


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
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one; a
    failed write (a full disk, a path through a file) leaves nothing behind and raises
    :class:`WriteError` naming ``path``."""
    with writing(path):
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
        self.namespace = namespace
        self.root = root or cache_root()
        self.directory = self.root / namespace

    def paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.pt", self.directory / f"{key}.json"

    def lock(self, key: str) -> AbstractContextManager[float]:
        """The cross-process lock of the entry ``key``: hold it around checking, building and
        saving the entry, so concurrent builders build it once. Its file lives in the cache's
        ``locks`` folder (an empty file; a killed holder's lock is released by the OS)."""
        return file_lock(self.root / "locks" / self.namespace / f"{key}.lock")

    def exists(self, key: str) -> bool:
        payload, meta = self.paths(key)
        return payload.exists() and meta.exists()

    def save(self, key: str, payload: Any, config: dict[str, Any]) -> Path:
        """Store ``payload`` under ``key``; the sidecar is written last, so it marks completeness."""
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
        payload_path, meta_path = self.paths(key)
        meta = {"sha256": hashlib.sha256(data).hexdigest(), "config": config}
        with writing(payload_path):
            atomic_write_bytes(payload_path, data)
            try:
                atomic_write_bytes(meta_path, json.dumps(meta, indent=2, default=str).encode())
            except BaseException:
                payload_path.unlink(missing_ok=True)
                raise
        return payload_path

    def remove(self, key: str) -> None:
        """Delete the entry under ``key`` (sidecar first, so a half-removed entry is absent)."""
        payload_path, meta_path = self.paths(key)
        meta_path.unlink(missing_ok=True)
        payload_path.unlink(missing_ok=True)

    def load(self, key: str) -> Any:
        """Load the payload under ``key``; raise :class:`CorruptCacheError` if it does not verify."""
        payload_path, meta_path = self.paths(key)
        try:
            meta = json.loads(meta_path.read_text())
            expected = meta["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise CorruptCacheError(f"cache entry {meta_path} is unreadable ({error})") from None
        try:
            actual = file_sha256(payload_path)
        except OSError as error:
            raise CorruptCacheError(f"cache entry {payload_path} is unreadable ({error.strerror})") from None
        if actual != expected:
            raise CorruptCacheError(f"checksum mismatch for {payload_path}: the file is corrupt")
        try:
            return torch.load(payload_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for bad pickles
            raise CorruptCacheError(f"cannot load {payload_path}: {error}") from None

    def load_or_none(self, key: str) -> Any | None:
        """The payload under ``key``, or ``None`` when there is none or it is damaged. A damaged
        entry is removed with a one-line :class:`CorruptCacheWarning`, so the caller rebuilds it."""
        if not self.exists(key):
            return None
        try:
            return self.load(key)
        except CorruptCacheError as error:
            warnings.warn(f"{error.problem}; removed it and rebuilding", CorruptCacheWarning, stacklevel=2)
            self.remove(key)
            return None
