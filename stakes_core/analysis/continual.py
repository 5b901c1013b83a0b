"""The embedding of the retained instances after round 1 and after round T of a continual run,
laid out in 2-D with one layout (:func:`~stakes_core.analysis.embedding.layout_pair`: fitted on
round 1, applied to both), so a point moves between the panels only because rounds 2..T moved it.

The instances are the sequence's probe images still retained after round T; the features are
the innermost backbone ``g(x)`` of each round's model (the embedding collapse is measured on).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from stakes_core.analysis.embedding import layout_pair
from stakes_core.analysis.features import embed_images
from stakes_core.analysis.runs import AnalysisError
from stakes_core.run.continual import innermost_backbone
from stakes_core.run.continual_store import ContinualRun, load_record, load_round_model, sequence_pieces


@dataclass
class RoundEmbedding:
    """2-D positions of the same retained instances after round 1 (``first``) and round T (``last``)."""

    arm: str
    seed: int
    last_round: int
    algorithm: str
    indices: list[int]
    labels: list[int]
    classes: list[str]
    first: np.ndarray
    last: np.ndarray
    seconds: float


def round_embedding(
    run: ContinualRun, arm: str, seed: int, algorithm: str = "umap", layout_seed: int = 0
) -> RoundEmbedding:
    """Layouts of the retained probe images under ``arm``'s round-1 and round-T models for ``seed``."""
    entries = run.entries.get(arm, {}).get(str(seed))
    if not entries:
        raise AnalysisError(f"the run has no sequence of '{arm}' for seed {seed} (arms: {', '.join(run.arms)})")
    last_dir = Path(entries[-1])
    if load_record(Path(entries[0])) is None or load_record(last_dir) is None:
        raise AnalysisError(f"the stored rounds of '{arm}' seed {seed} are gone from the run store; run it again")
    start = time.perf_counter()
    pieces = sequence_pieces(replace(run.config(), seed=seed))
    served = [i for chosen in json.loads((last_dir / "round.json").read_text())["sets"] for i in chosen]
    keep = pieces.probe_idx[~torch.isin(pieces.probe_idx, torch.tensor(served))]
    method = arm.partition("@")[0]
    images = pieces.dataset.train_images[keep]
    features = [
        embed_images(innermost_backbone(load_round_model(pieces, method, Path(entries[t - 1]), t)), images,
                     device=pieces.config.device)
        for t in (1, len(entries))
    ]
    first, last = layout_pair(features[0], features[1], algorithm, layout_seed)
    return RoundEmbedding(
        arm, seed, len(entries), algorithm, keep.tolist(), pieces.dataset.train_labels[keep].tolist(),
        list(pieces.dataset.classes), np.asarray(first, dtype=np.float32), np.asarray(last, dtype=np.float32),
        time.perf_counter() - start,
    )
