"""Which 2-D layout should the before/after embedding view use? Measures, on a saved run:

- ``null jump``: mean displacement of points between the panels when the model did NOT change
  (both panels from the original features), relative to the layout's RMS radius. Any value
  above 0 is movement that is not the model's.
- ``trust before/after``: sklearn trustworthiness (10 neighbours) of each panel against the
  features it shows: does the layout keep each instance's neighbourhood?
- ``seconds`` per layout (after a warm-up fit, so numba compilation is not counted).

Usage: ``python benchmarks/embedding_choice.py RUN_DIR [--out docs/embedding_choice.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.manifold import trustworthiness

from stakes_core.analysis import embed_images, layout_pair, load_run


def radius(layout: np.ndarray) -> float:
    return float(np.sqrt(((layout - layout.mean(0)) ** 2).sum(1).mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--out", default="docs/embedding_choice.json")
    parser.add_argument("--per-kind", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run_dir)
    instances = run.default_instances(args.per_kind)
    images = run.images(instances)
    original = embed_images(run.context.original, images)
    layout_pair(original, original, "umap")  # warm-up: numba compilation is not a layout's cost
    rows = []
    for algorithm in ("pca", "umap", "aligned-umap"):
        start = time.perf_counter()
        before, after = layout_pair(original, original, algorithm)
        null_seconds = time.perf_counter() - start
        null_jump = float(np.linalg.norm(after - before, axis=1).mean()) / radius(before)
        for method in run.methods:
            unlearned = embed_images(run.model(method), images)
            start = time.perf_counter()
            before, after = layout_pair(original, unlearned, algorithm)
            seconds = time.perf_counter() - start
            rows.append({
                "algorithm": algorithm, "method": method, "points": len(instances), "seconds": round(seconds, 2),
                "null_seconds": round(null_seconds, 2), "null_jump": round(null_jump, 4),
                "trust_before": round(float(trustworthiness(F.normalize(original, dim=1).numpy(), before,
                    n_neighbors=10)), 4),
                "trust_after": round(float(trustworthiness(F.normalize(unlearned, dim=1).numpy(), after,
                    n_neighbors=10)), 4),
                "jump": round(float(np.linalg.norm(after - before, axis=1).mean()) / radius(before), 4),
            })
            print(" | ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    Path(args.out).write_text(json.dumps({"run": str(args.run_dir), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
