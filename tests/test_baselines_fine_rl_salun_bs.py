"""The field's baselines FT, RL, SalUn and Boundary Shrink on the tiny data: they forget, read only
the data they declare, keep their masks and labels honest and repeat themselves for a seed."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError
from stakes_core.methods import METHODS, UnlearnContext, create_method
from stakes_core.methods.boundary_shrink import BoundaryShrink
from stakes_core.methods.random_label import RandomLabel, random_wrong_labels
from stakes_core.methods.salun import SalUn, saliency_mask
from stakes_core.methods.training import forget_batches
from stakes_core.metrics.structure import StructureProbe
from stakes_core.testing import RetainedImageRead, forget_only_context, tiny_context, tiny_model

RETAIN_FREE = {
    "random_label": {"lr": 0.1},
    "salun": {"lr": 0.1},
    "boundary_shrink": {"lr": 0.1},
}
USES_RETAIN = {
    "random_label_dr": {"lr": 0.1},
    "salun_dr": {"lr": 0.05},
}


@pytest.fixture(scope="module")
def ctx() -> UnlearnContext:
    return tiny_context()


@pytest.fixture(scope="module")
def memorised() -> UnlearnContext:
    """The tiny context with its forget images relabelled to a wrong class and an original model that
    memorised those labels: what fine-tuning on D_r can forget (on clean data the forget images are
    typical of their class, and FT keeps them)."""
    base = tiny_context(train_steps=0)
    labels = base.dataset.train_labels.clone()
    labels[base.forget_idx] = (labels[base.forget_idx] + 1) % base.dataset.num_classes
    dataset = dataclasses.replace(base.dataset, train_labels=labels)
    model = tiny_model(dataset)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images = dataset.train_images.float() / 255
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
    model.eval().requires_grad_(False)
    with torch.no_grad():
        assert torch.equal(model(images[base.forget_idx]).argmax(1), labels[base.forget_idx])
    probe = StructureProbe(dataset.train_images[base.probe_idx], base.anchors, model, base.projection)
    return dataclasses.replace(base, original=model, dataset=dataset, probe=probe)


def test_the_methods_declare_their_data_and_own_generators() -> None:
    for name in (*RETAIN_FREE, *USES_RETAIN, "finetune"):
        method = METHODS.get(name)
        assert method.data_access == ("forget" if name in RETAIN_FREE else "retain"), name
        assert method.uses_global_rng is False, name


@pytest.mark.parametrize("name", [*RETAIN_FREE, *USES_RETAIN])
def test_each_method_forgets_the_forget_set(ctx: UnlearnContext, name: str) -> None:
    outcome = create_method(name, **{**RETAIN_FREE, **USES_RETAIN}[name]).run(ctx)
    assert outcome.reached_zero and outcome.records[-1].forget_acc == 0
    assert outcome.records[0].forget_acc == 100


def test_salun_by_gradient_ascent_forgets(ctx: UnlearnContext) -> None:
    outcome = create_method("salun", lr=0.1, forget_loss="ga").run(ctx)
    assert outcome.reached_zero and "forget_ce" in outcome.records[-1].terms


def test_finetune_forgets_memorised_labels_by_training_on_the_retained_images(memorised: UnlearnContext) -> None:
    outcome = create_method("finetune", lr=0.05, batch_size=16).run(memorised)
    assert outcome.records[0].forget_acc == 100
    assert outcome.reached_zero and set(outcome.records[-1].terms) == {"retain_ce"}


@pytest.mark.parametrize("name", list(RETAIN_FREE))
def test_retain_free_methods_read_no_retained_image(ctx: UnlearnContext, name: str) -> None:
    outcome = create_method(name, **RETAIN_FREE[name]).run(forget_only_context(ctx))
    assert outcome.reached_zero


@pytest.mark.parametrize("name", [*USES_RETAIN, "finetune"])
def test_methods_that_use_the_retained_images_read_them(ctx: UnlearnContext, name: str) -> None:
    with pytest.raises(RetainedImageRead):
        create_method(name).run(forget_only_context(ctx))


def test_random_labels_are_never_the_true_label_and_cover_the_others() -> None:
    labels = torch.arange(10).repeat(200)
    drawn = random_wrong_labels(labels, 10, torch.Generator().manual_seed(0))
    assert not (drawn == labels).any()
    for label in range(10):
        assert set(drawn[labels == label].tolist()) == set(range(10)) - {label}
    with pytest.raises(ConfigError):
        random_wrong_labels(labels[:3], 1, torch.Generator())


def test_random_label_draws_fresh_wrong_labels_every_epoch(ctx: UnlearnContext) -> None:
    method = RandomLabel()
    method.setup(ctx)
    epochs = [torch.cat([y for _, y, _ in method.epoch_batches(ctx, epoch)]) for epoch in range(5)]
    assert all(not (targets == ctx.forget_labels).any() for targets in epochs)
    assert len({tuple(targets.tolist()) for targets in epochs}) > 1


def test_salun_mask_keeps_the_requested_share_of_the_most_salient_entries(ctx: UnlearnContext) -> None:
    batches = forget_batches(ctx, 128)
    mask = saliency_mask(ctx.original, batches, 0.3)
    assert list(mask) == [name for name, _ in ctx.original.named_parameters()]
    kept = torch.cat([m.flatten() for m in mask.values()])
    assert kept.sum().item() == round(0.3 * kept.numel())
    probe = copy.deepcopy(ctx.original).eval().requires_grad_(True)
    for images, labels in batches:
        (-F.cross_entropy(probe(images), labels)).backward()
    saliency = torch.cat([p.grad.abs().flatten() for p in probe.parameters()])
    assert saliency[kept].min() >= saliency[~kept].max()


def test_salun_moves_only_masked_in_weights(ctx: UnlearnContext) -> None:
    method = SalUn(lr=0.1, mask_ratio=0.2)
    outcome = method.run(ctx)
    original = dict(ctx.original.named_parameters())
    moved = 0
    for name, parameter in outcome.model.named_parameters():
        frozen = ~method.mask[name]
        assert torch.equal(parameter[frozen], original[name][frozen]), name
        moved += int((parameter != original[name]).sum())
    assert 0 < moved <= sum(int(m.sum()) for m in method.mask.values())


@pytest.mark.parametrize("bad", [{"mask_ratio": 0.0}, {"mask_ratio": 1.5}])
def test_salun_refuses_a_mask_ratio_outside_0_to_1(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SalUn(**bad)


def test_boundary_shrink_labels_are_wrong_and_fall_back_to_the_nearest_wrong_class(ctx: UnlearnContext) -> None:
    for epsilon in (0.1, 0.5):
        method = BoundaryShrink(epsilon=epsilon)
        method.setup(ctx)
        assert not (method.targets == ctx.forget_labels).any()
    tiny_step = BoundaryShrink(epsilon=1e-4)  # rounded to 1/255, x' = x: no boundary is crossed
    tiny_step.setup(ctx)
    with torch.no_grad():
        logits = ctx.original(ctx.forget_images)
    assert torch.equal(logits.argmax(1), ctx.forget_labels)
    runner_up = logits.scatter(1, ctx.forget_labels[:, None], float("-inf")).argmax(1)
    assert torch.equal(tiny_step.targets, runner_up)
    with pytest.raises(ConfigError):
        BoundaryShrink(epsilon=0.0)


@pytest.mark.parametrize("name", [*RETAIN_FREE, *USES_RETAIN, "finetune"])
def test_a_seed_repeats_the_run(ctx: UnlearnContext, name: str) -> None:
    settings = {**RETAIN_FREE, **USES_RETAIN}.get(name, {}) | {"max_epochs": 2}
    first, second = (create_method(name, **settings).run(ctx) for _ in range(2))
    assert [r.forget_acc for r in first.records] == [r.forget_acc for r in second.records]
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
