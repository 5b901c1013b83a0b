"""What the cache holds and how to clear it: ``stakes cache list`` and ``stakes cache clear``.

The cache root (:func:`~stakes_core.infra.cache.cache_root`) holds one folder per part. An
entry is one top-level item of a part's folder, a :class:`~stakes_core.infra.cache.TensorCache`
payload and its JSON sidecar counting once. Only the known parts are ever removed: anything
else under the root (when ``$STAKES_CACHE_DIR`` points at a shared folder) is listed, never
deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from stakes_core.infra.cache import cache_root


@dataclass(frozen=True)
class CachePart:
    """A folder of the cache root and what the library keeps there."""

    name: str
    what: str


CACHE_PARTS = (
    CachePart("runs", "stored runs (the run store of the dashboard and the notebooks)"),
    CachePart("checkpoints", "pretrained backbones"),
    CachePart("retrained", "models retrained without a forget set (the retrain reference and U-LiRA's shadows)"),
    CachePart("datasets", "datasets converted to tensors (scikit-learn's digits)"),
    CachePart("anchors", "encoded anchors"),
    CachePart("descriptions", "edited descriptions (the dashboard's Stakes page)"),
    CachePart("embeddings", "2-D layouts (UMAP, PCA) of the Embedding analyses"),
    CachePart("locks", "empty lock files of the entries above (clear only when nothing runs)"),
)
PART_NAMES = tuple(part.name for part in CACHE_PARTS)


@dataclass(frozen=True)
class PartUsage:
    """How much one folder of the cache holds; ``exists`` is false for a folder not made yet."""

    name: str
    what: str
    path: Path
    exists: bool
    entries: int
    size: int


def folder_usage(path: Path) -> tuple[int, int]:
    """Entries (top-level items, a file's stem counted once) and bytes of every file under ``path``."""
    visible = [child for child in path.iterdir() if not child.name.startswith(".")]
    stems = {child.stem if child.is_file() else child.name for child in visible}
    size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file() and not file.is_symlink())
    return len(stems), size


def part_usage(part: CachePart, root: Path | None = None) -> PartUsage:
    """The usage of one part of the cache under ``root`` (default: the cache root)."""
    path = (root or cache_root()) / part.name
    entries, size = folder_usage(path) if path.is_dir() else (0, 0)
    return PartUsage(part.name, part.what, path, path.is_dir(), entries, size)


def cache_usage(root: Path | None = None) -> list[PartUsage]:
    """Every known part of the cache, then (as ``other``) whatever else is under the root."""
    root = root or cache_root()
    usage = [part_usage(part, root) for part in CACHE_PARTS]
    others = [child for child in root.iterdir() if child.name not in PART_NAMES] if root.is_dir() else []
    if others:
        sizes = [folder_usage(child)[1] if child.is_dir() else child.stat().st_size for child in others]
        usage.append(PartUsage("other", "not the library's (never cleared)", root, True, len(others), sum(sizes)))
    return usage


def clear_parts(names: list[str], root: Path | None = None) -> list[PartUsage]:
    """Remove the folders of the parts ``names`` (known part names) and return what each held."""
    by_name = {part.name: part for part in CACHE_PARTS}
    removed = []
    for name in names:
        usage = part_usage(by_name[name], root)
        if usage.exists:
            shutil.rmtree(usage.path)
        removed.append(usage)
    return removed


def human_size(size: int) -> str:
    """``size`` bytes in binary units: ``512 B``, ``4.0 KiB``, ``12.3 MiB``, ``1.1 GiB``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    exponent = 0
    while exponent < len(units) - 1 and size >= 1024 ** (exponent + 1):
        exponent += 1
    return f"{size} B" if exponent == 0 else f"{size / 1024**exponent:.1f} {units[exponent]}"
