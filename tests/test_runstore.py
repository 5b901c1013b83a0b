"""The run store: equal configs share one stored run, a cancelled run stores nothing."""

from __future__ import annotations

import pytest

from stakes_core.anchors import load_descriptions
from stakes_core.run.config import experiment_config
from stakes_core.run.runstore import (
    is_complete,
    load_or_run,
    run_directory,
    run_key,
    sibling_runs,
    stored_descriptions,
)

SHORT = ["neggrad.max_epochs=1"]


def short_config(**options):
    return experiment_config("digits", k=4, seed=0, methods=["neggrad"], device="cpu", overrides=SHORT, **options)


class Cancelled(Exception):
    pass


@pytest.mark.slow
def test_a_stored_run_is_reused_and_a_cancelled_one_stores_nothing(tmp_path) -> None:
    config = short_config()

    def cancel(method, record):
        raise Cancelled

    with pytest.raises(Cancelled):
        load_or_run(config, root=tmp_path, progress=False, on_step=cancel)
    assert not run_directory(config, tmp_path).exists()
    assert list(tmp_path.iterdir()) == []  # no partial folder is left behind

    steps = []
    directory = load_or_run(config, root=tmp_path, progress=False, on_step=lambda m, r: steps.append(r))
    assert steps and is_complete(directory, ["neggrad"])
    summary_time = (directory / "summary.json").stat().st_mtime_ns
    again = []
    assert load_or_run(config, root=tmp_path, progress=False, on_step=lambda m, r: again.append(r)) == directory
    assert again == [] and (directory / "summary.json").stat().st_mtime_ns == summary_time


def test_keys_follow_the_description_content_not_the_file_name(tmp_path) -> None:
    shipped = load_descriptions("digits")
    same = stored_descriptions(shipped, root=tmp_path / "a")
    edited = dict(shipped)
    edited["0"] = ["a closed oval loop"]
    other = stored_descriptions(edited, root=tmp_path / "a")
    assert run_key(short_config()) == run_key(short_config(descriptions=same))
    assert run_key(short_config(descriptions=other)) != run_key(short_config())
    other_k = experiment_config("digits", k=5, seed=0, methods=["neggrad"], device="cpu")
    assert run_key(short_config()) != run_key(other_k)


def test_naming_a_default_hyperparameter_is_the_same_run() -> None:
    plain = experiment_config("digits", k=4, seed=0, methods=["neggrad", "structguard"], device="cpu")
    defaults = ["neggrad.max_epochs=101", "structguard.align_weight=1", "neggrad.lr=0.0003"]
    explicit = experiment_config("digits", k=4, seed=0, methods=["neggrad", "structguard"], device="cpu",
                                 overrides=defaults)
    assert plain.method_configs != explicit.method_configs
    assert run_key(plain) == run_key(explicit)
    assert run_key(plain) != run_key(experiment_config("digits", k=4, seed=0, methods=["neggrad", "structguard"],
                                                       device="cpu", overrides=["structguard.align_weight=0"]))


def test_broken_descriptions_are_refused_before_they_are_stored(tmp_path) -> None:
    with pytest.raises(ValueError, match="empty|attribute|list"):
        stored_descriptions({"0": []}, root=tmp_path)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_siblings_are_the_stored_runs_of_one_setting(tmp_path) -> None:
    for seed in (0, 1):
        load_or_run(experiment_config("digits", k=4, seed=seed, methods=["neggrad"], device="cpu", overrides=SHORT),
                    root=tmp_path, progress=False)
    other = experiment_config("digits", k=4, seed=0, methods=["neggrad"], device="cpu",
                              overrides=[*SHORT, "neggrad.lr=0.01"])
    load_or_run(other, root=tmp_path, progress=False)
    assert sorted(run.seed for run in sibling_runs(short_config(), root=tmp_path)) == [0, 1]
    assert [run.seed for run in sibling_runs(other, root=tmp_path)] == [0]
    assert sibling_runs(short_config(), root=tmp_path / "empty") == []
