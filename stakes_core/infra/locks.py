"""Cross-process file locks, so that workers of a sweep (other processes, other machines on a
shared file system) that need the same cache entry or run build it once and the rest wait.

A lock is an ``flock`` on a small, empty file (``filelock``). The operating system releases
it when the process that holds it exits, however it exits: a worker killed with SIGKILL
leaves no lock held, only the empty file. The lock only orders the work; every entry is still
written to a temporary file and renamed into place (:mod:`stakes_core.infra.cache`), so a
reader that does not lock never sees half an entry.

The lock files of cache entries live in the cache's ``locks`` folder
(:meth:`~stakes_core.infra.cache.TensorCache.lock`), those of the run store in its hidden
``.sweep/locks`` folder. Locks of one process are not re-entrant across two :func:`file_lock`
calls on the same file: take each lock once, around the whole check-build-save of one entry.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import filelock

from stakes_core.infra.errors import StakesError


class LockError(StakesError, OSError):
    """A lock file cannot be made (a read-only or full file system, no permission)."""


class LockTimeoutError(StakesError, TimeoutError):
    """A lock was not free within the time allowed (another process holds it)."""


@contextmanager
def file_lock(path: Path, timeout: float | None = None) -> Iterator[float]:
    """Hold the cross-process lock of the lock file ``path`` inside the block; yields the
    seconds spent waiting for it. ``timeout`` (seconds; ``None`` waits as long as it takes)
    raises :class:`LockTimeoutError` when another process keeps the lock longer."""
    lock = filelock.FileLock(str(path), timeout=-1 if timeout is None else timeout, thread_local=False)
    start = time.perf_counter()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except filelock.Timeout:
        raise LockTimeoutError(f"{path} is held by another process or thread (waited {timeout:g} s)") from None
    except OSError as error:
        raise LockError(f"cannot lock {path}: {error.strerror or error}") from None
    try:
        yield time.perf_counter() - start
    finally:
        lock.release()
