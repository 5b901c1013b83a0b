"""Which training images to forget, which remain, and which retained ones to probe."""

from __future__ import annotations

from numbers import Integral

import torch

from stakes_core.infra.errors import ConfigError

PROBE_SEED_OFFSET = 1_000_003
"""Added to the seed of the probe draw so it is independent of the forget draw."""

SEED_LIMIT = 2**32
"""Seeds are ``0 ≤ seed < SEED_LIMIT``: what every random generator a run or an analysis seeds
takes as it is. Torch's generators wrap larger and negative seeds (``2**63`` draws what ``0``
draws, ``-1`` what ``2**64 - 1`` draws) and numpy's and scikit-learn's (UMAP, PCA) refuse
seeds of ``2**32`` and above."""


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int, or a :class:`ConfigError` that states the range."""
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= int(seed) < SEED_LIMIT:
        raise ConfigError(f"{what}={seed!r} is invalid: choose a whole number 0 ≤ {what} < {SEED_LIMIT} (2**32)")
    return int(seed)


def choose_forget_indices(num_train: int, k: int, seed: int) -> torch.Tensor:
    """The first ``k`` entries of a seeded permutation of the training indices (as in the
    paper's code), so for one seed the sets are nested across ``k`` (16 ⊂ 64 ⊂ ...)."""
    seed = check_seed(seed)
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ConfigError(f"k={k!r} is invalid: it must be a whole number of training images")
    if not 0 < k < num_train:
        raise ConfigError(
            f"k={k} is invalid: choose 1 ≤ k < {num_train} (the number of training images)"
        )
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(num_train, generator=g)[: int(k)]


def retain_indices(num_train: int, forget_idx: torch.Tensor) -> torch.Tensor:
    """The sorted training indices that are not in ``forget_idx``."""
    keep = torch.ones(num_train, dtype=torch.bool)
    keep[forget_idx] = False
    return keep.nonzero().flatten()


def choose_probe_indices(num_train: int, forget_idx: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """A fixed seeded random subset of ``size`` retained indices (capped at how many are
    retained), on which structural collapse is measured; drawn in random order, so a
    smaller ``size`` gives a prefix of a larger one."""
    seed = check_seed(seed)
    if size < 1:
        raise ConfigError(f"size={size} is invalid: the probe set needs at least 1 image")
    retained = retain_indices(num_train, forget_idx)
    g = torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)
    order = torch.randperm(retained.numel(), generator=g)[:size]
    return retained[order]
