"""Issue 13's core: the data each method reads, the retrain reference and its cache, the stopping
target, and the tables' gaps to retrain."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from stakes_core.data import DATASETS
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import create_method
from stakes_core.methods.access import RetainAccessError
from stakes_core.models.pretrain import PretrainConfig
from stakes_core.models.retrain import CACHE_PART, RetrainCancelled, RetrainReference, load_or_retrain
from stakes_core.report.table import run_rows, summarize, to_markdown
from stakes_core.run.config import experiment_config
from stakes_core.run.context import dataset_fingerprint
from stakes_core.run.experiment import run_experiment
from stakes_core.run.results import MethodResult, RunResult
from stakes_core.run.runstore import run_key
from stakes_core.testing import (
    RetainedImageRead,
    forget_only_context,
    scratch_registries,
    tiny_context,
    tiny_dataset,
    write_tiny_preset,
)

TINY_RECIPE = PretrainConfig(model="resnet18_narrow", epochs=2, model_kwargs={"width": 2})


def test_a_retain_free_method_never_reads_a_retained_image_and_the_oracle_does() -> None:
    context = forget_only_context(tiny_context())
    outcome = create_method("neggrad", max_epochs=3, lr=0.05).run(context)
    assert outcome.steps == 3
    with pytest.raises(RetainedImageRead):
        create_method("oracle", max_epochs=1).run(context)


def test_the_context_refuses_the_retained_set_to_a_method_declared_retain_free() -> None:
    context = tiny_context()
    with pytest.raises(RetainAccessError, match="declared retain-free"):
        context.retained(create_method("neggrad"))
    retained = context.retained(create_method("oracle"))
    assert retained.numel() == context.num_retained and not torch.isin(retained, context.forget_idx).any()


def test_the_loop_stops_at_the_runs_target_not_only_at_zero() -> None:
    context = tiny_context()
    context.stop_target = 100.0  # the retrained model's forget accuracy on an easy set
    outcome = create_method("neggrad", max_epochs=5, lr=1e-6).run(context)
    assert outcome.steps == 1 and outcome.reached_zero  # stopped at the first check
    context.stop_target = 0.0
    assert create_method("neggrad", max_epochs=3, lr=1e-6).run(context).steps == 3


def test_a_retrain_is_cached_per_forget_set_and_round_trips(isolated_cache: Path) -> None:
    dataset = tiny_dataset()
    fingerprint = dataset_fingerprint(dataset)
    forget = torch.tensor([0, 5, 9])
    first = load_or_retrain(TINY_RECIPE, dataset, fingerprint, forget, progress=False)
    again = load_or_retrain(TINY_RECIPE, dataset, fingerprint, forget, progress=False)
    assert (first.source, again.source) == ("trained", "cache")
    for name, value in first.model.state_dict().items():
        assert torch.equal(value, again.model.state_dict()[name])
    other = load_or_retrain(TINY_RECIPE, dataset, fingerprint, torch.tensor([1, 2]), progress=False)
    assert other.source == "trained"
    assert len(list((isolated_cache / CACHE_PART).glob("*.pt"))) == 2


def test_a_cancelled_retrain_stores_nothing(isolated_cache: Path) -> None:
    dataset = tiny_dataset()
    cancel = threading.Event()
    cancel.set()
    reference = RetrainReference(TINY_RECIPE, dataset, dataset_fingerprint(dataset), torch.tensor([3]),
                                 original_seconds=2.0, cancel=cancel)
    assert "about 2 s" in reference.cost_line() and not reference.cached()
    with pytest.raises(RetrainCancelled, match="nothing was stored"):
        reference.model(progress=False)
    assert not reference.cached() and not list(isolated_cache.rglob("*.pt"))


def test_bad_stopping_targets_and_the_retain_free_filter_are_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="unknown stopping target 'half'"):
        experiment_config("digits", stop_at="half")
    with pytest.raises(RetainAccessError, match=r"retain-free only .* oracle \(D_f \+ D_r\)"):
        experiment_config("digits", methods=["neggrad", "oracle"], retain_free_only=True)
    with pytest.raises(RetainAccessError, match=r"retrain \(retrains on D_r\)"):
        experiment_config("digits", methods=["retrain", "neggrad"], retain_free_only=True)
    assert experiment_config("digits", methods=["neggrad"], retain_free_only=True).methods == ["neggrad"]


def test_the_papers_target_keeps_the_run_keys_of_runs_stored_before_it_existed() -> None:
    zero = experiment_config("digits", methods=["neggrad"])
    retrain = experiment_config("digits", methods=["neggrad"], stop_at="retrain")
    assert run_key(zero) != run_key(retrain)
    assert "stop_at" not in json_of(zero) and json_of(retrain)["stop_at"] == "retrain"


def json_of(config) -> dict:  # type: ignore[no-untyped-def]
    from stakes_core.run.runstore import canonical_config

    return canonical_config(dataclasses.asdict(config))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A tiny run with the retrain reference per stopping target, the first saved with its models
    (the tiny data stays registered while the module's tests run)."""
    folder = tmp_path_factory.mktemp("field")
    preset = write_tiny_preset(folder)
    runs: dict[str, Any] = {}
    with scratch_registries(), pytest.MonkeyPatch.context() as patch:
        DATASETS.register("tiny", lambda **_: tiny_dataset())
        patch.setenv("STAKES_CACHE_DIR", str(folder / "cache"))
        notices: list[str] = []
        for stop in ("zero", "retrain"):
            config = experiment_config(str(preset), k=4, seed=0, methods=["neggrad", "retrain"], stop_at=stop,
                                       overrides=["neggrad.max_epochs=30", "neggrad.lr=0.05"], device="cpu")
            runs[stop] = run_experiment(config, progress=False, workers=1, on_notice=notices.append)
        runs["notices"] = notices
        runs["saved"] = runs["zero"].save(folder / "runs" / "zero")
        yield runs


