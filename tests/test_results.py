"""RunResult save/load and the methods × k tables."""

from __future__ import annotations

import json
import math

import pytest

from stakes_core.metrics.records import StepRecord
from stakes_core.report.table import (
    collapse_correlation,
    environment_differences,
    environment_warning,
    paired_difference,
    paired_markdown,
    rows_to_csv,
    run_rows,
    summarize,
    target_warnings,
    to_csv,
    to_markdown,
)
from stakes_core.run.experiment import run_method
from stakes_core.run.results import MethodResult, RunResult, RunResultError, find_runs
from tests.helpers import tiny_context


def tiny_run() -> RunResult:
    context = tiny_context()
    settings = {"neggrad": {"max_epochs": 2}, "structguard": {"max_epochs": 2, "n_adv": 2, "pgd_iterations": 2}}
    methods = {name: run_method(context, name, overrides) for name, overrides in settings.items()}
    return RunResult(
        config={"seed": 0, "k": 4}, dataset={"name": "tiny"},
        original={"retain_acc": 90.0, "forget_acc": 100.0, "test_acc": 80.0},
        pretrained={}, forget_indices=context.forget_idx.tolist(), probe_indices=context.probe_idx.tolist(),
        methods=methods, models=dict(context.unlearned),
    )


@pytest.mark.slow
def test_run_result_round_trips_through_disk(tmp_path) -> None:
    run = tiny_run()
    run.save(tmp_path / "run")
    loaded = RunResult.load(tmp_path / "run")
    assert loaded.config == run.config and loaded.forget_indices == run.forget_indices
    for name, result in run.methods.items():
        other = loaded.method(name)
        assert other.metrics == result.metrics and other.steps == result.steps and other.timings == result.timings
        assert len(other.curve) == len(result.curve)
        for a, b in zip(result.curve, other.curve):
            assert a.step == b.step and a.forget_acc == b.forget_acc and a.terms == pytest.approx(b.terms)
            assert a.views.keys() == b.views.keys() and a.collapse == b.collapse
            assert all(a.views[v] == b.views[v] or math.isnan(a.views[v]) and math.isnan(b.views[v]) for v in a.views)
        assert other.mean_collapse == pytest.approx(result.mean_collapse)
    state = RunResult.model_state(tmp_path / "run", "structguard")
    assert any(key.startswith("projector.") for key in state)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["methods"]["structguard"]) >= {"mean_collapse", "tradeoff_acc", "timings", "reached_zero",
                                                      "reached_target"}
    for name, result in run.methods.items():
        assert loaded.method(name).reached_target == result.reached_target == summary["methods"][name]["reached_target"]
    assert find_runs(tmp_path) == [tmp_path / "run"]


@pytest.mark.slow
def test_reading_a_bad_run_directory_fails_clearly(tmp_path) -> None:
    with pytest.raises(RunResultError, match="is not a run directory"):
        RunResult.load(tmp_path)
    (tmp_path / "summary.json").write_text("{")
    (tmp_path / "steps.csv").write_text("")
    with pytest.raises(RunResultError, match="not valid JSON"):
        RunResult.load(tmp_path)
    with pytest.raises(KeyError, match="was not run"):
        tiny_run().method("adv")


def fake_run(k: int, seed: int, accs: dict[str, float]) -> RunResult:
    methods = {
        name: MethodResult(name, {}, {"retain_acc": acc, "forget_acc": 0.0, "test_acc": acc, "deletion_rate": 100.0},
                           steps=10, epochs=2, timings={"steps": 1.0}, reached_zero=True)
        for name, acc in accs.items()
    }
    return RunResult({"seed": seed}, {"name": "fake"}, {"retain_acc": 99.0, "forget_acc": 100.0, "test_acc": 98.0},
                     {}, list(range(k)), [], methods)


def test_steps_csv_has_one_collapse_column_per_recorded_view(tmp_path) -> None:
    """A method's own structure view becomes a ``collapse_<view>`` column and is read back;
    the rows of methods without that view leave it empty."""
    run = fake_run(4, 0, {"neggrad": 50.0, "mine": 60.0})
    run.methods["neggrad"].curve = [StepRecord(0, 0, 100.0, {"backbone": 0.0}, math.nan, 0.0)]
    run.methods["mine"].curve = [
        StepRecord(0, 0, 100.0, {"backbone": 0.0, "saliency": 0.5}, math.nan, 0.0, {"ce": 1.0}),
        StepRecord(1, 0, 0.0, {"backbone": math.nan, "saliency": math.nan}, 2.0, 0.1, {"ce": 2.0}),
    ]
    run.save(tmp_path, save_models=False)
    lines = (tmp_path / "steps.csv").read_text().splitlines()
    assert lines[0] == "method,step,epoch,forget_acc,collapse,collapse_saliency,loss,seconds,ce"
    assert lines[1] == "neggrad,0,0,100.0,0.0,,nan,0.0,"
    loaded = RunResult.load(tmp_path)
    assert loaded.method("neggrad").curve[0].views == {"backbone": 0.0}
    mine = loaded.method("mine").curve
    assert mine[0].views == {"backbone": 0.0, "saliency": 0.5} and mine[0].terms == {"ce": 1.0}
    assert math.isnan(mine[1].views["saliency"]) and math.isnan(mine[1].collapse)


