"""Study grids, paired variant comparisons and the anchor-invariance check behind the notebooks."""

from __future__ import annotations

import math

import pytest
import torch

from stakes_core.figures.variants import paired_differences_figure
from stakes_core.lab.studies import (
    ABLATION_VARIANTS,
    FAST_EPOCHS,
    FAST_K,
    Study,
    Variant,
    anchor_invariance,
    anchor_variants,
    compare_variants,
    encoders_to_compare,
)
from stakes_core.report.comparison import VariantComparison, mean_interval
from stakes_core.run.config import method_hyperparameters


def test_a_fast_study_shrinks_k_seeds_and_epochs_and_keeps_the_users_overrides() -> None:
    study = Study("digits", ks=[16, 8], seeds=[3, 4, 5], methods=["neggrad"], overrides=["neggrad.max_epochs=2"],
                  fast=True, device="cpu")
    assert study.effective_ks == [FAST_K]
    assert study.effective_seeds == [3, 4]
    config = study.configs()[0]
    assert config.method_configs["neggrad"]["max_epochs"] == 2  # the user's value wins over the cap
    assert Study("digits", ks=[16], methods=["neggrad"], fast=True).effective_overrides == [
        f"neggrad.max_epochs={FAST_EPOCHS}"
    ]


def test_study_k_values_one_several_or_the_presets() -> None:
    assert Study("digits", ks=16).effective_ks == [16]
    assert Study("digits", ks=None).effective_ks == [4, 8, 16]
    assert Study("cifar10", ks=None).effective_ks == [16, 64, 128, 256]
    assert Study("digits", ks=[8, 16], seeds=[0, 1]).effective_seeds == [0, 1]


def test_a_misspelt_hyperparameter_fails_before_anything_runs() -> None:
    with pytest.raises(ValueError):
        Study("digits", ks=4, methods=["neggrad"], overrides=["neggrad.not_a_setting=1"], device="cpu").configs()


@pytest.mark.slow
def test_study_runs_are_stored_and_read_back(tmp_path) -> None:
    study = Study("digits", ks=4, seeds=[0], methods=["neggrad"], overrides=["neggrad.max_epochs=1"], device="cpu")
    first = study.run(progress=False, root=tmp_path)
    stamp = (first[0] / "summary.json").stat().st_mtime_ns
    again = study.results(progress=False, root=tmp_path)
    assert (first[0] / "summary.json").stat().st_mtime_ns == stamp  # not run again
    assert again[0].k == 4 and again[0].method("neggrad").steps == 1


@pytest.mark.slow
def test_compare_variants_pairs_arms_by_seed(tmp_path) -> None:
    study = Study("digits", ks=4, seeds=[0, 1], methods=["neggrad"], overrides=["neggrad.max_epochs=1"], device="cpu")
    arms = [Variant.of("preset lr"), Variant.of("lr 1e-2", "neggrad.lr=0.01")]
    comparison = compare_variants(study, arms, method="neggrad", progress=False, root=tmp_path)
    assert comparison.seeds == [0, 1] and comparison.variants == ["preset lr", "lr 1e-2"]
    base, other = comparison.values["preset lr"], comparison.values["lr 1e-2"]
    assert len(base["test_acc"]) == 2 and base["test_acc"] != other["test_acc"]  # the override reached the run
    diffs = comparison.paired("test_acc")["lr 1e-2"].values
    assert diffs == pytest.approx([o - b for o, b in zip(other["test_acc"], base["test_acc"])])
    # one step of a 33× larger learning rate moves the structure further, on every seed
    assert all(o > b for o, b in zip(other["final_collapse"], base["final_collapse"]))
    assert set(comparison.reached) == {"preset lr", "lr 1e-2"} and all(0 <= n <= 2 for n in comparison.reached.values())


def hand_made() -> VariantComparison:
    return VariantComparison(
        "structguard", 16, [0, 1, 2], ["full", "w/o SA"],
        {"full": {"test_acc": [70.0, 74.0, 78.0]}, "w/o SA": {"test_acc": [60.0, 70.0, 71.0]}},
        {"full": 3, "w/o SA": 2},
    )


def test_paired_differences_noise_and_tables_on_a_hand_made_comparison() -> None:
    comparison = hand_made()
    assert comparison.paired("test_acc")["w/o SA"].values == [-10.0, -4.0, -7.0]
    assert comparison.noise("test_acc") == pytest.approx(4.0)
    low, high = mean_interval([-10.0, -4.0, -7.0])
    assert low < -7.0 < high  # t(2) half-width 4.303 · 3/√3 = 7.45
    table = comparison.paired_table("test_acc")
    assert "-7.0 ± 3.0" in table and "-10.0, -4.0, -7.0" in table and "4.0" in table
    assert "| full | 3 | 74.0 ± 4.0 | 3/3 |" in comparison.table(("test_acc",))
    assert "| w/o SA | 3 | 67.0 ± 6.1 | 2/3 |" in comparison.table(("test_acc",))


def test_mean_interval_matches_the_t_distribution() -> None:
    low, high = mean_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert all(math.isnan(v) for v in mean_interval([1.0]))


def test_paired_differences_figure_has_a_dot_per_seed_and_the_noise_band() -> None:
    figure = paired_differences_figure(hand_made(), "test_acc")
    dots = [t for t in figure.data if t.name == "one seed"]
    assert len(dots) == 1 and list(dots[0].x) == [-10.0, -4.0, -7.0]
    assert len(figure.layout.shapes) == 2  # the band and the zero line
    assert figure.layout.shapes[0].x0 == pytest.approx(-4.0)


def test_ablation_variants_switch_off_one_term_each() -> None:
    overrides = [v.overrides for v in ABLATION_VARIANTS]
    assert overrides == [
        (), ("structguard.align_weight=0",), ("structguard.reg_lambda=0",), ("structguard.cr_weight=0",)
    ]


def test_anchor_variants_and_encoders_to_compare() -> None:
    arms = anchor_variants(("text", "rotated"), ("minilm", "random:384"), skip=["minilm"])
    assert [dict(a.options) for a in arms] == [{"anchor_source": "text"}, {"anchor_source": "rotated"},
                                               {"encoder": "random:384"}]
    assert encoders_to_compare("digits", ["random:384", "minilm"]) == ["minilm", "random:384"]


def test_the_alignment_loss_sees_anchors_only_through_their_gram_matrix() -> None:
    anchors = torch.nn.functional.normalize(torch.randn(10, 32, generator=torch.Generator().manual_seed(1)), dim=1)
    check = anchor_invariance(anchors)
    assert check["permuted"] < 1e-12 and check["mixed"] < 1e-12
    assert check["rotated"] > 1e-4  # rotating the embedding space is not invisible to the loss
    assert 0 < check["loss"] < 1


def test_method_hyperparameters_are_the_presets_over_the_method_defaults() -> None:
    values = method_hyperparameters("digits", "structguard")
    assert values["lr"] == 0.01 and values["stop_from_epoch"] == 5  # set by the digits preset
    assert values["max_epochs"] == 101 and values["align_weight"] == 1.0  # the method's defaults
    assert method_hyperparameters("cifar10", "structguard")["lr"] == 0.005