def test_a_run_with_the_retrain_reference_tabulates_gaps_and_the_data_read(tiny_runs) -> None:  # type: ignore[no-untyped-def]
    run = tiny_runs["zero"]
    assert list(run.methods) == ["retrain", "neggrad"]  # the reference first
    assert len(tiny_runs["notices"]) == 1 and tiny_runs["notices"][0].startswith("retrain: 2 epochs")
    rows = {row["method"]: row for row in run_rows(run)}
    assert rows["retrain"]["data"] == "retrains on D_r" and rows["retrain"]["reached_target"] == "–"
    assert rows["neggrad"]["data"] == "D_f only" and rows["original"]["data"] == "–"
    assert rows["retrain"]["avg_gap"] == 0.0
    neggrad = run.method("neggrad").metrics
    retrain = run.method("retrain").metrics
    assert rows["neggrad"]["gap_test"] == pytest.approx(abs(neggrad["test_acc"] - retrain["test_acc"]))
    expected = sum(abs(neggrad[m] - retrain[m]) for m in ("retain_acc", "forget_acc", "test_acc")) / 3
    assert rows["neggrad"]["avg_gap"] == pytest.approx(expected)
    assert run.method("retrain").steps == 0 and run.method("retrain").timings["retrain"] > 0


def test_the_retrain_target_stops_at_the_retrained_models_forget_accuracy(tiny_runs) -> None:  # type: ignore[no-untyped-def]
    zero, retrain = tiny_runs["zero"], tiny_runs["retrain"]
    target = retrain.method("retrain").metrics["forget_acc"]
    assert retrain.stop == {"at": "retrain", "target": target} and zero.stop["target"] == 0.0
    assert retrain.method("neggrad").metrics["forget_acc"] <= target
    assert retrain.method("neggrad").steps <= zero.method("neggrad").steps  # the same trajectory, stopped sooner
    markdown = to_markdown(summarize([zero, retrain]))
    assert markdown.splitlines()[0].startswith("| stop_at | k | method | data | n |") and "avg_gap" in markdown
    assert sum(line.startswith("| retrain | 4 | neggrad") for line in markdown.splitlines()) == 1


