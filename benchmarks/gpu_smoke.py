"""Check the core on a GPU: the digits default end to end, and CIFAR-shaped requests.

1. digits, k=16, all five methods, on the GPU and on the CPU: every method must reach
   forget accuracy 0 on both; accuracies agree up to floating-point differences.
2. The paper's backbones at 32×32 on a synthetic 10-class set (random images with a
   class-dependent colour bias, briefly trained): one StructGuard request with the paper's
   CIFAR-10 hyperparameters (n_adv 20, 100 PGD iterations), ResNet-18 with 512-d anchors (no
   projection) and ResNet-50 with 512-d anchors (2048 → 512 projection and hidden-layer
   alignment), with the time breakdown.

Anchors come from the ``random:`` encoder so the script needs no model download.

    python benchmarks/gpu_smoke.py --device cuda --out gpu_smoke.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from stakes_core.data import DATASETS, Augmentation, ImageDataset
from stakes_core.run.config import experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_experiment, run_method


@DATASETS.register("synthetic32")
def synthetic32(num_train: int = 5000, num_test: int = 1000, seed: int = 0, **_) -> ImageDataset:
    """Noise images whose mean colour depends on the class: learnable, CIFAR-shaped, offline."""
    generator = torch.Generator().manual_seed(seed)
    palette = torch.rand(10, 3, 1, 1, generator=generator)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (count,), generator=generator)
        images = 0.5 * torch.rand(count, 3, 32, 32, generator=generator) + 0.5 * palette[labels]
        return (images * 255).round().to(torch.uint8), labels

    train, test = make(num_train), make(num_test)
    return ImageDataset("synthetic32", [f"class{i}" for i in range(10)], *train, *test,
                        (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), Augmentation(pad=4, flip=True))


def digits_check(device: str) -> dict:
    config = experiment_config("digits", k=16, seed=0, methods=["neggrad", "adv", "l2ul", "structguard", "oracle"],
                               encoder="random:384", device=device)
    start = time.perf_counter()
    result = run_experiment(config, progress=False)
    return {"seconds": time.perf_counter() - start,
            "methods": {n: {**m.metrics, "steps": m.steps, "seconds": m.seconds} for n, m in result.methods.items()}}


def cifar_shaped_request(model: str, device: str, train_size: int, epochs: int, n_adv: int) -> dict:
    preset = {
        "dataset": {"name": "synthetic32", "num_train": train_size},
        "pretrain": {"model": model, "epochs": epochs},
        "anchors": {"encoder": "random:512", "descriptions": {}},
        "k": [16],
        "methods": {"structguard": {"lr": 0.005, "projector_lr": 0.009, "n_adv": n_adv, "pgd_eps": 3.0}},
    }
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "preset.json"
        path.write_text(json.dumps(preset))
        config = experiment_config(str(path), k=16, methods=["structguard"],
            descriptions=str(write_descriptions(folder)),
                                   device=device)
        start = time.perf_counter()
        context, pretrained = prepare_context(config, progress=False)
        prepare_seconds = time.perf_counter() - start
        result = run_method(context, "structguard", config.method_configs["structguard"])
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"model": model, "pretrain_seconds": pretrained.seconds, "prepare_seconds": prepare_seconds,
            "pretrained_test_acc": pretrained.test_acc, **result.metrics, "steps": result.steps,
            "request_seconds": result.seconds, "timings": result.timings, "reached_zero": result.reached_zero}


def write_descriptions(folder: str) -> Path:
    path = Path(folder) / "descriptions.json"
    path.write_text(json.dumps({f"class{i}": [f"attribute {i}"] for i in range(10)}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="gpu_smoke.json")
    parser.add_argument("--train-size", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-adv", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["resnet18_cifar", "resnet50_cifar"])
    parser.add_argument("--skip-digits", action="store_true")
    args = parser.parse_args()
    report = {"device": args.device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if not args.skip_digits:
        report["digits_gpu"] = digits_check(args.device)
        report["digits_cpu"] = digits_check("cpu")
    report["cifar_shaped"] = [
        cifar_shaped_request(m, args.device, args.train_size, args.epochs, args.n_adv) for m in args.models
    ]
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