def test_a_run_directory_of_the_first_layout_still_loads(tmp_path) -> None:
    """Format 1 as first written: fixed ``collapse`` and ``collapse_projector`` columns."""
    fake_run(4, 0, {"neggrad": 50.0, "structguard": 60.0}).save(tmp_path, save_models=False)
    (tmp_path / "steps.csv").write_text(
        "method,step,epoch,forget_acc,collapse,collapse_projector,loss,seconds,align,forget_ce\n"
        "neggrad,0,0,100.0,0.0,nan,nan,0.0,,\n"
        "neggrad,1,0,75.0,0.125,nan,-1.5,0.2,,1.5\n"
        "structguard,1,0,25.0,0.25,0.75,0.5,0.3,0.1,2.0\n"
    )
    loaded = RunResult.load(tmp_path)
    neggrad, structguard = loaded.method("neggrad").curve, loaded.method("structguard").curve
    assert neggrad[1].collapse == 0.125 and neggrad[1].terms == {"forget_ce": 1.5} and neggrad[1].loss == -1.5
    assert math.isnan(neggrad[1].views["projector"])
    assert structguard[0].views == {"backbone": 0.25, "projector": 0.75}
    assert structguard[0].terms == {"align": 0.1, "forget_ce": 2.0}


def test_table_cells_are_mean_and_sample_sd_over_seeds() -> None:
    runs = [fake_run(4, s, {"l2ul": 50.0 + s, "structguard": 60.0 + 3 * s}) for s in range(3)]
    rows = summarize(runs, ("test_acc", "steps"))
    by_method = {row["method"]: row for row in rows}
    assert [row["method"] for row in rows] == ["original", "l2ul", "structguard"]
    assert by_method["structguard"]["cells"]["test_acc"].format() == "63.0 ± 3.0"
    assert by_method["original"]["cells"]["steps"].mean == 0
    paired = paired_difference(runs, "structguard", "l2ul", "test_acc")
    assert paired[0]["cell"].values == [10.0, 12.0, 14.0]
    # mean 12, sd 2, n 3: t(0.975, 2) = 4.303, so the interval is 12 ± 4.303·2/√3 = 12 ± 4.97
    assert paired_markdown(paired, "structguard", "l2ul", "test_acc").splitlines()[2] == (
        "| 4 | 12.0 ± 2.0 | [+7.0, +17.0] | 3 | +10.0, +12.0, +14.0 |"
    )
    markdown = to_markdown(rows, ("test_acc", "steps")).splitlines()
    assert markdown[0] == "| k | method | data | n | test_acc | steps | reached_target |"
    assert "| 4 | original | – | 3 | 98.0 ± 0.0 | 0 ± 0 | – |" in markdown
    assert "| 4 | structguard | D_f only | 3 | 63.0 ± 3.0 | 10 ± 0 | 3/3 |" in markdown
    csv_lines = to_csv(rows, ("test_acc",)).splitlines()
    assert csv_lines[0] == "stop_at,k,method,data,n,test_acc_mean,test_acc_sd,reached_target"
    assert csv_lines[1].endswith(",") and csv_lines[3].endswith(",3")


def test_run_rows_give_plain_values_original_first() -> None:
    run = fake_run(4, 0, {"l2ul": 50.0, "structguard": 61.0})
    rows = run_rows(run, ("test_acc", "steps"))
    assert [row["method"] for row in rows] == ["original", "l2ul", "structguard"]
    assert rows[2] == {"method": "structguard", "data": "D_f only", "test_acc": 61.0, "steps": 10,
                       "reached_target": "yes"}
    assert rows[0]["steps"] == 0
    assert rows_to_csv(rows).splitlines() == [
        "method,data,test_acc,steps,reached_target", "original,–,98.0,0.0,–", "l2ul,D_f only,50.0,10.0,yes",
        "structguard,D_f only,61.0,10.0,yes",
    ]


