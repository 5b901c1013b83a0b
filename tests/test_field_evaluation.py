"""The field's evaluation of unlearned models: the loss attack, U-LiRA's per-example likelihood
ratios and relearn time, each checked on a case whose answer is known (same distributions at
chance, separated ones found, members and non-members of tiny overfit models told apart), plus
their views on a tiny saved run (shadow models trained through the cache, then served from it)."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from helpers import tiny_context, tiny_dataset

from stakes_core.analysis import AnalysisError, LoadedRun, load_run
from stakes_core.analysis.membership import fit_loss_attack, loss_attack, loss_attack_view, per_sample_loss
from stakes_core.analysis.relearn import relearn_steps, relearn_view
from stakes_core.analysis.ulira import (
    ShadowPlan,
    check_shadow_cost,
    excluded_set,
    likelihood_scores,
    model_phi,
    shadow_seeds,
    true_label_logit,
    ulira_view,
)
from stakes_core.data import DATASETS
from stakes_core.figures.membership import loss_attack_figure, ulira_figure
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import UnlearnContext
from stakes_core.metrics.accuracy import accuracy
from stakes_core.models.pretrain import PretrainConfig
from stakes_core.run.config import experiment_config
from stakes_core.run.experiment import run_experiment
from stakes_core.testing import scratch_registries, write_tiny_preset


@pytest.fixture(scope="module")
def context() -> UnlearnContext:
    return tiny_context()


# --- the loss attack ---------------------------------------------------------------------------
def test_the_loss_attack_is_at_chance_when_forget_and_test_losses_share_a_distribution() -> None:
    rng = np.random.default_rng(0)
    attack = fit_loss_attack(rng.exponential(0.5, 400), rng.exponential(0.5, 400))
    assert abs(attack.accuracy - 0.5) < 0.08 and abs(attack.auc - 0.5) < 0.06
    assert attack.splits == 10 and attack.n_per_class == 400 and attack.held_out == 80  # the kit's 10 % of 800


def test_the_loss_attack_finds_separated_losses_and_says_which_way_they_lie() -> None:
    rng = np.random.default_rng(1)
    remembered = rng.uniform(1e-4, 1e-3, 50)  # a model that fits its training images: tiny losses
    unseen = rng.uniform(0.3, 2.0, 80)
    kept = fit_loss_attack(remembered, unseen)
    assert kept.accuracy > 0.95 and kept.auc == 1.0 and kept.n_per_class == 50
    over_forgotten = fit_loss_attack(rng.uniform(5.0, 9.0, 50), unseen)  # forgotten lose more than unseen ones
    assert over_forgotten.accuracy > 0.95 and over_forgotten.auc == 0.0


def test_the_loss_attack_runs_on_four_forgotten_images_and_refuses_one() -> None:
    attack = fit_loss_attack(np.array([0.01, 0.02, 0.03, 0.04]), np.array([1.0, 2.0, 1.5, 0.8]))
    assert attack.splits == 10 and attack.held_out == 2 and attack.auc == 1.0
    assert all(value in (0.0, 0.5, 1.0) for value in attack.split_accuracies)
    with pytest.raises(AnalysisError, match="≥ 2 forgotten"):
        fit_loss_attack(np.array([0.1]), np.array([1.0, 2.0]))


def test_loss_attack_uses_the_models_cross_entropy(context: UnlearnContext) -> None:
    images, labels = context.forget_images, context.forget_labels
    expected = torch.nn.functional.cross_entropy(context.original(images).double(), labels, reduction="none")
    assert np.allclose(per_sample_loss(context.original, images, labels), expected.numpy())
    test = context.dataset
    attack = loss_attack(context.original, images, labels, test.test_images[:10], test.test_labels[:10])
    assert attack.n_per_class == 4 and 0.0 <= attack.accuracy <= 1.0


# --- U-LiRA ------------------------------------------------------------------------------------
def test_phi_is_the_logit_of_the_true_label_confidence_and_stays_finite() -> None:
    outputs = torch.tensor([[2.0, 0.5, -1.0], [300.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 0, 2])
    phi = true_label_logit(outputs, labels)
    p = outputs.double().softmax(1)[0, 0]
    assert phi[0].item() == pytest.approx(math.log(p / (1 - p)))
    assert phi[1].item() == pytest.approx(300 - math.log(2))  # p rounds to 1 in float64; φ does not overflow
    assert phi[2].item() == pytest.approx(math.log(0.5))


def test_likelihood_scores_follow_the_two_gaussians_per_example_or_pooled() -> None:
    phi_in = np.array([[1.0, 10.0], [3.0, 20.0], [2.0, 30.0]])
    phi_out = np.array([[-1.0, 0.0], [-3.0, 2.0], [-2.0, 4.0]])
    model = np.array([0.5, 12.0])

    def log_normal(x, mean, std):  # type: ignore[no-untyped-def]
        return -math.log(std) - 0.5 * ((x - mean) / std) ** 2

    per_example = likelihood_scores(phi_in, phi_out, model, variance="per_example")
    for t in range(2):
        expected = log_normal(model[t], phi_in[:, t].mean(), phi_in[:, t].std(ddof=1)) - log_normal(
            model[t], phi_out[:, t].mean(), phi_out[:, t].std(ddof=1))
        assert per_example[t] == pytest.approx(expected)
    pooled = likelihood_scores(phi_in, phi_out, model, variance="pooled")
    std_in = math.sqrt(phi_in.var(axis=0, ddof=1).mean())
    std_out = math.sqrt(phi_out.var(axis=0, ddof=1).mean())
    expected = log_normal(12.0, 20.0, std_in) - log_normal(12.0, 2.0, std_out)
    assert pooled[1] == pytest.approx(expected) and pooled[1] != pytest.approx(per_example[1])
    identical = likelihood_scores(np.ones((4, 2)), np.zeros((4, 2)), np.array([1.0, 0.0]))  # zero spread: floored
    assert np.isfinite(identical).all() and identical[0] > 0 > identical[1]
    with pytest.raises(ConfigError, match="≥ 2 shadows"):
        likelihood_scores(phi_in[:1], phi_out, model)


@pytest.mark.parametrize(("variance", "lowest_spread"), [("per_example", 0.5), ("pooled", 3.0)])
def test_likelihood_scores_are_at_chance_when_in_and_out_are_one_distribution(
    variance: str, lowest_spread: float
) -> None:
    """Per-example spreads may differ from target to target; a pooled one assumes they do not
    (with spreads from 0.5 to 3 its share lands about 5 points off 0.5)."""
    rng = np.random.default_rng(2)
    targets = 4000
    spread = rng.uniform(lowest_spread, 3.0, targets)
    centre = rng.normal(0, 5, targets)
    draw = lambda n: centre + spread * rng.standard_normal((n, targets))  # noqa: E731
    scores = likelihood_scores(draw(16), draw(16), draw(1)[0], variance)
    assert abs((scores > 0).mean() - 0.5) < 0.04


def _train_tiny(images: torch.Tensor, labels: torch.Tensor, seed: int) -> torch.nn.Module:
    """A small MLP fitted to its training images until it memorises them (a few milliseconds)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return model.eval()


