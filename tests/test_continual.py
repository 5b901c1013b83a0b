"""Continual unlearning: request sequences, per-round metrics, stored and resumable rounds, the
bad-input messages, the report, the figures and the command line, all on the tiny data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from stakes_core.cli import main
from stakes_core.data import DATASETS, choose_forget_indices
from stakes_core.figures.continual import DASHES, MARKERS, round_curves_figure
from stakes_core.metrics.accuracy import accuracy
from stakes_core.report.continual import cost_summary, paired_rounds, round_summary
from stakes_core.run.context import pretrained_model
from stakes_core.run.continual import SequenceError, check_sequence, draw_sequence, parse_arm, parse_arms
from stakes_core.run.continual_store import (
    ContinualRun,
    SettingsChangedError,
    continual_settings,
    load_round_model,
    run_continual,
    run_sequence,
    sequence_pieces,
    stored_continual,
)
from stakes_core.testing import scratch_registries, tiny_dataset, write_tiny_preset

TINY_DATA_PLUGIN = '''from stakes_core.data import DATASETS
from stakes_core.testing import tiny_dataset

DATASETS.register("tiny", lambda **_: tiny_dataset())
'''

FAST = ["neggrad.max_epochs=3", "structguard.max_epochs=3", "structguard.n_adv=2", "adv.max_epochs=3",
        "adv.n_adv=2"]

# A child that serves a 3-round NegGrad sequence and kills itself with SIGKILL at a chosen point:
# "step2" at the first step of round 2, "write2" while round 2's entry is being renamed into place.
KILLED = '''
import os, signal, sys
from stakes_core.run import continual_store
from stakes_core.run.continual_store import continual_settings, run_sequence
where = sys.argv[2]
settings, arms = continual_settings(sys.argv[1], k=3, rounds=3, methods=["neggrad"],
                                    overrides=["neggrad.max_epochs=3"], device="cpu")
served = []
def on_step(name, record):
    if record.step == 1:
        served.append(1)
    if where == "step2" and len(served) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
real = continual_store.os.replace
def replace(src, dst):
    if where == "write2" and "round2" in str(dst):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)
continual_store.os.replace = replace
run_sequence(settings, arms[0], 0, progress=False, on_step=on_step)
'''


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The tiny preset, its data plugin and a cache holding its pretrained model."""
    folder = tmp_path_factory.mktemp("continual")
    (folder / "tiny_data.py").write_text(TINY_DATA_PLUGIN)
    preset = write_tiny_preset(folder)
    with scratch_registries():
        DATASETS.register("tiny", lambda **_: tiny_dataset())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STAKES_CACHE_DIR", str(folder / "cache"))
            settings, _ = continual_settings(str(preset), k=3, rounds=1, methods=["neggrad"], device="cpu")
            pretrained_model(settings.config, progress=False)
        yield preset, folder / "cache"


