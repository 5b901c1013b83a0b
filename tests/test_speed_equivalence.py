"""The fast paths compute what the reference paths compute (on tiny inputs, CPU only)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from stakes_core.infra.accel import Acceleration
from stakes_core.methods import create_method
from stakes_core.methods.attacks import PGDConfig, frozen, targeted_l2_pgd
from stakes_core.methods.importance import cycle_visits
from stakes_core.metrics.accuracy import accuracy
from stakes_core.metrics.structure import backbone_embedder
from stakes_core.run.config import resolve_device
from tests.helpers import tiny_context

# proxy set of 4·5 = 20 examples in batches of 8, 8, 4; |D_r| = 92 is no multiple of 20, so the
# authors' loop ends inside a cycle (4 full cycles and the first two batches of a fifth)
SG = {"max_epochs": 1, "n_adv": 5, "batch_size": 8, "pgd_iterations": 2, "pgd_eps": 1.0, "pgd_step": 0.3}


pytestmark = pytest.mark.slow  # equivalence of the fast paths with literal references: seconds per test


@pytest.fixture(scope="module")
def context():
    return tiny_context(k=4)


@pytest.fixture(scope="module")
def structguard(context):
    method = create_method("structguard", **SG)
    torch.manual_seed(0)
    method.setup(context)
    return context, method, {n: t.clone() for n, t in method.model.state_dict().items()}


def estimate(method, context, state, mode, proxy=None):
    """Importance with ``mode`` from ``state``, and the buffers it leaves."""
    method.model.load_state_dict(state)
    method.config.importance = mode
    saved = method.proxy_images
    method.proxy_images = saved if proxy is None else proxy
    try:
        importance = method.estimate_importance(context)
    finally:
        method.proxy_images = saved
    return importance, {n: b.clone() for n, b in method.model.named_buffers()}


def test_cycle_visits_follow_the_authors_loop() -> None:
    assert cycle_visits([8, 8, 4], 92) == [0, 1, 2] * 4 + [0, 1]  # 80 + 16 = 96 ≥ 92
    assert cycle_visits([8, 8, 4], 5) == [0]
    with pytest.raises(ValueError):
        cycle_visits([], 10)


def test_one_pass_authors_equals_the_literal_cycling_loop(structguard) -> None:
    """Importance and batch-norm side effect: equal up to float rounding (the per-visit sums
    become one multiplication, the running-statistics updates a replay of recorded statistics)."""
    context, method, state = structguard
    assert context.num_retained == 92 and method.proxy_images.shape[0] == 20
    literal, literal_buffers = estimate(method, context, state, "authors_cycling")
    fast, fast_buffers = estimate(method, context, state, "authors")
    for name in literal:
        assert torch.allclose(fast[name], literal[name], rtol=1e-5, atol=1e-9), name
    assert any(not torch.equal(literal_buffers[n], state[n]) for n in literal_buffers if "running" in n)
    for name in literal_buffers:
        if name.endswith("num_batches_tracked"):
            assert torch.equal(fast_buffers[name], literal_buffers[name])
        else:
            assert torch.allclose(fast_buffers[name], literal_buffers[name], rtol=1e-5, atol=1e-6), name


def test_one_pass_differs_from_the_authors_only_by_the_partial_cycle(structguard) -> None:
    """Every visit of a batch gives the same gradient, so with c full cycles of N examples and a
    partial cycle of the first n_P examples, I_authors = (c·N·I_one_pass + n_P·I_prefix) / (c·N + n_P),
    where I_prefix is the one-pass estimate over those first n_P examples."""
    context, method, state = structguard
    authors, _ = estimate(method, context, state, "authors_cycling")
    one_pass, buffers = estimate(method, context, state, "one_pass")
    prefix, _ = estimate(method, context, state, "one_pass", proxy=method.proxy_images[:16])
    assert all(torch.equal(b, state[n]) for n, b in buffers.items())  # one_pass restores batch norm
    cycles, full, partial = 4, 20, 16
    for name in authors:
        expected = (cycles * full * one_pass[name] + partial * prefix[name]) / (cycles * full + partial)
        assert torch.allclose(authors[name], expected, rtol=1e-5, atol=1e-9), name
    difference = torch.cat([(authors[n] - one_pass[n]).flatten() for n in authors]).norm()
    assert 0 < difference <= partial / (cycles * full + partial) * torch.cat(
        [(prefix[n] - one_pass[n]).flatten() for n in authors]).norm() * (1 + 1e-4)


def test_attack_freezes_parameters_without_changing_the_result(context) -> None:
    model = context.original
    x, targets = context.forget_images, (context.forget_labels + 1) % context.dataset.num_classes
    config = PGDConfig(eps=1.0, step=0.3, iterations=4)
    reference = targeted_l2_pgd(model, x, targets, config, torch.Generator().manual_seed(3))
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    try:
        out = targeted_l2_pgd(model, x, targets, config, torch.Generator().manual_seed(3))
        assert torch.equal(out, reference)
        assert all(p.requires_grad for p in model.parameters())
        for parameter, grad in zip(model.parameters(), grads):  # no parameter gradient was computed
            assert (parameter.grad is None) if grad is None else torch.equal(parameter.grad, grad)
        with pytest.raises(RuntimeError), frozen(model):
            raise RuntimeError("restored even on error")
        assert all(p.requires_grad for p in model.parameters())
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(False)


def test_channels_last_attack_agrees_with_the_default_layout_on_cpu(context) -> None:
    x, targets = context.forget_images, (context.forget_labels + 1) % context.dataset.num_classes
    config = PGDConfig(eps=1.0, step=0.3, iterations=3)
    default = targeted_l2_pgd(context.original, x, targets, config, torch.Generator().manual_seed(0))
    model = Acceleration(channels_last=True).model(copy.deepcopy(context.original))
    out = targeted_l2_pgd(model, x, targets, config, torch.Generator().manual_seed(0), Acceleration(channels_last=True))
    assert out.is_contiguous() and torch.allclose(out, default, atol=1e-4)


def test_step_records_equal_the_reference_metrics(context) -> None:
    """The record built with one device-to-host copy holds what ``metrics.accuracy`` and
    ``StructureProbe.collapse`` report for the same model."""
    method = create_method("adv", **{k: v for k, v in SG.items() if k != "batch_size"}, lr=0.05)
    outcome = method.run(context)
    last, model = outcome.records[-1], outcome.model
    assert last.forget_acc == accuracy(model, context.forget_images, context.forget_labels)
    assert last.collapse == context.probe.collapse(backbone_embedder(model, context.projection), model)
    assert last.loss == pytest.approx(-last.terms["forget_ce"] * 4 / 24 + last.terms["proxy_ce"] * 20 / 24, rel=1e-5)


@pytest.mark.parametrize("accel", [Acceleration(), Acceleration(channels_last=True), Acceleration("bf16")])
def test_acceleration_settings_run_and_default_is_fp32(context, accel: Acceleration) -> None:
    """Default settings are the fp32 path (bitwise equal to a run without ``accel``);
    channels_last stays within float noise of it; bf16 runs and stays finite."""
    plain = create_method("structguard", **SG).run(context)
    outcome = create_method("structguard", **SG).run(dataclasses.replace(context, accel=accel, unlearned={}))
    assert len(outcome.records) == len(plain.records)
    first, reference = outcome.records[1], plain.records[1]
    if accel == Acceleration():
        assert [r.loss for r in outcome.records] == [r.loss for r in plain.records]
    elif accel.channels_last:
        assert first.loss == pytest.approx(reference.loss, rel=1e-4)
        assert first.collapse == pytest.approx(reference.collapse, abs=1e-4)
    assert all(torch.isfinite(torch.tensor([r.loss, r.collapse])).all() for r in outcome.records[1:])
    with pytest.raises(ValueError, match="precision"):
        Acceleration("fp8")


def test_device_names_are_checked() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_stakes_sgd_is_bit_identical_to_torch_sgd() -> None:
    """stakes' SGD (no torch._dynamo import) makes the updates torch.optim.SGD makes, bit for bit:
    parameter groups with their own learning rates, momentum, weight decay, a parameter without
    a gradient, three steps."""
    from stakes_core.methods.sgd import SGD

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3), torch.nn.Linear(3, 3))

    ours_model, torch_model = make(), make()
    groups = lambda m: [{"params": m[0].parameters(), "lr": 0.05}, {"params": [*m[2].parameters(), *m[3].parameters()]}]  # noqa: E731
    ours = SGD(groups(ours_model), lr=0.1, momentum=0.9, weight_decay=5e-4)
    reference = torch.optim.SGD(groups(torch_model), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(8, 6)
    for _ in range(3):
        for model, optimizer in ((ours_model, ours), (torch_model, reference)):
            optimizer.zero_grad(set_to_none=True)
            model[2](model[1](model[0](x))).square().sum().backward()  # the last layer gets no gradient
            optimizer.step()
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(a, b)
    assert ours_model[3].weight.grad is None
