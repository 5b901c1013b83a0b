"""Embeddings of images under a model, for the analyses that compare before and after.

Two views: ``"backbone"`` is ``g(x)``, the penultimate features every method shares (the
embedding whose structure the collapse metric tracks); ``"deployed"`` is whatever enters the
deployed classifier head — ``g(x)`` for the baselines, ``p(g(x))`` for StructGuard — read
with a hook on ``model.classifier`` so any method's deployed model works.
"""

from __future__ import annotations

import torch

from stakes_core.metrics.accuracy import image_batches

FEATURE_VIEWS = ("backbone", "deployed")


@torch.no_grad()
def embed_images(
    model: torch.nn.Module, images: torch.Tensor, view: str = "backbone", batch_size: int = 512, device: str = "cpu"
) -> torch.Tensor:
    """Float ``N × d`` features (CPU) of uint8 or float images; ``model`` is used in eval mode."""
    if view not in FEATURE_VIEWS:
        raise ValueError(f"feature view '{view}' is not one of {', '.join(FEATURE_VIEWS)}")
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    handle = None
    if view == "deployed":
        handle = model.classifier.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].cpu()))
    try:
        chunks = []
        for _, batch in image_batches(images, batch_size, device):
            if view == "backbone":
                chunks.append(model.features(batch).cpu())
            else:
                model(batch)
        return torch.cat(captured if view == "deployed" else chunks).float()
    finally:
        if handle is not None:
            handle.remove()
        model.train(was_training)