@pytest.fixture
def preset(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tiny preset, with this test's own copy of the cache."""
    shutil.copytree(tiny[1], tmp_path / "cache")
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    return str(tiny[0])


def settings_of(preset: str, rounds: int = 3, methods: tuple[str, ...] = ("neggrad",), **options):  # type: ignore[no-untyped-def]
    names = {arm.partition("@")[0] for arm in methods}
    overrides = [text for text in FAST if text.split(".")[0] in names]
    return continual_settings(preset, k=3, rounds=rounds, methods=list(methods), overrides=overrides, device="cpu",
                              **options)


def store_entries(cache: Path) -> list[str]:
    folder = cache / "runs" / "continual"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_rounds_are_disjoint_nested_and_reproducible_from_the_seed() -> None:
    sets = draw_sequence(1437, 16, 4, seed=3)
    assert sets == draw_sequence(1437, 16, 4, seed=3)
    assert sets != draw_sequence(1437, 16, 4, seed=4)
    flat = [i for s in sets for i in s]
    assert len(flat) == len(set(flat)) == 64 and all(len(s) == 16 for s in sets)
    assert sets[0] == choose_forget_indices(1437, 16, 3).tolist()  # round 1 is the one-shot forget set
    assert draw_sequence(1437, 16, 6, seed=3)[:4] == sets  # a longer sequence extends a shorter one


def test_bad_sequences_are_refused_in_one_line() -> None:
    dataset = tiny_dataset()  # 96 training images, 24 per class
    with pytest.raises(SequenceError, match=r"rounds=0 is invalid"):
        draw_sequence(96, 4, 0, seed=0)
    with pytest.raises(SequenceError, match=r"rounds × k = 25 × 4 = 100 is more than the 96 training images"):
        draw_sequence(96, 4, 25, seed=0)
    with pytest.raises(SequenceError, match=r"forget sets 1 and 2 overlap \(image 5\)"):
        check_sequence([[1, 5], [5, 9]], dataset)
    with pytest.raises(SequenceError, match=r"every training image of class 'c0' \(24\)"):
        check_sequence([list(range(0, 12)), list(range(12, 24))], dataset)
    with pytest.raises(SequenceError, match=r"outside the training set"):
        check_sequence([[96]], dataset)
    with pytest.raises(SequenceError, match=r"oracle cannot serve a sequence"):
        parse_arm("oracle")
    with pytest.raises(SequenceError, match=r"only structguard takes a reference"):
        parse_arm("l2ul@previous")
    with pytest.raises(SequenceError, match=r"named more than once"):
        parse_arms(["structguard", "structguard@original"])


def test_relapse_is_measured_on_every_earlier_set(preset: str) -> None:
    settings, arms = settings_of(preset, rounds=3)
    result = run_sequence(settings, arms[0], 0, progress=False)
    sets = settings.sequence(0)
    assert [r.round for r in result.records] == [1, 2, 3] and result.computed == [1, 2, 3]
    pieces = sequence_pieces(settings.config)
    dataset = pieces.dataset
    for t, record in enumerate(result.records, start=1):
        assert len(record.earlier_forget_acc) == t - 1
        model = load_round_model(pieces, "neggrad", result.directories[t - 1], t)
        for earlier, value in zip(sets, record.earlier_forget_acc):
            index = torch.tensor(earlier)
            assert value == accuracy(model, dataset.train_images[index], dataset.train_labels[index])
        served = torch.tensor([i for s in sets[:t] for i in s])
        kept = torch.ones(dataset.num_train, dtype=torch.bool)
        kept[served] = False
        assert record.retain_acc == accuracy(model, dataset.train_images[kept], dataset.train_labels[kept])


def test_interrupted_round_resumes_without_recomputing_finished_ones(preset: str, tmp_path: Path) -> None:
    settings, arms = settings_of(preset, rounds=3)
    steps: list[int] = []

    def stop_in_round_two(name: str, record: object) -> None:
        steps.append(getattr(record, "step"))
        if steps.count(1) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sequence(settings, arms[0], 0, progress=False, on_step=stop_in_round_two)
    cache = tmp_path / "cache"
    assert [name.split("-")[3] for name in store_entries(cache)] == ["round1"]  # no torn or partial entry
    first = next((cache / "runs" / "continual").iterdir()) / "round.json"
    written = first.stat().st_mtime_ns
    resumed = run_sequence(settings, arms[0], 0, progress=False)
    assert resumed.computed == [2, 3] and first.stat().st_mtime_ns == written
    again = run_sequence(settings, arms[0], 0, progress=False)
    assert again.computed == [] and again.records == resumed.records
    longer, _ = settings_of(preset, rounds=4)
    assert run_sequence(longer, arms[0], 0, progress=False).computed == [4]  # reuses rounds 1-3


@pytest.mark.parametrize("where", ["step2", "write2"])
def test_sigkill_inside_a_round_or_its_write_leaves_no_torn_entry(
    preset: str, tiny: tuple[Path, Path], tmp_path: Path, where: str
) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "STAKES_CACHE_DIR": str(cache), "STAKES_PLUGINS": str(tiny[0].parent / "tiny_data.py"),
           "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", KILLED, preset, where], env=env, capture_output=True, text=True,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr
    entries = store_entries(cache)
    complete = [name for name in entries if not name.startswith(".")]
    assert [name.split("-")[3] for name in complete] == ["round1"]
    assert all(name.endswith(".partial") for name in entries if name.startswith("."))
    settings, arms = continual_settings(preset, k=3, rounds=3, methods=["neggrad"],
                                        overrides=["neggrad.max_epochs=3"], device="cpu")
    resumed = run_sequence(settings, arms[0], 0, progress=False)
    assert resumed.computed == [2, 3]


def test_previous_and_original_references_agree_for_one_round(preset: str) -> None:
    settings, arms = settings_of(preset, rounds=1, methods=("structguard", "structguard@previous"))
    run = run_continual(settings, arms, [0], progress=False)
    first, second = run.records
    assert (first.arm, second.arm) == ("structguard", "structguard@previous")
    for field in ("forget_acc", "retain_acc", "test_acc", "collapse_original", "collapse_previous", "steps"):
        assert getattr(first, field) == getattr(second, field), field
    states = [torch.load(Path(run.entries[arm.name]["0"][0]) / "model.pt", weights_only=True) for arm in arms]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_structguard_rounds_stack_and_the_references_then_differ(preset: str) -> None:
    settings, arms = settings_of(preset, rounds=2, methods=("structguard", "structguard@previous"))
    run = run_continual(settings, arms, [0], progress=False)
    pieces = sequence_pieces(settings.config)
    model = load_round_model(pieces, "structguard", Path(run.entries["structguard"]["0"][1]), 2)
    assert sum(1 for name, _ in model.named_modules() if name.endswith("projector")) == 2
    states = [torch.load(Path(run.entries[a.name]["0"][1]) / "model.pt", weights_only=True) for a in arms]
    assert any(not torch.equal(states[0][key], states[1][key]) for key in states[0])


