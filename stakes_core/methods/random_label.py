"""RL (random labels): train the forget images towards wrong labels; its D_r form adds a pass on D_r.

Published algorithm (Golatkar et al. 2020, as run in SalUn, Fan et al., ICLR 2024): relabel every
forget image with a random class and minimise ``CE(f_θ(x_f), ỹ)``, ``ỹ ~ randint(0, C)`` drawn
anew for every batch; SalUn's CIFAR-10 branch then takes, in every epoch, one pass over the
relabelled D_f followed by one pass over D_r with the true labels, ``CE(f_θ(x_r), y_r)``.
Source: OPTML-Group/Unlearn-Saliency, ``Classification/unlearn/RL.py`` (10 epochs, lr 0.013 in
the README's example, SGD momentum 0.9, weight decay 5e-4 from ``arg_parser.py``). Here:
``random_label`` is the retain-free form (D_f only) and ``random_label_dr`` the published one
(a reference that reads D_r). The random labels are drawn uniformly from the classes OTHER than
the true one (``randint(0, C)`` keeps the true label a tenth of the time on 10 classes, which
only slows forgetting), once per epoch from the method's own generator (the same as per batch
while D_f fits one batch); the stopping rule is checked after every epoch, so the D_r form
stops only after its D_r pass; the retain-free form may run up to 101 epochs (like the paper's
methods) to reach forget accuracy 0, the D_r form keeps the published 10.
:func:`random_wrong_labels` and the epoch's batches are shared with SalUn (:mod:`.salun`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import SGDMethodConfig, hyperparameter, new_default
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.training import LossAndTerms, retain_batches, sgd_for, trainable_copy

PartBatch = tuple[torch.Tensor, torch.Tensor, str]
"""Images, the labels they are trained towards, and the part they come from (``"forget"`` or ``"retain"``)."""

TERM_OF_PART = {"forget": "forget_random_ce", "retain": "retain_ce"}
"""The recorded name of a step's cross-entropy, by the part of the data the step trains on."""


def random_wrong_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """For every label a class drawn uniformly from the ``num_classes − 1`` others (never the true
    one), from ``generator`` (on the CPU) so that a seed reproduces the draw on any device."""
    if num_classes < 2:
        raise ConfigError(f"random labels need at least 2 classes, got {num_classes}")
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift.to(labels.device)) % num_classes


@dataclass
class RandomLabelConfig(SGDMethodConfig):
    """SalUn's RL values: lr 0.013, SGD momentum 0.9, weight decay 5e-4; the retain-free form may
    run 101 epochs to reach forget accuracy 0."""

    lr: float = new_default(SGDMethodConfig, "lr", 0.013)
    weight_decay: float = new_default(SGDMethodConfig, "weight_decay", 5e-4)


@dataclass
class RandomLabelDRConfig(RandomLabelConfig):
    """The published RL: 10 epochs, each a pass over the relabelled D_f and one over D_r."""

    max_epochs: int = hyperparameter(
        10, "cap on epochs, each one pass over the relabelled forget set then one over the retained images D_r "
        "(published: 10); higher trains longer; unit: epochs", key=True
    )


class RandomLabel(UnlearningMethod[RandomLabelConfig]):
    name = "random_label"
    config_class = RandomLabelConfig
    data_access = "forget"
    uses_global_rng = False
    stop_every = "epoch"

    def setup(self, ctx: UnlearnContext) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = sgd_for(self.model.parameters(), self.config)
        self.generator = torch.Generator().manual_seed(ctx.seed)

    def forget_targets(self, ctx: UnlearnContext) -> torch.Tensor:
        """The labels the forget images are trained towards this epoch: fresh random wrong ones."""
        return random_wrong_labels(ctx.forget_labels, ctx.dataset.num_classes, self.generator)

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[PartBatch]:
        """The forget set in fixed order with this epoch's targets, then, for a method that reads
        D_r (``data_access="retain"``), one shuffled pass over D_r with its true labels."""
        size = self.config.batch_size
        images, targets = ctx.forget_images, self.forget_targets(ctx)
        for start in range(0, images.shape[0], size):
            yield images[start : start + size], targets[start : start + size], "forget"
        if self.data_access == "retain":
            for xr, yr in retain_batches(ctx, self, size, self.generator):
                yield xr, yr, "retain"

    def loss(self, ctx: UnlearnContext, batch: PartBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        images, targets, part = batch
        ce = F.cross_entropy(self.model(images), targets)
        return ce, {TERM_OF_PART[part]: ce.detach()}


class RandomLabelDR(RandomLabel):
    name = "random_label_dr"
    config_class = RandomLabelDRConfig
    data_access = "retain"
