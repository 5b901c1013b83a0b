"""Embeddings of images under a model, for the analyses that compare before and after.

Two views: ``"backbone"`` is ``g(x)``, the penultimate features every method shares (the
embedding whose structure the collapse metric tracks); ``"deployed"`` is whatever enters the
deployed classifier head — ``g(x)`` for the baselines, ``p(g(x))`` for StructGuard — read
with a hook on ``model.classifier`` so any method's deployed model works.
"""

from __future__ import annotations

import torch

from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.metrics.accuracy import image_batches
from stakes_core.metrics.structure import backbone_embedder

FEATURE_VIEWS = ("backbone", "deployed")


@torch.no_grad()
def embed_images(
    model: torch.nn.Module, images: torch.Tensor, view: str = "backbone", batch_size: int = 512, device: str = "cpu"
) -> torch.Tensor:
    """Float ``N × d`` features (CPU) of uint8 or float images; ``model`` is used in eval mode."""
    if view not in FEATURE_VIEWS:
        raise ConfigError(f"feature view '{view}' is not one of {', '.join(FEATURE_VIEWS)}")
    captured: list[torch.Tensor] = []
    handle = None
    if view == "deployed":
        head = model.classifier
        if not isinstance(head, torch.nn.Module):
            raise TypeError(f"{type(model).__name__}.classifier is not a module, so its input cannot be read")
        handle = head.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].cpu()))
    features = backbone_embedder(model, None) if view == "backbone" else None
    try:
        with eval_mode(model):
            chunks = []
            for _, batch in image_batches(images, batch_size, device):
                if features is not None:
                    chunks.append(features(batch).cpu())
                else:
                    model(batch)
            return torch.cat(captured if view == "deployed" else chunks).float()
    finally:
        if handle is not None:
            handle.remove()