def test_resuming_a_folder_with_other_settings_names_the_setting(preset: str, tmp_path: Path) -> None:
    settings, arms = settings_of(preset, rounds=2)
    run_continual(settings, arms, [0], out=tmp_path / "out", progress=False)
    longer, _ = settings_of(preset, rounds=3)
    assert run_continual(longer, arms, [0, 1], out=tmp_path / "out", progress=False).computed == 3 + 1
    changed, _ = continual_settings(preset, k=3, rounds=3, methods=["neggrad"], device="cpu",
                                    overrides=["neggrad.max_epochs=4"])
    with pytest.raises(SettingsChangedError, match=r"method_configs\.neggrad\.max_epochs \(stored 3, now 4\)"):
        run_continual(changed, arms, [0], out=tmp_path / "out", progress=False)
    other_k, _ = continual_settings(preset, k=2, rounds=3, methods=["neggrad"], device="cpu", overrides=FAST[:1])
    with pytest.raises(SettingsChangedError, match=r": k \(stored 3, now 2\)"):
        run_continual(other_k, arms, [0], out=tmp_path / "out", progress=False)


def test_report_pairs_by_seed_and_the_figure_tells_arms_apart(preset: str) -> None:
    settings, arms = settings_of(preset, rounds=2, methods=("neggrad", "structguard"))
    assert stored_continual(settings, arms, [0, 1]) is None  # nothing stored: nothing computed to say so
    run = run_continual(settings, arms, [0, 1], progress=False)
    stored = stored_continual(settings, arms, [0, 1])
    assert stored is not None and stored.records == run.records and stored.entries == run.entries
    rows = round_summary(run.records)
    assert [(r["arm"], r["round"], r["seeds"]) for r in rows] == [
        ("neggrad", 1, 2), ("neggrad", 2, 2), ("structguard", 1, 2), ("structguard", 2, 2)]
    assert rows[0]["relapse"]["n"] == 0 and rows[1]["relapse"]["n"] == 2
    by = {(r.arm, r.seed, r.round): r.test_acc for r in run.records}
    paired = paired_rounds(run.records, "structguard", "neggrad", "test_acc")
    expected = sum(by[("structguard", s, 2)] - by[("neggrad", s, 2)] for s in (0, 1)) / 2
    assert paired[1]["round"] == 2 and paired[1]["mean"] == pytest.approx(expected)
    cost = cost_summary(run.records)[0]
    assert cost["one_shot_estimate"]["mean"] == pytest.approx(
        sum(2 * r.seconds for r in run.records if r.arm == "neggrad" and r.round == 1) / 2)
    figure = round_curves_figure(run.records)
    styles = {(t.name, t.marker.symbol, t.line.dash) for t in figure.data}
    assert styles == {("NegGrad", MARKERS[0], DASHES[0]), ("StructGuard", MARKERS[1], DASHES[1])}


def test_command_line_runs_resumes_refuses_and_writes_figures(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "seq"
    common = ["continual", "--preset", preset, "--k", "3", "--methods", "neggrad", "--device", "cpu", "--quiet",
              "--set", "neggrad.max_epochs=3", "--out", str(out)]
    assert main([*common, "--rounds", "2"]) == 0
    assert "| neggrad | 2 |" in capsys.readouterr().out
    assert ContinualRun.load(out).rounds == 2 and (out / "rounds.csv").is_file()
    assert main(["figures", str(out), "--format", "html", "--embedding", "pca"]) == 0
    assert {p.name for p in (out / "figures").glob("*.html")} == {"round_curves.html", "round_embedding_neggrad.html"}
    assert main([*common, "--rounds", "0"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("stakes: error: rounds=0 is invalid")
    assert main([*common, "--rounds", "2", "--set", "neggrad.lr=0.5"]) == 2
    assert "stakes: error:" in (err := capsys.readouterr().err) and "method_configs.neggrad.lr (stored" in err
    assert main([*common[:-2], "--out", str(tmp_path / "x"), "--sets", "1,2", "2,3"]) == 2
    assert "forget sets 1 and 2 overlap (image 2)" in capsys.readouterr().err
