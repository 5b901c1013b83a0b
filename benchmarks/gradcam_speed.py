"""Grad-CAM with gradients only for the target block vs the plain library call (all weights
take gradients): same maps, how much faster? CIFAR-shaped ResNet-18 (random weights, 32×32).

Usage: ``python benchmarks/gradcam_speed.py [--images 64] [--repeats 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stakes_core.analysis.gradcam import gradcam_maps
from stakes_core.models import create_model


def plain_maps(model: torch.nn.Module, images: torch.Tensor, classes: list[int]) -> np.ndarray:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in classes])


def best_of(repeats: int, compute) -> tuple[float, np.ndarray]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = compute()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("resnet18_cifar", 10, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).eval()
    images = torch.rand(args.images, 3, 32, 32)
    classes = torch.randint(0, 10, (args.images,)).tolist()
    plain_seconds, expected = best_of(args.repeats, lambda: plain_maps(model, images, classes))
    fast_seconds, maps = best_of(args.repeats, lambda: gradcam_maps(model, images, classes, batch_size=args.images)[0])
    print(f"{args.images} images, {args.threads} thread(s), best of {args.repeats}")
    print(f"plain library call : {plain_seconds:.3f} s ({args.images / plain_seconds:.1f} images/s)")
    print(f"target block only  : {fast_seconds:.3f} s ({args.images / fast_seconds:.1f} images/s)")
    print(f"speed-up {plain_seconds / fast_seconds:.2f}x, max |difference| of maps {np.abs(maps - expected).max():.2e}")


if __name__ == "__main__":
    main()
