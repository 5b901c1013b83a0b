"""Where StructGuard measures structure: the paper's embedding space, or one where the anchors'
meaning can matter.

Each space maps an image to an embedding ``z`` in the anchors' space; the structure is then
``S = norm(z)·Aᵀ`` for the original model (``S^ori``) and the model being unlearned (``S^unl``).
What a space reads of a model is the features its head reads (``g(x)`` for the original,
``p(g(x))`` for StructGuard's deployed path), the structure view (``g₀(x)·R`` or the projector's
view) and the head itself.

- ``paper``: ``z`` is the structure view, as in the paper. ``L_align`` then sees the anchors
  only through ``AᵀA``: giving the anchors to other classes changes nothing.
- ``conse``: ``z(x) = Σ_{c ∈ top-T(x)} p(c|x)·a_c``, the class mixture the model predicts mapped
  into the anchors' space (ConSE, Norouzi et al. 2014). Then ``S_j ∝ Σ_c p(c|x)·(AAᵀ)_cj``: the
  class-by-class text similarity enters, so pairing anchor c with class c matters.
- ``text_map``: ``z = M·f(x)`` for a linear map ``M`` from the head's features into the anchors'
  space, fitted once before unlearning on data the protocol allows (the forget and proxy
  images) so that the anchors classify like the original model,
  ``min_M KL(p₀(·|x) ‖ softmax_c(cos(M·g₀(x), a_c)/τ))``, then frozen (the TextUnlock idea,
  CVPR 2026). The unlearned side reads ``M·p(g(x))``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule

STRUCTURE_SPACES = ("paper", "conse", "text_map")

Embed = Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor]
"""``(head_features, view, head) -> z``: a space's embedding of a batch."""


def check_anchors(anchors: torch.Tensor, num_classes: int, space: str) -> None:
    """One anchor per class, or a :class:`ConfigError` saying what the space needs."""
    if anchors.ndim != 2 or anchors.shape[0] != num_classes:
        raise ConfigError(
            f"the {space} structure space needs one anchor per class ({num_classes} rows); got anchors of shape "
            f"{tuple(anchors.shape)}"
        )


def conse_embedding(probabilities: torch.Tensor, anchors: torch.Tensor, top: int) -> torch.Tensor:
    """``Σ_{c ∈ top-T} p(c|x)·a_c`` per row of ``probabilities`` (``N × C``), ``N × a``."""
    if probabilities.shape[1] != anchors.shape[0]:
        raise ConfigError(
            f"ConSE needs one anchor per class: {probabilities.shape[1]} classes, {anchors.shape[0]} anchors"
        )
    if not 1 <= top <= probabilities.shape[1]:
        raise ConfigError(f"conse_top must be between 1 and the {probabilities.shape[1]} classes, got {top}")
    kept, classes = probabilities.topk(top, dim=1)
    return torch.zeros_like(probabilities).scatter(1, classes, kept) @ anchors.to(probabilities.dtype)


def text_map_logits(mapped: torch.Tensor, anchors: torch.Tensor, tau: float) -> torch.Tensor:
    """``cos(M·f(x), a_c)/τ`` for every class c: the anchors used as a classifier."""
    return F.normalize(mapped, dim=1) @ F.normalize(anchors, dim=1).T / tau


def text_map_minimum(num_classes: int) -> int:
    """The fewest images :func:`fit_text_map` accepts: two per class."""
    return 2 * num_classes


def fit_text_map(
    features: torch.Tensor,
    target_probabilities: torch.Tensor,
    anchors: torch.Tensor,
    tau: float,
    steps: int,
    generator: torch.Generator,
) -> nn.Linear:
    """The frozen linear map ``M`` (features → anchor space) that minimises
    ``KL(p₀ ‖ softmax(cos(M·f, a)/τ))`` over the given images, by full-batch Adam (lr 0.01)."""
    n, num_classes = target_probabilities.shape
    check_anchors(anchors, num_classes, "text_map")
    if n < text_map_minimum(num_classes):
        raise ConfigError(
            f"text_map needs at least {text_map_minimum(num_classes)} images to fit its map (2 per class; the forget "
            f"set plus the proxy set, k·(n_adv+1)); got {n}: raise k or n_adv"
        )
    if tau <= 0:
        raise ConfigError(f"text_map_tau must be > 0 (a temperature), got {tau}")
    mapping = nn.Linear(features.shape[1], anchors.shape[1])
    with torch.no_grad():
        nn.init.normal_(mapping.weight, std=features.shape[1] ** -0.5, generator=generator)
        mapping.bias.zero_()
    mapping = mapping.to(features.device)
    optimizer = torch.optim.Adam(mapping.parameters(), lr=0.01)
    features, targets = features.detach(), target_probabilities.detach()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        log_q = F.log_softmax(text_map_logits(mapping(features), anchors, tau), dim=1)
        F.kl_div(log_q, targets, reduction="batchmean").backward()
        optimizer.step()
    for parameter in mapping.parameters():
        parameter.requires_grad_(False)
    return mapping.eval()


def space_embedder(
    space: str,
    anchors: torch.Tensor,
    num_classes: int,
    conse_top: int = 5,
    text_map: nn.Linear | None = None,
) -> Embed:
    """The embedding ``z`` of ``space`` as a function of a batch's head features, structure view
    and head (see the module docstring)."""
    if space == "paper":
        return lambda head_features, view, head: view
    check_anchors(anchors, num_classes, space)
    if space == "conse":
        if not 1 <= conse_top <= num_classes:
            raise ConfigError(f"conse_top must be between 1 and the {num_classes} classes, got {conse_top}")
        return lambda head_features, view, head: conse_embedding(
            F.softmax(head(head_features), dim=1), anchors, conse_top
        )
    if space == "text_map":
        if text_map is None:
            raise ConfigError("the text_map structure space needs its fitted map")
        if text_map.out_features != anchors.shape[1]:
            raise ConfigError(
                f"the text map outputs {text_map.out_features}-wide embeddings; the anchors are {anchors.shape[1]} wide"
            )
        return lambda head_features, view, head: text_map(head_features)
    raise ConfigError(f"unknown structure space '{space}' (choose {', '.join(STRUCTURE_SPACES)})")


@torch.no_grad()
def fitting_targets(
    model: BackboneModule, images: torch.Tensor, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """The original model's features and predicted class probabilities on ``images`` (eval mode)."""
    features, probabilities = [], []
    with eval_mode(model):
        for start in range(0, images.shape[0], batch_size):
            batch = model.features(images[start : start + batch_size])
            features.append(batch)
            probabilities.append(F.softmax(model.classifier(batch), dim=1))
    return torch.cat(features), torch.cat(probabilities)
