"""The ``bn_stats`` option of every method: frozen batch norm leaves a model that cannot move
bit-identical, train-mode batch norm (the paper's, the default) does not."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from stakes_core.infra.errors import ConfigError
from stakes_core.methods import (
    METHODS,
    UnlearningMethod,
    create_method,
    forget_batches,
    hyperparameters,
    trainable_copy,
)
from stakes_core.methods.l2ul import mas_importance
from stakes_core.methods.training import Batch, LossAndTerms
from stakes_core.testing import tiny_context

FAST = {"max_epochs": 3, "n_adv": 4, "pgd_iterations": 3, "pgd_eps": 1.0, "pgd_step": 0.3}
STILL = [
    ("neggrad", {}),
    ("adv", {}),
    ("l2ul", {}),
    ("oracle", {}),
    ("structguard", {"projector_lr": 0.5}),  # the projector learns; backbone and head may not move
    ("structguard", {"importance": "authors"}),  # the released estimate, which keeps its batch-norm updates
    ("structguard", {"importance": "authors_cycling"}),
]


class Ascent(UnlearningMethod):
    """A user's method: gradient ascent with its own ``train_mode`` that knows nothing of ``bn_stats``."""

    name = "test_ascent"

    def setup(self, ctx: Any) -> None:
        self.model = trainable_copy(ctx.original)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.config.lr)

    def train_mode(self) -> None:
        self.model.train()

    def epoch_batches(self, ctx: Any, epoch: int) -> list[Batch]:
        return forget_batches(ctx, 2)

    def loss(self, ctx: Any, batch: Batch, epoch: int, index: int, step: int) -> LossAndTerms:
        return -torch.nn.functional.cross_entropy(self.model(batch[0]), batch[1]), {}


def still(name: str, bn_stats: str, **extra: Any) -> UnlearningMethod:
    """``name`` with every learning rate of the backbone and head at 0, run for a few steps."""
    keys = set(METHODS.get(name).config_class.__dataclass_fields__)
    values = {k: v for k, v in {**FAST, "stop_from_epoch": FAST["max_epochs"]}.items() if k in keys}
    return create_method(name, **values, **extra, lr=0.0, bn_stats=bn_stats)


def changed(method: UnlearningMethod, original: torch.nn.Module) -> list[str]:
    """The entries of the backbone's ``state_dict`` that are not bit-identical to the original's."""
    before = original.state_dict()
    return [name for name, value in method.model.state_dict().items() if not torch.equal(value, before[name])]


@pytest.mark.parametrize(("name", "extra"), STILL)
def test_frozen_batch_norm_and_lr_0_leave_the_backbone_bit_identical(name: str, extra: dict[str, Any]) -> None:
    context = tiny_context()
    method = still(name, "frozen", **extra)
    outcome = method.run(context)
    assert outcome.steps >= FAST["max_epochs"]
    assert changed(method, context.original) == []
    if name == "structguard":  # the estimate ran, and the projector learned on a backbone that did not move
        assert method.importance is not None
        assert outcome.records[1].views["projector"] != outcome.records[-1].views["projector"]


@pytest.mark.parametrize(("name", "extra"), STILL)
def test_train_mode_batch_norm_moves_the_running_statistics_with_lr_0(name: str, extra: dict[str, Any]) -> None:
    context = tiny_context()
    method = still(name, "train", **extra)
    method.run(context)
    moved = changed(method, context.original)
    assert moved and all(n.endswith(("running_mean", "running_var", "num_batches_tracked")) for n in moved)


def test_a_users_method_gets_frozen_batch_norm_without_code_of_its_own() -> None:
    context = tiny_context()
    frozen, train = Ascent(lr=0.0, max_epochs=2, bn_stats="frozen"), Ascent(lr=0.0, max_epochs=2)
    frozen.run(context)
    train.run(context)
    assert changed(frozen, context.original) == [] and changed(train, context.original)


def test_bn_stats_defaults_to_the_papers_train_mode_for_every_method() -> None:
    for name in ("neggrad", "adv", "l2ul", "structguard", "oracle"):
        option = next(h for h in hyperparameters(name) if h.name == "bn_stats")
        assert (option.default, option.choices, option.key) == ("train", ("train", "frozen"), False)
    with pytest.raises(ConfigError, match="bn_stats='stale' is not one of train, frozen"):
        create_method("adv", bn_stats="stale")


def test_frozen_batch_norm_still_trains_the_affine_weights_and_the_projector_norm() -> None:
    context = tiny_context()
    method = create_method("structguard", **FAST, bn_stats="frozen")
    outcome = method.run(context)
    backbone_norm = next(m for m in method.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    original_norm = next(m for m in context.original.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(backbone_norm.running_mean, original_norm.running_mean)
    assert not torch.equal(backbone_norm.weight, original_norm.weight)
    projector_norm = method.projector.hidden[1]
    assert projector_norm.num_batches_tracked == outcome.steps  # train mode in every step (importance uses a copy)


def test_mas_importance_under_frozen_batch_norm_uses_the_stored_statistics() -> None:
    context = tiny_context()
    batches = forget_batches(context, 128)
    frozen = mas_importance(context.original, batches, "frozen")
    train = mas_importance(context.original, batches)
    assert frozen.keys() == train.keys()
    assert any(not torch.equal(frozen[n], train[n]) for n in frozen)
    assert all(not m.training for m in context.original.modules())  # the original is never touched
