"""Image-to-image retrieval before and after unlearning (paper Fig. 5; its protocol is not
published, so this one is stated in full):

- **Gallery**: the retained training images ``D_r = train \\ D_f`` (all of them, or a seeded
  subset of ``gallery_size``).
- **Queries**, reported per group: the forgotten images (all k), the run's retained probe
  images, and a seeded subset of ``test_queries`` test images. A query that is itself in the
  gallery (a retained query) is removed from its own ranking.
- **Feature**: ``"backbone"`` (default) ``g(x)``, the embedding every method shares, or
  ``"deployed"``, the input of the deployed head (``p(g(x))`` for StructGuard).
- **Similarity**: cosine. **Relevant**: a gallery image of the query's true class.
- **Predictions**: each model's predicted class of every query and of each of its top-k results,
  so the grid can show what the model now calls an image beside its true class.
- **R@k**: the percentage of queries with at least one relevant image among the top k
  (Recall@k of metric learning). **mAP**: the mean over queries of average precision over the
  whole ranked gallery, in percent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stakes_core.analysis.features import embed_images
from stakes_core.analysis.runs import INSTANCE_KINDS, AnalysisError, LoadedRun
from stakes_core.data import retain_indices, to_float
from stakes_core.metrics.accuracy import predict

RECALL_AT = (1, 5, 10)


def rank_gallery(
    queries: torch.Tensor, gallery: torch.Tensor, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gallery positions sorted by cosine similarity per query (Q × G) and the sorted scores.
    ``exclude[q]`` (a gallery position, or −1) is ranked last with score −inf."""
    scores = F.normalize(queries.float(), dim=1) @ F.normalize(gallery.float(), dim=1).T
    if exclude is not None:
        rows = (exclude >= 0).nonzero().flatten()
        scores[rows, exclude[rows]] = float("-inf")
    sorted_scores, order = scores.sort(dim=1, descending=True, stable=True)
    return order, sorted_scores


def retrieval_metrics(
    ranked_labels: torch.Tensor, query_labels: torch.Tensor, valid: torch.Tensor | None = None,
    recall_at: Sequence[int] = RECALL_AT,
) -> dict[str, float]:
    """R@k and mAP (percent) from gallery labels in ranked order (Q × G); ``valid`` masks
    ranked positions that do not count (an excluded self-match)."""
    relevant = (ranked_labels == query_labels[:, None]).double()
    if valid is not None:
        relevant = relevant * valid.double()
    if relevant.shape[0] == 0:
        raise AnalysisError("retrieval needs at least one query")
    metrics = {f"R@{k}": 100.0 * (relevant[:, :k].sum(1) > 0).float().mean().item() for k in recall_at}
    hits = relevant.cumsum(1)
    precision = hits / torch.arange(1, relevant.shape[1] + 1, device=relevant.device)
    total = relevant.sum(1)
    average_precision = (precision * relevant).sum(1) / total.clamp(min=1)
    metrics["mAP"] = 100.0 * average_precision[total > 0].mean().item() if (total > 0).any() else 0.0
    return metrics


@dataclass
class RetrievalView:
    """Metrics per model and query group, the top-``top`` gallery items of each query, and each
    model's predicted class of every query (``query_predictions``) and of its top items
    (``top_predictions``, shaped like ``top``)."""

    feature: str
    metrics: dict[str, dict[str, dict[str, float]]]
    query_kinds: list[str]
    query_indices: list[int]
    query_labels: list[int]
    gallery_indices: list[int]
    gallery_labels: list[int]
    top: dict[str, list[list[int]]]
    seconds: float
    query_predictions: dict[str, list[int]] = field(default_factory=dict)
    top_predictions: dict[str, list[list[int]]] = field(default_factory=dict)

    def table(self) -> list[dict[str, float | str]]:
        """One row per (model, query group): the metrics, ready for a CSV or a dataframe."""
        return [{"model": model, "queries": group, **values}
                for model, groups in self.metrics.items() for group, values in groups.items()]


def retrieval_view(
    run: LoadedRun, methods: Sequence[str] | None = None, feature: str = "backbone", test_queries: int = 300,
    gallery_size: int | None = None, top: int = 5, seed: int = 0,
) -> RetrievalView:
    """Retrieval metrics of the original model and each method, per query group (see module doc)."""
    start = time.perf_counter()
    dataset = run.dataset
    generator = torch.Generator().manual_seed(seed)
    gallery = retain_indices(dataset.num_train, torch.tensor(run.forget_indices))
    if gallery_size is not None and gallery_size < gallery.numel():
        gallery = gallery[torch.randperm(gallery.numel(), generator=generator)[:gallery_size]].sort().values
    test = torch.randperm(int(dataset.test_labels.numel()), generator=generator)[:test_queries].sort().values
    groups = {"forget": run.forget_indices, "retained": run.retained_indices, "test": test.tolist()}
    kinds = [kind for kind in INSTANCE_KINDS for _ in groups[kind]]
    indices = [i for kind in INSTANCE_KINDS for i in groups[kind]]
    query_images = torch.cat([dataset.train_images[groups["forget"] + groups["retained"]],
                              dataset.test_images[groups["test"]]])
    query_labels = torch.cat([dataset.train_labels[groups["forget"] + groups["retained"]],
                              dataset.test_labels[groups["test"]]])
    position = {int(g): p for p, g in enumerate(gallery.tolist())}
    exclude = torch.tensor([position.get(i, -1) if kind == "retained" else -1 for kind, i in zip(kinds, indices)])
    gallery_images = dataset.train_images[gallery]
    gallery_labels = dataset.train_labels[gallery]
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    tops: dict[str, list[list[int]]] = {}
    query_predictions: dict[str, list[int]] = {}
    top_predictions: dict[str, list[list[int]]] = {}
    for name in ["original", *run.check_methods(methods)]:
        model = run.model(name)
        order, _ = rank_gallery(
            embed_images(model, query_images, feature, device=run.device),
            embed_images(model, gallery_images, feature, device=run.device), exclude,
        )
        valid = (order != exclude[:, None]).float()
        ranked = gallery_labels[order]
        metrics[name] = {}
        for kind in INSTANCE_KINDS:
            rows = torch.tensor([i for i, k in enumerate(kinds) if k == kind], dtype=torch.long)
            if rows.numel():
                metrics[name][kind] = retrieval_metrics(ranked[rows], query_labels[rows], valid[rows])
        tops[name] = gallery[order[:, :top]].tolist()
        query_predictions[name] = predict(model, query_images, device=run.device).tolist()
        top_predictions[name] = predict(model, gallery_images, device=run.device)[order[:, :top]].tolist()
    return RetrievalView(
        feature, metrics, kinds, indices, query_labels.tolist(), gallery.tolist(), gallery_labels.tolist(), tops,
        time.perf_counter() - start, query_predictions, top_predictions,
    )


def retrieval_images(run: LoadedRun, view: RetrievalView, queries: Sequence[int]) -> dict[tuple[str, int], np.ndarray]:
    """The ``C × H × W`` float images :func:`~stakes_core.figures.retrieval_grid_figure` needs for
    ``queries`` (positions in ``view.query_indices``): each query and every model's top-k."""
    needed = {("test" if view.query_kinds[q] == "test" else "train", view.query_indices[q]) for q in queries}
    needed |= {("train", g) for tops in view.top.values() for q in queries for g in tops[q]}
    dataset = run.dataset
    return {
        (split, i): to_float((dataset.test_images if split == "test" else dataset.train_images)[i]).numpy()
        for split, i in needed
    }