def test_stored_runs_keep_the_target_and_the_data_read(tiny_runs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tiny_runs["retrain"]
    run.save(tmp_path, save_models=False)
    loaded = RunResult.load(tmp_path)
    assert loaded.stop == run.stop
    assert loaded.method("retrain").data_access == "retrain"
    assert loaded.method("neggrad").stop_target == run.stop["target"]


def test_a_method_result_above_its_target_has_not_reached_it() -> None:
    result = MethodResult("adv", {}, {"forget_acc": 50.0}, 3, 1, {}, False, stop_target=40.0)
    assert not result.reached_target
    assert dataclasses.replace(result, stop_target=50.0).reached_target
    assert not math.isnan(result.stop_target)


def test_stakes_evaluate_reports_the_fields_measurements_of_a_saved_run(tiny_runs, capsys) -> None:  # type: ignore[no-untyped-def]
    from stakes_core.cli import main

    assert main(["evaluate", str(tiny_runs["saved"]), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| method | data | retain_acc | forget_acc | test_acc | gap_retain")
    assert "loss_mia" in lines[0] and "relearn_steps" in lines[0] and "ulira_share" not in lines[0]
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| original", "| retrain", "| neggrad"]
    assert main(["evaluate", str(tiny_runs["saved"]), "--quiet", "--ulira", "--shadows", "2",
                 "--max-cpu-minutes", "0.0001"]) == 2  # refused: the estimate is above the limit
    assert "over the limit" in capsys.readouterr().err
    assert main(["evaluate", str(tiny_runs["saved"]), "--quiet", "--ulira", "--shadows", "2", "--format", "csv"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.endswith("ulira_share,ulira_mean") and len(rows) == 3


def test_verdicts_follow_the_interval_of_the_paired_difference(tmp_path: Path) -> None:
    from stakes_core.report.field import stored_field_study, verdict

    def summary(low: float, high: float) -> dict[str, float]:
        return {"n": 10, "mean": (low + high) / 2, "low": low, "high": high}

    assert verdict(summary(1.0, 3.0), "higher") == "wins" and verdict(summary(1.0, 3.0), "lower") == "loses"
    assert verdict(summary(-3.0, -1.0), "half") == "wins" and verdict(summary(-1.0, 2.0), "higher") == "within noise"
    assert verdict({"n": 1, "mean": 1.0, "low": math.nan, "high": math.nan}, "higher") == "—"
    found = {metric: {**summary(1.0, 3.0), "verdict": "wins"} for metric in
             ("test_acc", "avg_gap", "mean_collapse", "loss_mia", "ulira_share")}
    study = {"command": "python field_study.py", "machine": {"cpu": "AMD EPYC", "torch": "2.14.1"},
             "seeds": list(range(10)), "paired": {"zero": {"16": {"l2ul": found}}, "retrain": {"4": {"l2ul": found}}}}
    (tmp_path / "study.json").write_text(json.dumps(study))
    text = stored_field_study(tmp_path / "study.json", k=16)
    assert "made by `python field_study.py` on AMD EPYC" in text and "**Stop at zero, k = 16**" in text
    assert "| l2ul | +2.0 [+1.0, +3.0] wins |" in text and "k = 4" not in text
    with pytest.raises(ConfigError, match="cannot read the stored field study"):
        stored_field_study(tmp_path / "missing.json")


def test_method_groups_spell_out_and_a_name_twice_is_still_refused() -> None:
    from stakes_core.run.config import expand_methods

    assert expand_methods(["paper"]) == ["neggrad", "adv", "l2ul", "structguard"]
    every = expand_methods(["all"])
    assert {"retrain", "oracle", "salun_dr"} <= set(every) and len(every) == len(set(every))
    free = expand_methods(["retain-free"])
    assert "structguard" in free and not {"oracle", "retrain", "scrub", "finetune"} & set(free)
    assert expand_methods(["neggrad", "paper"]) == ["neggrad", "adv", "l2ul", "structguard"]
    with pytest.raises(ConfigError, match="named more than once"):
        experiment_config("digits", methods=["paper", "neggrad"])
