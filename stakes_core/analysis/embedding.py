"""Embedding structure before and after unlearning, in two dimensions that are comparable.

The same instances (forgotten, retained and test) are embedded with the original model's
backbone ``g₀`` and with the unlearned backbone ``g``; their unit-normalised features are laid
out in 2-D so that a point moves between the two panels only because the model moved it:

- ``"umap"`` (default): fit UMAP on the *before* features and place both panels with the same
  fitted ``transform``; an unchanged model gives identical panels (see ``docs/embedding_choice.md``
  for how this compares with AlignedUMAP).
- ``"aligned-umap"``: ``umap.AlignedUMAP`` on the two slices, instance i related to itself.
- ``"pca"``: the first two principal axes of the *before* features, applied to both (fast
  fallback, linear, no fitting noise).

Layouts are cached by the weights of both models, the instances and the parameters. ``umap``
is imported only when a UMAP layout is computed: its first import compiles for ~30 s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stakes_core.analysis.features import embed_images
from stakes_core.analysis.runs import AnalysisError, Instances, LoadedRun
from stakes_core.infra.accel import torch_threads
from stakes_core.infra.cache import TensorCache, config_key, file_sha256

EMBEDDING_ALGORITHMS = ("umap", "aligned-umap", "pca")


@dataclass
class EmbeddingView:
    """2-D positions of the same instances under the original (``before``) and unlearned model."""

    method: str
    algorithm: str
    instances: Instances
    labels: list[int]
    classes: list[str]
    before: np.ndarray
    after: np.ndarray
    seconds: float
    from_cache: bool

    @property
    def displacement(self) -> np.ndarray:
        """How far each instance moved between the panels, in layout units."""
        return np.linalg.norm(self.after - self.before, axis=1)


def layout_pair(
    before: torch.Tensor, after: torch.Tensor, algorithm: str = "umap", seed: int = 0,
    n_neighbors: int = 15, min_dist: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Comparable 2-D layouts of two feature matrices whose rows are the same instances."""
    if algorithm not in EMBEDDING_ALGORITHMS:
        raise AnalysisError(f"embedding algorithm '{algorithm}' is not one of {', '.join(EMBEDDING_ALGORITHMS)}")
    if before.shape != after.shape:
        raise AnalysisError(f"before {tuple(before.shape)} and after {tuple(after.shape)} features must match")
    if algorithm != "pca" and before.shape[0] <= n_neighbors + 1:
        raise AnalysisError(f"UMAP with n_neighbors={n_neighbors} needs more than {n_neighbors + 1} instances")
    first = F.normalize(before.float(), dim=1).numpy()
    second = F.normalize(after.float(), dim=1).numpy()
    if algorithm == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(first)
        return pca.transform(first), pca.transform(second)
    # numba's OpenMP start-up changes torch's thread count, which slows every later model call
    with torch_threads():
        import umap  # slow first import: keep it here

        options = dict(n_neighbors=n_neighbors, min_dist=min_dist, random_state=seed)
        if algorithm == "umap":
            reducer = umap.UMAP(**options, n_jobs=1).fit(first)
            return reducer.transform(first), reducer.transform(second)
        aligned = umap.AlignedUMAP(**options).fit([first, second], relations=[{i: i for i in range(len(first))}])
        return np.asarray(aligned.embeddings_[0]), np.asarray(aligned.embeddings_[1])


def warm_up_umap() -> float:
    """Fit and apply UMAP once on 64 random points so numba compiles its functions now (about
    20 s the first time in a process) rather than when someone waits for a layout; returns
    the seconds it took. The dashboard runs it in a background thread at start-up."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(64, 8, generator=generator)
    layout_pair(points, points + 0.01 * torch.randn(64, 8, generator=generator), "umap")
    return time.perf_counter() - start


def embedding_view(
    run: LoadedRun, method: str, instances: Instances, algorithm: str = "umap", seed: int = 0,
    n_neighbors: int = 15, min_dist: float = 0.1, use_cache: bool = True,
) -> EmbeddingView:
    """Backbone features of ``instances`` before and after ``method``, laid out in 2-D (cached)."""
    model = run.model(method)
    config = {
        "original": run.original_sha256,
        "unlearned": file_sha256(run.directory / "models" / f"{method}.pt"),
        "kinds": list(instances.kinds), "indices": list(instances.indices), "algorithm": algorithm, "seed": seed,
        "n_neighbors": n_neighbors, "min_dist": min_dist, "format": 1,
    }
    cache, key = TensorCache("embeddings"), config_key(config)
    start = time.perf_counter()
    payload = cache.load_or_none(key) if use_cache else None  # a damaged entry is warned of and recomputed
    if payload is not None:
        before, after, from_cache = payload["before"].numpy(), payload["after"].numpy(), True
    else:
        images = run.images(instances)
        original = embed_images(run.context.original, images, "backbone", device=run.device)
        unlearned = embed_images(model, images, "backbone", device=run.device)
        before, after = layout_pair(original, unlearned, algorithm, seed, n_neighbors, min_dist)
        from_cache = False
        if use_cache:
            cache.save(key, {"before": torch.from_numpy(before), "after": torch.from_numpy(after)}, config)
    return EmbeddingView(
        method, algorithm, instances, run.labels(instances).tolist(), list(run.dataset.classes),
        np.asarray(before, dtype=np.float32), np.asarray(after, dtype=np.float32), time.perf_counter() - start,
        from_cache,
    )