def test_likelihood_scores_tell_members_from_non_members_of_tiny_overfit_models() -> None:
    dataset = tiny_dataset()
    images, labels = dataset.train_images.float() / 255, dataset.train_labels.clone()
    targets = torch.tensor([3, 30, 55, 80])
    labels[targets] = (labels[targets] + 1) % 4  # mislabelled: only a model trained on them predicts these labels
    without = torch.ones(labels.numel(), dtype=torch.bool)
    without[targets] = False
    phis = {}
    for side, rows in (("in", slice(None)), ("out", without)):
        models = [_train_tiny(images[rows], labels[rows], seed) for seed in range(4)]
        phis[side] = np.stack([model_phi(m, images[targets], labels[targets]) for m in models])
    member = model_phi(_train_tiny(images, labels, 100), images[targets], labels[targets])
    non_member = model_phi(_train_tiny(images[without], labels[without], 101), images[targets], labels[targets])
    for variance in ("per_example", "pooled"):
        assert (likelihood_scores(phis["in"], phis["out"], member, variance) > 0).all()
        assert (likelihood_scores(phis["in"], phis["out"], non_member, variance) < 0).all()


def test_the_excluded_set_must_contain_the_forget_set() -> None:
    assert excluded_set([5, 2], None, 10).tolist() == [2, 5]
    assert excluded_set([5, 2], [7, 2, 5, 5], 10).tolist() == [2, 5, 7]  # a superset: nested forget sets share it
    with pytest.raises(ConfigError, match=r"E ⊇ D_f.*\[5\]"):
        excluded_set([5, 2], [2, 7], 10)
    with pytest.raises(ConfigError, match="do not exist"):
        excluded_set([5, 2], [2, 5, 10], 10)


def test_shadow_seeds_leave_the_presets_seed_out() -> None:
    assert shadow_seeds(3, preset_seed=0) == [1000, 1001, 1002]
    with pytest.raises(ConfigError, match="would be the original"):
        shadow_seeds(16, preset_seed=1005)


