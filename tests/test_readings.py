"""The notebooks' readings follow their numbers: figures and verdicts change with the results."""

from __future__ import annotations

import math

import pytest

from stakes_core.metrics.records import StepRecord
from stakes_core.report.comparison import VariantComparison
from stakes_core.report.readings import collapse_reading, excludes_zero, paired_reading, retrieval_reading
from stakes_core.run.results import MethodResult, RunResult


def comparison(shift: float) -> VariantComparison:
    """Five seeds of a reference and one variant that differs by ``shift`` ± a little."""
    reference = [60.0, 62.0, 58.0, 61.0, 59.0]
    wobble = [0.3, -0.2, 0.1, -0.4, 0.2]
    variant = [r + shift + w for r, w in zip(reference, wobble)]
    return VariantComparison("structguard", 16, [0, 1, 2, 3, 4], ["text", "rotated"],
                             {"text": {"test_acc": reference}, "rotated": {"test_acc": variant}})


def test_a_clear_difference_is_reported_with_its_interval_and_direction() -> None:
    found = comparison(-5.0)
    text = paired_reading(found, "test_acc")
    assert "rotated −5.0 ± 0.3 test points" in text and "seeds 0–4" in text
    assert "The interval excludes 0 for rotated (below the reference)" in text
    assert "5 of 5 seeds outside the noise band" in text
    assert excludes_zero(found) == ["rotated"]


def test_a_null_result_is_called_within_noise() -> None:
    found = comparison(0.0)
    text = paired_reading(found, "test_acc")
    assert "No interval excludes 0" in text and excludes_zero(found) == []


def run(k: int, seed: int, collapses: dict[str, float]) -> RunResult:
    """A stored-run stand-in: each method ends at ``collapse`` with test accuracy 100·(1 − collapse)."""
    methods = {}
    for name, collapse in collapses.items():
        result = MethodResult(name, {}, {"retain_acc": 90.0, "forget_acc": 0.0, "test_acc": 100 * (1 - collapse)},
                              steps=2, epochs=1, timings={}, reached_zero=True)
        result.curve = [StepRecord(0, 0, 100.0, {"backbone": 0.0}, math.nan, 0.0),
                        StepRecord(1, 0, 0.0, {"backbone": collapse}, 1.0, 0.1)]
        methods[name] = result
    return RunResult({"seed": seed, "k": k}, {"name": "fake"}, {}, {}, list(range(k)), [], methods)


def test_collapse_reading_computes_rho_and_counts_the_k_where_structguard_is_lower() -> None:
    runs = [run(k, s, {"l2ul": 0.5 + 0.01 * s, "structguard": (0.2 if k == 4 else 0.7) + 0.01 * s})
            for k in (4, 8) for s in range(3)]
    text = collapse_reading(runs, ["l2ul", "structguard"])
    assert "12 method runs, k ∈ {4, 8}, seeds 0–2" in text
    assert "ρ = −1.00" in text and "as the paper reports" in text
    assert "below l2ul's at 1 of 2 k values" in text


def test_collapse_reading_leaves_out_methods_not_asked_for() -> None:
    runs = [run(4, s, {"l2ul": 0.5 + 0.01 * s, "structguard": 0.2 + 0.01 * s, "oracle": 0.9}) for s in range(3)]
    assert "6 method runs" in collapse_reading(runs, ["l2ul", "structguard"])


def test_retrieval_reading_names_the_best_method_and_refuses_a_table_without_the_original() -> None:
    table = [{"model": "original", "queries": "test", "mAP": 99.0},
             {"model": "neggrad", "queries": "test", "mAP": 58.2},
             {"model": "structguard", "queries": "test", "mAP": 78.8},
             {"model": "structguard", "queries": "forget", "mAP": 10.0}]
    text = retrieval_reading(table)
    assert "test-query mAP 99.0 for the original model, then 58.2 neggrad, 78.8 structguard" in text
    assert ("structguard keeps retrieval best (78.8, 20.6 above neggrad, 20.2 below the original), "
            "the paper's Fig. 5 claim") in text
    table[1]["mAP"] = 90.0
    assert "neggrad keeps retrieval best" in retrieval_reading(table)
    with pytest.raises(ValueError, match="original"):
        retrieval_reading(table[1:])


def test_differences_below_the_precision_shown_are_not_called_real() -> None:
    found = VariantComparison("structguard", 4, [0, 1, 2], ["full", "w/o SR"],
                              {"full": {"mean_collapse": [0.1, 0.2, 0.3]},
                               "w/o SR": {"mean_collapse": [0.1 - 1e-7, 0.2 - 1.1e-7, 0.3 - 0.9e-7]}})
    assert excludes_zero(found, "mean_collapse") == []
    assert "No interval excludes 0" in paired_reading(found, "mean_collapse", unit="")
