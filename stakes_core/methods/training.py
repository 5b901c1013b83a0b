"""The pieces the methods' steps are made of: a trainable copy, frozen batch norm, the forget and
proxy batches, the optimiser, the forget/proxy loss weighting and the weight-distance regulariser."""

from __future__ import annotations

import copy
import itertools
from typing import Iterable, Iterator, TypeVar

import torch

from stakes_core.data import to_float
from stakes_core.methods.config import SGDMethodConfig
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.sgd import SGD

Batch = tuple[torch.Tensor, torch.Tensor]
"""Images and labels."""

ProxyBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""Proxy images, their attack targets, forget images, their labels."""

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

LossAndTerms = tuple[torch.Tensor, dict[str, torch.Tensor]]
"""A step's loss and its named terms (recorded per step)."""


def trainable_copy(model: ModuleT) -> ModuleT:
    """A deep copy of the (frozen) original model with gradients enabled, in train mode."""
    clone = copy.deepcopy(model).train()
    for parameter in clone.parameters():
        parameter.requires_grad_(True)
    return clone


def freeze_batch_norm(model: torch.nn.Module) -> None:
    """Put every batch-norm layer of ``model`` in eval mode: the layers normalise with their
    stored running statistics and never update them, while their affine weights still take
    gradients. What ``bn_stats="frozen"`` does to the unlearned backbone."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def forget_batches(ctx: UnlearnContext, batch_size: int) -> list[Batch]:
    """The forget set in fixed order, in batches (the paper's loaders are not shuffled)."""
    x, y = ctx.forget_images, ctx.forget_labels
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]


def paired_with_forget(
    ctx: UnlearnContext, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[ProxyBatch]:
    """One epoch of ``zip(batches(images), cycle(forget batches))`` as in the paper's loop."""
    forget = itertools.cycle(forget_batches(ctx, batch_size))
    for start in range(0, images.shape[0], batch_size):
        xf, yf = next(forget)
        yield images[start : start + batch_size], labels[start : start + batch_size], xf, yf


def sgd_for(parameters: Iterable[torch.nn.Parameter], config: SGDMethodConfig) -> SGD:
    """The baselines' optimiser: SGD with the config's learning rate, momentum and weight decay."""
    return SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def forget_and_proxy_loss(forget_ce: torch.Tensor, proxy_ce: torch.Tensor, n_forget: int, n_proxy: int) -> torch.Tensor:
    """``−CE_f·n_f/(n_f+n_a) + CE_proxy·n_a/(n_f+n_a)``: ascend the forget loss, descend the proxy
    loss, each weighted by its share of the step's images (L2UL's loss, also StructGuard's
    ``L_del + L_ret``)."""
    total = n_forget + n_proxy
    return -forget_ce * n_forget / total + proxy_ce * n_proxy / total


def distance_penalty(
    model: torch.nn.Module, reference: dict[str, torch.Tensor], importance: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``½ Σ_j I_j (θ_j − θ⁰_j)²`` over the model's parameters (the L2UL / StructGuard regulariser)."""
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, parameter in model.named_parameters():
        total = total + (importance[name] * (parameter - reference[name]) ** 2).sum()
    return total / 2



def retain_batches(ctx: UnlearnContext, method: object, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
    """One shuffled pass over the retained training images D_r, in batches on the device, for a
    method that declares it reads them (``data_access="retain"``; a retain-free one is refused)."""
    retained = ctx.retained(method)
    order = retained[torch.randperm(retained.numel(), generator=generator)]
    for start in range(0, order.numel(), batch_size):
        idx = order[start : start + batch_size]
        yield to_float(ctx.dataset.train_images[idx]).to(ctx.device), ctx.dataset.train_labels[idx].to(ctx.device)