def test_a_costly_cpu_plan_is_refused_with_its_estimate_and_an_accelerator_is_not() -> None:
    plan = ShadowPlan((PretrainConfig("resnet18", 160, seed=1000),) * 16, torch.tensor([1, 2]), 32, 32 * 3600.0)
    with pytest.raises(ConfigError, match=r"32 of 32 shadow models to train, about 32\.0 h on the CPU"):
        check_shadow_cost(plan, "cpu", 3600)
    check_shadow_cost(plan, "cuda", 3600)  # only a CPU is limited (the check reads the device, it needs none)
    check_shadow_cost(plan, "cpu", None)
    unknown = ShadowPlan(plan.configs, plan.excluded, 2, math.nan)
    with pytest.raises(ConfigError, match="unknown"):
        check_shadow_cost(unknown, "cpu", 3600)


# --- relearn time ------------------------------------------------------------------------------
def test_relearning_counts_steps_back_to_the_target_and_leaves_the_model_alone(context: UnlearnContext) -> None:
    model, images, labels = context.original, context.forget_images, context.forget_labels
    target = accuracy(model, images, labels)
    assert relearn_steps(model, images, labels, target) == 0
    unlearned = copy.deepcopy(model)
    torch.manual_seed(0)
    unlearned.fc.reset_parameters()  # a new classifier: the forget set no longer all right
    assert accuracy(unlearned, images, labels) < target
    before = [p.clone() for p in unlearned.parameters()]
    steps = relearn_steps(unlearned, images, labels, target)
    assert steps is not None and 0 < steps <= 200
    assert all(torch.equal(a, b) for a, b in zip(before, unlearned.parameters()))
    assert relearn_steps(unlearned, images, labels, target, max_steps=0) is None  # not reached: None
    with pytest.raises(ConfigError, match="lr > 0"):
        relearn_steps(unlearned, images, labels, target, lr=0.0)
    with pytest.raises(AnalysisError, match="diverged at step"):
        relearn_steps(unlearned, images, labels, target, lr=1e12)


# --- the views on a tiny saved run -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedRun]:
    """A tiny run (k=4, NegGrad one epoch) saved and loaded, with its own cache."""
    folder = tmp_path_factory.mktemp("field")
    preset = write_tiny_preset(folder)
    with scratch_registries(), pytest.MonkeyPatch.context() as patch:
        patch.setenv("STAKES_CACHE_DIR", str(folder / "cache"))
        DATASETS.register("tiny", lambda **_: tiny_dataset())
        config = experiment_config(str(preset), k=4, seed=0, methods=["neggrad"], overrides=["neggrad.max_epochs=1"],
                                   device="cpu")
        directory = run_experiment(config, progress=False).save(Path(folder / "run"))
        yield load_run(directory)


def test_ulira_view_trains_its_shadows_once_then_reads_them_from_the_cache(tiny_run: LoadedRun) -> None:
    with pytest.raises(ConfigError, match=r"4 of 4 shadow models to train, about .* s on the CPU"):
        ulira_view(tiny_run, shadows=2, progress=False, max_cpu_seconds=1e-9)  # refused before training
    first = ulira_view(tiny_run, shadows=2, progress=False)
    assert first.trained == 4 and first.seeds == [1000, 1001] and first.phi_in.shape == first.phi_out.shape == (2, 4)
    assert set(first.scores) == {"original", "neggrad"} and all(s.shape == (4,) for s in first.scores.values())
    assert set(first.share_member.values()) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    again = ulira_view(tiny_run, shadows=2, progress=False, max_cpu_seconds=1e-9)  # cached: nothing to refuse
    assert again.trained == 0 and np.array_equal(again.phi_out, first.phi_out)
    with pytest.raises(ConfigError, match="E ⊇ D_f"):
        ulira_view(tiny_run, shadows=2, exclude=tiny_run.forget_indices[1:], progress=False)
    figure = ulira_figure(first)
    assert len(figure.data) == 2 and "member:" in figure.data[0].x[0]


def test_loss_attack_and_relearn_views_cover_the_runs_models(tiny_run: LoadedRun) -> None:
    attacks = loss_attack_view(tiny_run)
    assert list(attacks.attacks) == ["original", "neggrad"] and len(attacks.test_indices) == 4
    assert loss_attack_figure(attacks).data[0].y == tuple(a.accuracy for a in attacks.attacks.values())
    relearn = relearn_view(tiny_run, max_steps=5)
    assert list(relearn.steps) == ["neggrad"] and relearn.max_steps == 5
    reached = relearn.steps["neggrad"]
    assert reached is None or 0 <= reached <= 5
    assert (reached == 0) == (relearn.start_acc["neggrad"] >= relearn.target_acc)