def stopped_at_cap(run: RunResult, method: str, forget_acc: float) -> RunResult:
    """``run`` with ``method`` left at its epoch cap with ``forget_acc`` still above 0."""
    result = run.methods[method]
    result.reached_zero, result.metrics["forget_acc"], result.steps, result.epochs = False, forget_acc, 505, 101
    return run


def test_a_method_that_stopped_at_its_cap_is_marked_in_every_table() -> None:
    runs = [fake_run(4, s, {"adv": 60.0, "l2ul": 61.0}) for s in range(3)]
    stopped_at_cap(runs[1], "adv", 25.0)
    assert [row["reached_target"] for row in run_rows(runs[1])] == ["–", "no", "yes"]
    warning = "adv stopped at its cap (101 epochs, 505 steps) with forget_acc 25.0 % (k=4, seed 1)"
    assert target_warnings(runs[1]) == [warning]
    assert target_warnings(runs[0]) == []
    markdown = to_markdown(summarize(runs, ("forget_acc",)), ("forget_acc",))
    assert "| 4 | adv | D_f only | 3 | 8.3 ± 14.4 | 2/3 |" in markdown
    assert "| 4 | l2ul | D_f only | 3 | 0.0 ± 0.0 | 3/3 |" in markdown
    # forget accuracy 0 at the cap is the target reached, whatever stopped the loop
    runs[2].methods["l2ul"].reached_zero = False
    assert runs[2].methods["l2ul"].reached_target and target_warnings(runs[2]) == []


def with_environment(run: RunResult, threads: int, source: str, adv_version: int = 1) -> RunResult:
    run.environment = {"torch": "2.14.1", "threads": threads, "device": "cpu", "cpu": "AMD EPYC", "gpu": None,
                       "code_versions": {"loop": 1, **{name: adv_version for name in run.methods}}}
    run.pretrained = {"source": source, "state_sha256": "ab" * 32 if source == "shipped" else "cd" * 32}
    return run


def test_pooling_runs_from_different_environments_is_named_in_one_line() -> None:
    alike = [with_environment(fake_run(4, s, {"adv": 50.0}), 1, "shipped") for s in range(3)]
    assert environment_warning(alike) is None
    # a cache hit and a fresh training on the same machine are the same model: no warning
    here = [with_environment(fake_run(4, s, {"adv": 50.0}), 1, source) for s, source in enumerate(("trained", "cache"))]
    assert environment_warning(here) is None
    mixed = [*alike, with_environment(fake_run(4, 3, {"adv": 50.0}), 2, "trained", adv_version=2)]
    differences = environment_differences(mixed)
    assert set(differences) == {"threads", "checkpoint", "pretrained weights", "code adv"}
    line = environment_warning(mixed)
    assert line is not None and "\n" not in line
    assert line.startswith("the 4 pooled runs were made in different environments: threads 1 (3 runs), 2 (1 run); ")
    assert "checkpoint shipped (3 runs), trained where it ran (1 run)" in line
    assert "code adv 1 (3 runs), 2 (1 run)" in line
    assert "unrecorded (1 run)" in environment_warning([alike[0], fake_run(4, 5, {"adv": 50.0})])


def test_collapse_correlation_is_minus_one_for_a_monotone_decrease() -> None:
    runs = [fake_run(4, s, {"adv": 40.0 + s, "l2ul": 60.0 + s}) for s in range(3)]
    for run in runs:
        for name, result in run.methods.items():
            collapse = 1.0 - result.metrics["test_acc"] / 100
            result.curve = [StepRecord(0, 0, 100.0, {"backbone": 0.0}, math.nan, 0.0),
                            StepRecord(1, 0, 0.0, {"backbone": collapse}, 1.0, 0.1)]
    for summary in ("mean_collapse", "final_collapse"):
        found = collapse_correlation(runs, summary)
        assert found["rho"] == pytest.approx(-1.0) and found["n"] == 6
    with pytest.raises(ValueError, match="at least 3"):
        collapse_correlation(runs[:1], exclude=("adv",))


def test_table_rejects_mixed_datasets_and_missing_pairs() -> None:
    mixed = [fake_run(4, 0, {"adv": 1.0}), fake_run(4, 1, {"adv": 1.0})]
    mixed[1].dataset = {"name": "other"}
    with pytest.raises(ValueError, match="mix datasets"):
        summarize(mixed)
    with pytest.raises(ValueError, match="no run has both"):
        paired_difference([fake_run(4, 0, {"adv": 1.0})], "structguard", "adv", "test_acc")
