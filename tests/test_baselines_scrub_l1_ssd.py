"""SCRUB, l1-sparse and SSD (the field's baselines) on tiny models: they forget, SSD dampens only
what its rule selects, the L1 weight decays linearly, and each reads only the data it declares."""

from __future__ import annotations

import pytest
import torch

from stakes_core.infra.errors import ConfigError
from stakes_core.methods import create_method
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.l1_sparse import l1_weight
from stakes_core.methods.ssd import SSDRetain, squared_gradient_importance
from stakes_core.methods.training import forget_batches, trainable_copy
from stakes_core.testing import RetainedImageRead, forget_only_context, tiny_context
from tests.test_methods import test_every_hyperparameter_says_in_one_line_what_it_does as check_hyperparameters

PROXY = {"n_adv": 4, "pgd_iterations": 3, "pgd_eps": 1.0, "pgd_step": 0.3}
QUICK = {
    "scrub": {"max_epochs": 2},
    "l1_sparse": {"lr": 0.05, "max_epochs": 3},
    "l1_sparse_dr": {"max_epochs": 2},
    "ssd": PROXY,
    "ssd_dr": {},
}


@pytest.fixture(scope="module")
def context() -> UnlearnContext:
    """One tiny context for the module: the methods copy the original model and never change it."""
    return tiny_context()


def test_scrub_forgets_with_a_max_pass_then_a_min_pass_per_epoch(context: UnlearnContext) -> None:
    outcome = create_method("scrub", lr=0.03, msteps=10, max_epochs=10).run(context)
    assert outcome.reached_zero and outcome.records[-1].forget_acc == 0
    # tiny: the 4 forget images and the 92 retained ones are one batch each, so each epoch is (max, min)
    assert [sorted(r.terms) for r in outcome.records[1:3]] == [["forget_kl"], ["retain_ce", "retain_kl"]]


def test_scrub_takes_max_passes_only_in_its_first_msteps_epochs(context: UnlearnContext) -> None:
    outcome = create_method("scrub", msteps=1, max_epochs=3).run(context)
    passes = [(r.epoch, "forget_kl" in r.terms) for r in outcome.records[1:]]
    assert passes == [(0, True), (0, False), (1, False), (2, False)]
    assert not outcome.reached_zero  # the published small-scale lr barely moves the tiny model in 3 epochs


def test_l1_sparse_forgets_on_the_forget_set_alone(context: UnlearnContext) -> None:
    outcome = create_method("l1_sparse", lr=0.05).run(forget_only_context(context))
    assert outcome.reached_zero and outcome.records[-1].forget_acc == 0
    assert outcome.records[-1].terms["l1"] > 0 and outcome.records[-1].terms["forget_ce"] > 1


def test_l1_sparse_dr_forgets_once_the_l1_term_dominates(context: UnlearnContext) -> None:
    """On the tiny data fine-tuning on D_r keeps the forget images (they are easy); a large α
    shrinks the weights until the model predicts one class, which none of the forget images has."""
    outcome = create_method("l1_sparse_dr", alpha=0.1, lr=0.05, max_epochs=30).run(context)
    assert outcome.reached_zero and outcome.records[-1].forget_acc == 0
    assert outcome.records[-1].terms["l1"] < outcome.records[1].terms["l1"] / 2


def test_the_l1_weight_decays_linearly_to_zero(context: UnlearnContext) -> None:
    assert [l1_weight(2.0, t, 6, 2) for t in range(7)] == [2.0, 1.5, 1.0, 0.5, 0.0, 0.0, 0.0]
    assert [l1_weight(1.0, t, 4, 0) for t in range(4)] == [1.0, 0.75, 0.5, 0.25]
    for bad in (4, 5, -1):
        with pytest.raises(ConfigError, match="no_l1_epochs"):
            l1_weight(1.0, 0, 4, bad)
    outcome = create_method("l1_sparse", lr=1e-6, alpha=0.2, max_epochs=4).run(context)
    assert [r.terms["l1_weight"] for r in outcome.records[1:]] == pytest.approx([0.2, 0.15, 0.1, 0.05])


def test_ssd_dampens_only_the_selected_entries_and_never_grows_a_weight(context: UnlearnContext) -> None:
    method = SSDRetain()
    outcome = method.run(context)
    assert outcome.steps == 1 and outcome.records[-1].terms["selected_fraction"] > 0
    fresh = squared_gradient_importance(trainable_copy(context.original), forget_batches(context, 128))
    before = dict(context.original.named_parameters())
    changed = 0
    for name, after in outcome.model.named_parameters():
        full, forget = method.importance_all[name], method.importance_forget[name]
        assert torch.allclose(forget, fresh[name])  # measured on the original model
        selected = forget > 10.0 * full
        expected = torch.where(selected, before[name] * (full / forget).clamp(max=1.0), before[name])
        assert torch.allclose(after, expected, rtol=1e-6, atol=0)
        assert torch.equal(after[~selected], before[name][~selected])
        assert bool((after.abs() <= before[name].abs()).all())
        changed += int((after != before[name]).sum())
    assert changed > 0


def test_ssd_with_a_huge_selection_weighting_changes_nothing(context: UnlearnContext) -> None:
    for name, extra in (("ssd_dr", {}), ("ssd", PROXY)):
        outcome = create_method(name, selection_weighting=1e30, **extra).run(context)
        assert outcome.records[-1].terms["selected_fraction"] == 0
        original = context.original.state_dict()
        assert all(torch.equal(value, original[key]) for key, value in outcome.model.state_dict().items())


@pytest.mark.parametrize("name", ["l1_sparse", "ssd"])
def test_retain_free_methods_run_without_the_retained_images(context: UnlearnContext, name: str) -> None:
    method = create_method(name, **QUICK[name])
    assert method.data_access == "forget" and not method.uses_global_rng
    assert method.run(forget_only_context(context)).steps >= 1


@pytest.mark.parametrize("name", ["scrub", "l1_sparse_dr", "ssd_dr"])
def test_methods_that_read_the_retained_images_say_so_and_fail_without_them(context: UnlearnContext, name: str) -> None:
    method = create_method(name, **QUICK[name])
    assert method.data_access == "retain" and not method.uses_global_rng
    with pytest.raises(RetainedImageRead):
        method.run(forget_only_context(context))


@pytest.mark.parametrize("name", sorted(QUICK))
def test_each_baseline_is_deterministic_for_a_seed(context: UnlearnContext, name: str) -> None:
    runs = []
    for global_seed in (1, 2):  # the process-wide generator must not matter
        torch.manual_seed(global_seed)
        runs.append(create_method(name, **QUICK[name]).run(context))
    assert [(r.forget_acc, r.collapse, r.loss, r.terms) for r in runs[0].records] == [
        (r.forget_acc, r.collapse, r.loss, r.terms) for r in runs[1].records
    ]


@pytest.mark.parametrize("bad", [{"msteps": -1}, {"temperature": 0.0}])
def test_scrub_refuses_a_bad_setting(context: UnlearnContext, bad: dict) -> None:
    with pytest.raises(ConfigError, match="scrub needs"):
        create_method("scrub", **bad).run(context)


def test_ssd_refuses_a_negative_constant(context: UnlearnContext) -> None:
    with pytest.raises(ConfigError, match="ssd_dr needs"):
        create_method("ssd_dr", dampening=-1.0).run(context)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_every_hyperparameter_of_these_baselines_says_in_one_line_what_it_does(name: str) -> None:
    check_hyperparameters(name)  # the registry-wide test in test_methods.py lists the paper's methods only
