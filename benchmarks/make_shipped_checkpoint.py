"""Write a preset's shipped checkpoint, ``assets/checkpoints/<name>.pt``, and its manifest entry.

    python benchmarks/make_shipped_checkpoint.py --threads 1                    # train it here, one thread
    python benchmarks/make_shipped_checkpoint.py --from-cache CACHE/checkpoints/KEY.pt --threads 1

The first trains the preset's model with the pretraining recipe (what ``stakes pretrain
--from-scratch`` does) with ``--threads`` PyTorch threads. The second ships a checkpoint that
``load_or_pretrain`` trained and cached before, after checking its sidecar's SHA-256 and that it
answers the preset's checkpoint config; ``--threads`` then states how many threads trained it.
Either way the weights are evaluated on the test set here, saved as a plain ``state_dict`` and
entered in ``assets/checkpoints/manifest.json`` with the file's SHA-256, the checkpoint config
it answers, its test accuracy and how it was made (this command among it), replacing the entry
of the same name.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="digits", help="the preset whose pretrained model to ship")
    parser.add_argument("--name", help="the checkpoint's name and file stem (default: the preset's name)")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch threads to train with (with --from-cache: the threads that trained it)")
    parser.add_argument("--from-cache", type=Path, metavar="PT",
                        help="a checkpoint cache entry (KEY.pt beside KEY.json)")
    parser.add_argument("--assets", type=Path, default=ASSETS, help=f"folder of the manifest (default {ASSETS})")
    return parser.parse_args()


def cached_state(path: Path, expected_config: dict[str, Any]) -> tuple[dict, float, float]:
    """The weights, recorded test accuracy and training seconds of a verified cache entry."""
    import torch

    from stakes_core.infra.cache import config_key, file_sha256

    meta = json.loads(path.with_suffix(".json").read_text())
    if config_key(meta["config"]) != config_key(expected_config):
        sys.exit(f"{path} answers another checkpoint config than the preset's:\n{json.dumps(meta['config'])}")
    if file_sha256(path) != meta["sha256"]:
        sys.exit(f"{path} does not match the SHA-256 in its sidecar")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["state_dict"], float(payload["test_acc"]), float(payload["seconds"])


def write_asset(path: Path, data: bytes) -> None:
    """Write a file of the repository atomically, readable by everyone like a checked-out file."""
    from stakes_core.infra.cache import atomic_write_bytes

    atomic_write_bytes(path, data)
    path.chmod(0o644)


def main() -> None:
    args = parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy
    import torch

    torch.set_num_threads(args.threads)
    from stakes_core.infra.cache import config_key, state_sha256
    from stakes_core.metrics.accuracy import accuracy
    from stakes_core.models.pretrain import PretrainConfig, build_model, checkpoint_config, train_model
    from stakes_core.run.config import experiment_config
    from stakes_core.run.context import dataset_with_fingerprint
    from stakes_core.run.environment import cpu_model, stakes_version

    config = experiment_config(args.preset, k=1, device="cpu", from_scratch=True)
    dataset, fingerprint = dataset_with_fingerprint(config)
    recipe = PretrainConfig(**config.pretrain)
    full_config = checkpoint_config(recipe, fingerprint)
    if args.from_cache:
        state, recorded_acc, seconds = cached_state(args.from_cache, full_config)
        origin = f"cache entry {args.from_cache.name}, trained by load_or_pretrain"
    else:
        model, seconds = train_model(recipe, dataset, "cpu", progress=True)
        state, recorded_acc, origin = model.state_dict(), None, "trained by train_model (the pretraining recipe)"
    model = build_model(recipe, dataset)
    model.load_state_dict(state)
    test_acc = accuracy(model.eval(), dataset.test_images, dataset.test_labels)
    if recorded_acc is not None and recorded_acc != test_acc:
        sys.exit(f"the cache entry records test accuracy {recorded_acc}, but it evaluates to {test_acc} here")

    name = args.name or Path(args.preset).stem
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    write_asset(args.assets / f"{name}.pt", data)
    entry = {
        "name": name,
        "file": f"{name}.pt",
        "sha256": hashlib.sha256(data).hexdigest(),
        "state_sha256": state_sha256(model.state_dict()),
        "config_key": config_key(full_config),
        "config": full_config,
        "test_acc": test_acc,
        "made": {
            "command": "python benchmarks/make_shipped_checkpoint.py " + " ".join(sys.argv[1:]),
            "origin": origin,
            "seconds": seconds,
            "threads": args.threads,
            "device": "cpu",
            "machine": f"{cpu_model()}, {os.cpu_count()} cores",
            "stakes": stakes_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
    }
    manifest_path = args.assets / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"format": 1, "checkpoints": []}
    others = [e for e in manifest["checkpoints"] if e["name"] != name]
    manifest["checkpoints"] = sorted([*others, entry], key=lambda e: e["name"])
    write_asset(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    print(f"wrote {args.assets / entry['file']} ({len(data)} bytes, sha256 {entry['sha256'][:16]}…), "
          f"test_acc {test_acc!r} %, state_sha256 {entry['state_sha256'][:16]}…; updated {manifest_path}")


if __name__ == "__main__":
    main()
