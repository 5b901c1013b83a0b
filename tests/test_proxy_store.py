"""Proxy sets kept on disk: a second run with the same model, forget set and attack loads the first
one's set bit for bit and is charged its build time; anything that changes the set's bytes
changes its key."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stakes_core.anchors.variants import permuted_anchors
from stakes_core.infra.cache import TensorCache
from stakes_core.methods import UnlearnContext, create_method
from stakes_core.methods.attacks import PGDConfig
from stakes_core.methods.proxy_store import NAMESPACE
from stakes_core.methods.timing import Timer
from tests.helpers import tiny_context

PGD = PGDConfig(eps=1.0, step=0.3, iterations=3)
FAST = {"max_epochs": 2, "n_adv": 4, "pgd_iterations": 3, "pgd_eps": 1.0, "pgd_step": 0.3}


@pytest.fixture(scope="module")
def trained() -> UnlearnContext:
    return tiny_context()


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))


def fresh(context: UnlearnContext, **changes) -> UnlearnContext:
    """A copy of ``context`` with an empty in-memory share, as a new run in a new process has."""
    return dataclasses.replace(context, proxy_cache={}, proxy_locks={}, unlearned={}, **changes)


def stored_entries() -> list:
    return sorted(TensorCache(NAMESPACE).directory.glob("*.pt"))


def test_a_second_run_loads_the_stored_set_and_is_charged_its_build_time(trained, monkeypatch) -> None:
    first_timer, second_timer = Timer(), Timer()
    images, targets = fresh(trained).proxy_set(4, PGD, "uniform_other", first_timer)
    assert len(stored_entries()) == 1

    def no_build(*args, **kwargs):
        raise AssertionError("the stored set should have been loaded")

    monkeypatch.setattr("stakes_core.methods.context.build_proxy_set", no_build)
    loaded_images, loaded_targets = fresh(trained).proxy_set(4, PGD, "uniform_other", second_timer)
    assert torch.equal(loaded_images, images) and torch.equal(loaded_targets, targets)
    assert second_timer.seconds["proxy"] >= first_timer.seconds["proxy"] * 0.5  # charged, not free


def test_other_anchors_share_uniform_targets_but_not_semantic_ones(trained) -> None:
    permuted = permuted_anchors(trained.anchors, seed=1)
    fresh(trained).proxy_set(4, PGD, "uniform_other", Timer())
    fresh(trained, anchors=permuted).proxy_set(4, PGD, "uniform_other", Timer())
    assert len(stored_entries()) == 1
    fresh(trained).proxy_set(4, PGD, "semantic", Timer(), target_tau=0.1)
    fresh(trained, anchors=permuted).proxy_set(4, PGD, "semantic", Timer(), target_tau=0.1)
    assert len(stored_entries()) == 3


@pytest.mark.parametrize("change", ["seed", "n_adv", "pgd", "model", "forget set"])
def test_every_input_of_the_set_is_in_its_key(trained, change) -> None:
    fresh(trained).proxy_set(4, PGD, "uniform_other", Timer())
    context, n_adv, pgd = fresh(trained), 4, PGD
    if change == "seed":
        context = fresh(trained, seed=1)
    elif change == "n_adv":
        n_adv = 5
    elif change == "pgd":
        pgd = dataclasses.replace(PGD, step=0.2)
    elif change == "model":
        model = tiny_context(train_steps=5).original
        context = fresh(trained, original=model)
    else:
        context = fresh(trained, forget_idx=trained.forget_idx.flip(0))
    context.proxy_set(n_adv, pgd, "uniform_other", Timer())
    assert len(stored_entries()) == 2


def test_a_damaged_entry_is_rebuilt(trained) -> None:
    images, _ = fresh(trained).proxy_set(4, PGD, "uniform_other", Timer())
    (entry,) = stored_entries()
    entry.write_bytes(b"not a tensor file")
    with pytest.warns(Warning, match="corrupt|unreadable|checksum"):
        rebuilt, _ = fresh(trained).proxy_set(4, PGD, "uniform_other", Timer())
    assert torch.equal(rebuilt, images)


def test_a_run_served_from_the_store_is_the_same_run(trained) -> None:
    """StructGuard from a cold store and from a warm one: the same model, step for step."""
    outcomes = [create_method("structguard", **FAST).run(fresh(trained)) for _ in range(2)]
    first, second = (outcome.model.state_dict() for outcome in outcomes)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert [r.forget_acc for r in outcomes[0].records] == [r.forget_acc for r in outcomes[1].records]
