"""The proxy set: targeted L2-PGD examples of the forget set that stand in for the retain set."""

from __future__ import annotations

import copy

import torch
from tqdm.auto import tqdm

from stakes_core.infra.accel import DEFAULT, Acceleration
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.modules import eval_mode
from stakes_core.methods.attacks import PGDConfig, draw_targets, targeted_l2_pgd


def build_proxy_set(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    n_adv: int,
    num_classes: int,
    pgd: PGDConfig,
    target_rule: str,
    generator: torch.Generator,
    batch_size: int = 128,
    target_similarity: torch.Tensor | None = None,
    target_tau: float = 0.1,
    attack_chunk: int = 2048,
    progress: bool = False,
    accel: Acceleration = DEFAULT,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy set in the authors' order (per forget batch of ``batch_size``, ``n_adv``
    repetitions of that batch), attacked ``attack_chunk`` images at a time in eval mode (all
    k·n_adv attacks in one batch up to that size; with ``accel.channels_last``, on a
    channels_last copy of ``model``). ``target_similarity`` and ``target_tau`` serve the
    ``"semantic"`` target rule (:func:`~stakes_core.methods.attacks.draw_targets`)."""
    if n_adv < 1:
        raise ConfigError(f"n_adv must be ≥ 1, got {n_adv}")
    sources, targets = [], []
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        for _ in range(n_adv):
            sources.append(x)
            drawn = draw_targets(y.cpu(), num_classes, target_rule, generator, target_similarity, target_tau)
            targets.append(drawn.to(y.device))
    sources_all, targets_all = torch.cat(sources), torch.cat(targets)
    with eval_mode(model):
        attacked = accel.model(copy.deepcopy(model)) if accel.channels_last else model
        adversarial = []
        chunks = range(0, sources_all.shape[0], attack_chunk)
        for start in tqdm(chunks, desc="proxy set (targeted L2-PGD)", disable=not progress, leave=False):
            stop = start + attack_chunk
            adversarial.append(
                targeted_l2_pgd(attacked, sources_all[start:stop], targets_all[start:stop], pgd, generator, accel)
            )
    return torch.cat(adversarial), targets_all
