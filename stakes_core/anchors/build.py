"""Encode descriptions into the frozen anchor matrix A (b × d), cached on disk.

Encoding is slow for CLIP (about 10 s per 100 prompts on a CPU) while the result is tiny, so
anchors are cached by encoder spec and descriptions hash; a cache hit never builds the encoder.
Processes that need the same anchors at once (the workers of a sweep) encode them once: the
entry's cross-process lock is held around the check, the encoding and the save.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from stakes_core.anchors.descriptions import (
    Descriptions,
    class_prompt,
    descriptions_hash,
    load_descriptions,
)
from stakes_core.anchors.encoders import create_encoder, weights_fingerprint
from stakes_core.anchors.shipped import find_shipped_anchors, load_shipped_anchors
from stakes_core.infra.cache import CorruptCacheError, TensorCache, config_key

logger = logging.getLogger(__name__)


def build_anchors(
    descriptions: Descriptions, encoder: str, device: str = "cpu", use_cache: bool = True
) -> torch.Tensor:
    """Anchors ``a_c = normalise(T("; ".join(attributes_c)))``, one row per class in key order.

    Returns a ``b × d`` float32 CPU tensor with unit rows. With ``use_cache`` the result is read
    from and written to the ``anchors`` cache; a corrupt entry is logged and rebuilt. On a cache
    miss, the package's shipped copy of these exact anchors (:mod:`stakes_core.anchors.shipped`)
    is used when there is one, instead of loading the encoder.
    """
    descriptions = load_descriptions(descriptions)
    config = {"encoder": encoder, "descriptions": descriptions_hash(descriptions)}
    fingerprint = weights_fingerprint(encoder)
    if fingerprint:
        config["weights"] = fingerprint
    if not use_cache:
        return encode_descriptions(descriptions, encoder, device)
    key = config_key(config)
    cache = TensorCache("anchors")
    with cache.lock(key):  # workers that need these anchors at once: one encodes them, the others load them
        if cache.exists(key):
            try:
                anchors = cache.load(key)
            except CorruptCacheError as error:
                logger.warning("%s; rebuilding the anchors", error)
            else:
                if isinstance(anchors, torch.Tensor) and anchors.ndim == 2 and len(anchors) == len(descriptions):
                    return anchors
                logger.warning("cached anchors %s have the wrong shape; rebuilding them", key)
        shipped = None if fingerprint else find_shipped_anchors(encoder, config["descriptions"])
        if shipped is not None:  # the package's copy: no encoder to load
            anchors = load_shipped_anchors(shipped, len(descriptions))
        else:
            anchors = encode_descriptions(descriptions, encoder, device)
        cache.save(key, anchors, config)
        return anchors


def encode_descriptions(descriptions: Descriptions, encoder: str, device: str = "cpu") -> torch.Tensor:
    """The anchors of ``descriptions`` encoded now, without the cache (one prompt per class)."""
    prompts = [class_prompt(attributes) for attributes in load_descriptions(descriptions).values()]
    return create_encoder(encoder, device).encode(prompts).contiguous()


def anchor_similarity(anchors: torch.Tensor) -> torch.Tensor:
    """The ``b × b`` cosine similarity matrix of the anchors (their Gram matrix when unit-norm)."""
    unit = F.normalize(anchors.float(), dim=1)
    return unit @ unit.T


def mean_off_diagonal(similarity: torch.Tensor) -> float:
    """The mean cosine between distinct anchors: how alike the classes' anchors are."""
    b = similarity.shape[0]
    if b < 2:
        raise ValueError("need at least two anchors")
    return float((similarity.sum() - similarity.diagonal().sum()) / (b * (b - 1)))
