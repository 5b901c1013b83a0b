"""Fault injection: what the user sees, and what is left on disk, when things go wrong.

Killed processes (SIGKILL during pretraining, during a run and while either is being written),
Ctrl-C, a full disk (simulated: ``os.fsync`` raises ``ENOSPC``), damaged run files and cache
entries, two processes storing the same run at once, two runs at once in one process (two
dashboard sessions), seeds outside the generators' range, a method named twice, an output
folder under a file and a notebook whose data is missing. The rule throughout: a user's problem is
one ``stakes: error:`` line (exit status 2), nothing partial is ever served, and a damaged
cache entry is rebuilt.

The killed and interrupted processes run a tiny preset (four classes of 8×8 squares, a width-2
ResNet, random anchors) registered in each child through ``STAKES_PLUGINS``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import torch

from stakes_core.analysis import AnalysisError, load_run
from stakes_core.cli import main
from stakes_core.data import DATASETS, DatasetNotFoundError, choose_forget_indices, choose_probe_indices
from stakes_core.data.forget import SEED_LIMIT
from stakes_core.infra.cache import CorruptCacheWarning, TensorCache, WriteError, atomic_write_bytes
from stakes_core.infra.errors import ConfigError
from stakes_core.lab.notebook import check_setup
from stakes_core.metrics.records import StepRecord
from stakes_core.run.config import ExperimentConfig, experiment_config, order_methods
from stakes_core.run.context import pretrained_model
from stakes_core.run.results import MethodResult, RunResult, RunResultError, find_runs
from stakes_core.run.runstore import (
    DamagedRunWarning,
    entry_problem,
    is_complete,
    load_or_run,
    run_directory,
    sibling_runs,
    store_result,
)
from stakes_core.testing import scratch_registries, tiny_dataset, write_tiny_preset

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHILD_TIMEOUT = 300
NO_SPACE = os.strerror(errno.ENOSPC)


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder`` (hidden ones too): what a failed write may have left."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- seeds --------------------------------------------------------------------------------------


def test_torch_wraps_seeds_past_2_63_which_is_why_they_are_refused() -> None:
    def draw(seed: int) -> list[int]:
        return torch.randperm(50, generator=torch.Generator().manual_seed(seed)).tolist()

    assert draw(2**63) == draw(0) and draw(-1) == draw(2**64 - 1)  # another name, the same forget set


@pytest.mark.parametrize("seed", [2**63, 2**32, -1, -(2**63), 1.5, True, "3"])
def test_a_seed_outside_the_range_is_refused_with_the_range(seed: object) -> None:
    range_text = f"0 ≤ seed < {SEED_LIMIT}"
    with pytest.raises(ConfigError, match=range_text):
        experiment_config("digits", k=4, seed=seed, methods=["neggrad"], device="cpu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=range_text):
        choose_forget_indices(100, 4, seed)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=range_text):
        choose_probe_indices(100, torch.arange(4), 10, seed)  # type: ignore[arg-type]


def test_the_ends_of_the_seed_range_are_accepted() -> None:
    for seed in (0, SEED_LIMIT - 1):
        assert experiment_config("digits", k=4, seed=seed, methods=["neggrad"], device="cpu").seed == seed
        assert len(set(choose_forget_indices(100, 4, seed).tolist())) == 4


def test_the_cli_refuses_a_bad_seed_before_the_first_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    assert main(["run", "--seeds", "0", "9223372036854775808", "--out", str(out), "--quiet"]) == 2
    assert error_lines(capsys) == [
        f"stakes: error: seed=9223372036854775808 is invalid: choose a whole number 0 ≤ seed < {SEED_LIMIT} (2**32)"
    ]
    assert not out.exists()  # seed 0 did not run first


# --- a method named twice, an output folder under a file ------------------------------------------


def test_a_method_named_twice_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["run", "--methods", "neggrad", "neggrad", "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    assert error_lines(capsys) == [
        "stakes: error: method 'neggrad' is named more than once: a run has each method once, so name it once"
    ]
    with pytest.raises(ConfigError, match="'adv', 'neggrad' are named more than once"):
        order_methods(["neggrad", "adv", "l2ul", "adv", "neggrad"])
    assert order_methods(["structguard", "neggrad"]) == ["neggrad", "structguard"]


@pytest.mark.parametrize("below", ["", "runs/digits"])
def test_an_output_folder_under_a_file_is_one_line_before_anything_runs(tmp_path: Path, below: str, capsys) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    out = blocker / below if below else blocker
    assert main(["run", "--out", str(out), "--methods", "neggrad", "--quiet"]) == 2
    assert error_lines(capsys) == [f"stakes: error: cannot write {out}: {blocker} is a file, not a folder"]
    assert blocker.read_text() == "a file, not a folder"


# --- a full disk ------------------------------------------------------------------------------------


def fake_run(seed: int = 0, loss: float = 0.5) -> RunResult:
    """A small run with two step records and one model, made without training anything."""
    curve = [StepRecord(0, 0, 100.0, {"backbone": 0.0}, float("nan"), 0.0, {}),
             StepRecord(1, 0, 0.0, {"backbone": 0.25}, loss, 0.1, {"ce": loss})]
    metrics = {"retain_acc": 90.0, "forget_acc": 0.0, "test_acc": 85.0, "deletion_rate": 100.0}
    method = MethodResult("neggrad", {"lr": 0.1}, metrics, 1, 1, {"steps": 0.1}, True, curve)
    return RunResult({"seed": seed, "k": 2}, {"name": "fake"}, {"retain_acc": 95.0, "forget_acc": 100.0,
                     "test_acc": 88.0}, {}, [3, 7], [1, 2, 4], {"neggrad": method},
                     models={"neggrad": torch.nn.Linear(2, 2)})


class FullDisk:
    """``os.fsync`` that fails with ENOSPC once ``room`` files have been written."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.fsync = os.fsync

    def __call__(self, fd: int) -> None:
        if self.room == 0:
            raise OSError(errno.ENOSPC, NO_SPACE)
        self.room -= 1
        self.fsync(fd)


@pytest.mark.parametrize("room", [0, 1, 2])  # the disk fills at steps.csv, the model, summary.json
def test_a_full_disk_stores_nothing_keeps_the_old_entry_and_says_so(
    tmp_path: Path, room: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "store" / "fake-k2-seed0"
    store_result(fake_run(loss=0.5), directory)
    before = {p: p.read_bytes() for p in files_under(tmp_path)}
    monkeypatch.setattr(os, "fsync", FullDisk(room))
    with pytest.raises(WriteError) as caught:
        store_result(fake_run(loss=0.9), directory)
    assert str(caught.value) == f"cannot write {directory}: {NO_SPACE}"
    assert isinstance(caught.value, OSError)  # what callers that catch OSError expect
    assert {p: p.read_bytes() for p in files_under(tmp_path)} == before  # no temporary file, no partial folder
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["fake-k2-seed0"]
    assert RunResult.load(directory).method("neggrad").curve[1].loss == 0.5


def test_a_full_disk_leaves_no_half_cache_entry(isolated_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = TensorCache("things")
    monkeypatch.setattr(os, "fsync", FullDisk(1))  # the payload fits, its sidecar does not
    with pytest.raises(WriteError, match=f"cannot write {cache.directory}/k.pt: {NO_SPACE}"):
        cache.save("k", {"x": torch.arange(3)}, {"what": "test"})
    assert files_under(cache.directory) == [] and not cache.exists("k")
    with pytest.raises(WriteError, match=f"cannot write {isolated_cache}/plain.txt: {NO_SPACE}"):
        atomic_write_bytes(isolated_cache / "plain.txt", b"hello")
    assert files_under(isolated_cache) == []


# --- a damaged cache entry ------------------------------------------------------------------------


def test_a_damaged_cache_entry_is_removed_and_rebuilt_where_asked(isolated_cache: Path) -> None:
    cache = TensorCache("things")
    cache.save("k", {"x": torch.arange(3)}, {"what": "test"})
    payload, sidecar = cache.paths("k")
    payload.write_bytes(payload.read_bytes()[:-5])
    with pytest.warns(CorruptCacheWarning, match=f"checksum mismatch for {payload}: the file is corrupt; removed it"):
        assert cache.load_or_none("k") is None
    assert not payload.exists() and not sidecar.exists()
    assert cache.load_or_none("k") is None  # absent now
    cache.save("k", {"x": torch.arange(3)}, {"what": "test"})
    sidecar.write_text("{")
    with pytest.warns(CorruptCacheWarning, match=f"cache entry {sidecar} is unreadable"):
        assert cache.load_or_none("k") is None


# --- damaged run files ------------------------------------------------------------------------------


def cut_steps_mid_row(run: Path) -> None:
    text = (run / "steps.csv").read_text()
    (run / "steps.csv").write_text(text[: text.rindex(",")])


def drop_a_column(run: Path) -> None:
    rows = [line.split(",") for line in (run / "steps.csv").read_text().splitlines()]
    gone = rows[0].index("seconds")
    (run / "steps.csv").write_text("".join(",".join(r[:gone] + r[gone + 1 :]) + "\n" for r in rows))


def spoil_a_number(run: Path) -> None:
    lines = (run / "steps.csv").read_text().splitlines()
    lines[2] = lines[2].replace("0.25", "0.2x5")
    (run / "steps.csv").write_text("\n".join(lines) + "\n")


def empty_steps(run: Path) -> None:
    (run / "steps.csv").write_text("")


def cut_summary(run: Path) -> None:
    text = (run / "summary.json").read_text()
    (run / "summary.json").write_text(text[: len(text) // 2])


def drop_summary_key(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    del summary["forget_indices"]
    (run / "summary.json").write_text(json.dumps(summary))


def drop_method_key(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    del summary["methods"]["neggrad"]["metrics"]
    (run / "summary.json").write_text(json.dumps(summary))


DAMAGES = {
    cut_steps_mid_row: r"steps.csv is damaged: line 3 has \d+ of the \d+ fields \(truncated\?\)",
    drop_a_column: r"steps.csv is damaged: line 1 lacks the column\(s\) seconds",
    spoil_a_number: r"steps.csv is damaged: line 3 holds a value that is not a number \(could not convert",
    empty_steps: r"steps.csv is damaged: line 1 lacks the column\(s\) method, step, epoch",
    cut_summary: r"summary.json is damaged: not valid JSON",
    drop_summary_key: r"summary.json is damaged: it has no forget_indices",
    drop_method_key: r"summary.json is damaged: method 'neggrad' has no metrics",
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=[d.__name__ for d in DAMAGES])
def test_every_reader_of_a_damaged_run_names_the_file(tmp_path: Path, damage, capsys) -> None:
    run = fake_run().save(tmp_path / "runs" / "fake" / "k2" / "seed0")
    assert RunResult.load(run).method("neggrad").curve[1].terms == {"ce": 0.5}
    damage(run)
    message = DAMAGES[damage]
    with pytest.raises(RunResultError, match=message):
        RunResult.load(run)
    with pytest.raises(AnalysisError, match=message):
        load_run(run)
    for argv in (["table", str(tmp_path / "runs")], ["figures", str(run), "--quiet"]):
        assert main(argv) == 2, argv
        lines = error_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith(f"stakes: error: {run}/") and "damaged" in lines[0], lines


def test_a_damaged_model_file_is_named(tmp_path: Path) -> None:
    run = fake_run().save(tmp_path / "run")
    model = run / "models" / "neggrad.pt"
    model.write_bytes(model.read_bytes()[:100])
    with pytest.raises(RunResultError, match=f"{model} is damaged"):
        RunResult.model_state(run, "neggrad")
    assert entry_problem(run, ["neggrad"]) == f"{model} is damaged: not a complete torch.save archive"


def test_partial_folders_of_a_killed_writer_are_not_runs(tmp_path: Path) -> None:
    fake_run().save(tmp_path / ".fake-k2-seed0.abc123.partial")
    fake_run().save(tmp_path / "fake-k2-seed0")
    assert find_runs(tmp_path) == [tmp_path / "fake-k2-seed0"]


# --- the notebooks' setup cell ---------------------------------------------------------------------


def test_check_setup_finds_the_data_and_the_device(tmp_path: Path, monkeypatch, capsys) -> None:
    check_setup("digits", "cpu")
    assert capsys.readouterr().out == "digits: 1,437 training and 360 test images, device cpu\n"
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        check_setup("digits", "tpu")
    monkeypatch.setenv("STAKES_DATA_DIR", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=f"CIFAR-10 not found under {tmp_path}"):
        check_setup("cifar10", "cpu")


def setup_cell_index(notebook: dict) -> int:
    """The index of the notebook's setup cell: the first code cell after the parameters."""
    cells = notebook["cells"]
    start = next(i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", []))
    return next(i for i in range(start + 1, len(cells)) if cells[i]["cell_type"] == "code")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_checks_its_setup_first(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    source = "".join(notebook["cells"][setup_cell_index(notebook)]["source"])
    assert "check_setup(DATASET, DEVICE)" in source, path.name


@pytest.mark.slow
def test_a_notebook_without_its_data_stops_in_the_setup_cell(tmp_path: Path, monkeypatch) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("STAKES_DATA_DIR", str(tmp_path / "no-data"))  # the kernel inherits it
    with pytest.raises(papermill.PapermillExecutionError) as caught:
        papermill.execute_notebook(
            str(NOTEBOOKS / "01_quickstart.ipynb"), str(tmp_path / "out.ipynb"),
            parameters={"DATASET": "cifar10", "FAST": True}, kernel_name="python3", cwd=str(tmp_path),
            progress_bar=False, execution_timeout=120,
        )
    error = caught.value
    assert error.ename == "DatasetNotFoundError" and f"not found under {tmp_path / 'no-data'}" in error.evalue
    assert "check_setup(DATASET, DEVICE)" in error.source  # the setup cell...
    assert error.exec_count == 3  # ...the first after the parameters and the ones papermill injected
    executed = json.loads((tmp_path / "out.ipynb").read_text(encoding="utf-8"))
    code = [c for c in executed["cells"] if c["cell_type"] == "code"]
    setup = next(i for i, c in enumerate(code) if "check_setup(DATASET, DEVICE)" in "".join(c["source"]))
    assert [c["execution_count"] for c in code[setup + 1 :]] == [None] * (len(code) - setup - 1)  # nothing ran after


# --- processes that are killed, interrupted or write at once: the tiny preset -------------------------

TINY_DATA_PLUGIN = '''"""Registers the test suite's tiny dataset (four classes of 8x8 squares) as 'tiny'."""
from stakes_core.data import DATASETS
from stakes_core.testing import tiny_dataset

DATASETS.register("tiny", lambda **_: tiny_dataset())
'''

SLEEPY_PLUGIN = '''"""NegGrad that says when a step starts and then sleeps, so a signal lands mid-run."""
import sys
import time

from stakes_core.methods import NegGrad, register_method


class Sleepy(NegGrad):
    name = "sleepy"

    def loss(self, *args, **kwargs):
        print("STEP", file=sys.stderr, flush=True)
        time.sleep(2.0)
        return super().loss(*args, **kwargs)


register_method(Sleepy)
'''

FULL_DISK_PLUGIN = '''"""A disk that fills up: os.fsync raises ENOSPC under $FULL_DISK_UNDER once
$FULL_DISK_ROOM files were written there."""
import errno
import os

_fsync = os.fsync
_room = [int(os.environ["FULL_DISK_ROOM"])]


def fsync(fd):
    if os.readlink(f"/proc/self/fd/{fd}").startswith(os.environ["FULL_DISK_UNDER"]):
        if _room[0] == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        _room[0] -= 1
    _fsync(fd)


os.fsync = fsync
'''

KILLED_WHEN = '''
import os, signal, sys
from pathlib import Path
from stakes_core.run.config import experiment_config
from stakes_core.run.context import pretrained_model
from stakes_core.run.runstore import load_or_run, run_directory

config = experiment_config(sys.argv[1], k=4, seed=0, methods=["neggrad"], overrides=["neggrad.max_epochs=2"],
                           device="cpu")
mode, store = sys.argv[2], Path(sys.argv[3])
entry, rename = run_directory(config, store), os.replace


def kill(*_):
    os.kill(os.getpid(), signal.SIGKILL)


def replace(source, destination):
    """os.replace, killed just before it renames the checkpoint's sidecar or the run's folder into place."""
    target = Path(destination)
    sidecar = target.suffix == ".json" and target.parent.name == "checkpoints"
    if (mode == "checkpoint" and sidecar) or (mode == "store" and target == entry):
        kill()
    rename(source, destination)


os.replace = replace
if mode == "pretraining":
    pretrained_model(config, progress=False, on_epoch=kill)
elif mode == "checkpoint":
    pretrained_model(config, progress=False)
else:
    load_or_run(config, root=store, progress=False, on_step=kill if mode == "run" else None)
'''

TOGETHER = '''
import os, sys, time
from pathlib import Path
from stakes_core.run import runstore
from stakes_core.run.config import experiment_config

store, barrier = runstore.store_result, Path(sys.argv[3])


def store_together(result, directory, save_models=True):
    """Wait until both writers have a finished run, then store it at the same moment."""
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return store(result, directory, save_models)


runstore.store_result = store_together
config = experiment_config(sys.argv[1], k=4, seed=0, methods=["neggrad"], overrides=["neggrad.max_epochs=2"],
                           device="cpu")
print(runstore.load_or_run(config, root=sys.argv[2], progress=False))
'''


@dataclass
class Tiny:
    """The tiny preset's files and a cache that holds its pretrained model."""

    folder: Path
    preset: Path
    plugin: Path
    cache: Path

    def config(self) -> ExperimentConfig:
        return experiment_config(str(self.preset), k=4, seed=0, methods=["neggrad"],
                                 overrides=["neggrad.max_epochs=2"], device="cpu")

    def env(self, cache: Path) -> dict[str, str]:
        """A child's environment: its own cache, the tiny dataset's plugin, one thread."""
        return {**os.environ, "STAKES_CACHE_DIR": str(cache), "STAKES_PLUGINS": str(self.plugin),
                "OMP_NUM_THREADS": "1"}

    def python(self, code: str, *argv: str | Path, cache: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, *map(str, argv)], env=self.env(cache), cwd=self.folder,
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    folder = tmp_path_factory.mktemp("tiny")
    plugin = folder / "tiny_data.py"
    plugin.write_text(TINY_DATA_PLUGIN)
    preset = write_tiny_preset(folder)
    found = Tiny(folder, preset, plugin, folder / "cache")
    with scratch_registries():
        DATASETS.register("tiny", lambda **_: tiny_dataset())
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STAKES_CACHE_DIR", str(found.cache))
            pretrained_model(found.config(), progress=False)
        yield found


@pytest.fixture
def cache(tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own copy of the tiny cache (the pretrained model in it), in and out of process."""
    shutil.copytree(tiny.cache, tmp_path / "cache")
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_sigkill_during_pretraining_never_leaves_a_checkpoint_that_is_used(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "cache"
    monkeypatch.setenv("STAKES_CACHE_DIR", str(empty))
    killed = tiny.python(KILLED_WHEN, tiny.preset, "pretraining", tmp_path, cache=empty)  # at the first epoch
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert files_under(empty / "checkpoints") == []
    killed = tiny.python(KILLED_WHEN, tiny.preset, "checkpoint", tmp_path, cache=empty)  # trained, sidecar not renamed
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    payloads = [p for p in files_under(empty / "checkpoints") if not p.name.startswith(".")]
    assert [p.suffix for p in payloads] == [".pt"] and not TensorCache("checkpoints").exists(payloads[0].stem)
    assert pretrained_model(tiny.config(), progress=False).source == "trained"  # the torn entry was not used
    assert pretrained_model(tiny.config(), progress=False).source == "cache"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["run", "store"])
def test_sigkill_during_a_run_leaves_no_entry_and_the_next_run_succeeds(tiny: Tiny, cache: Path, mode: str) -> None:
    """Killed at the first unlearning step ("run"), or with every file written but the folder not
    yet renamed into place ("store")."""
    store = cache.parent / "store"
    entry = run_directory(tiny.config(), store)
    killed = tiny.python(KILLED_WHEN, tiny.preset, mode, store, cache=cache)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not entry.exists() and find_runs(store) == [] and sibling_runs(tiny.config(), store) == []
    assert load_or_run(tiny.config(), root=store, progress=False) == entry and is_complete(entry, ["neggrad"])
    assert [run.seed for run in sibling_runs(tiny.config(), store)] == [0]


@pytest.mark.slow
def test_the_store_recomputes_a_damaged_entry(tiny: Tiny, cache: Path) -> None:
    store = cache.parent / "store"
    entry = load_or_run(tiny.config(), root=store, progress=False)
    cut_steps_mid_row(entry)
    assert not is_complete(entry, ["neggrad"])
    with pytest.warns(DamagedRunWarning, match=r"left out a damaged stored run: .*steps.csv is damaged: line \d+"):
        assert sibling_runs(tiny.config(), store) == []
    with pytest.warns(DamagedRunWarning, match=r"steps.csv is damaged: line \d+ .*; running it again"):
        assert load_or_run(tiny.config(), root=store, progress=False) == entry
    assert is_complete(entry, ["neggrad"])
    model = entry / "models" / "neggrad.pt"
    model.write_bytes(model.read_bytes()[:-200])
    with pytest.warns(DamagedRunWarning, match="neggrad.pt is damaged"):
        load_or_run(tiny.config(), root=store, progress=False)
    assert RunResult.model_state(entry, "neggrad") and [p.name for p in store.iterdir()] == [entry.name]


@pytest.mark.slow
def test_two_writers_of_the_same_entry_leave_one_whole_copy(tiny: Tiny, cache: Path) -> None:
    store, barrier = cache.parent / "store", cache.parent / "barrier"
    barrier.mkdir()
    command = [sys.executable, "-c", TOGETHER, str(tiny.preset), str(store), str(barrier)]
    writers = [subprocess.Popen(command, env=tiny.env(cache), cwd=tiny.folder, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [writer.communicate(timeout=CHILD_TIMEOUT) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err for _, err in outputs]
    entry = run_directory(tiny.config(), store)
    assert [out.strip() for out, _ in outputs] == [str(entry)] * 2
    assert len(list(barrier.iterdir())) == 2  # both stored at the same moment
    assert [p.name for p in store.iterdir()] == [entry.name]  # no partial folder left
    assert is_complete(entry, ["neggrad"])


@pytest.mark.slow
def test_two_runs_at_once_in_one_process_each_get_their_own_result(tiny: Tiny, cache: Path) -> None:
    """Two dashboard sessions of one server with different seeds: each session's thread asks the
    store for its run at the same moment. StructGuard draws from torch's process-wide generator,
    so this differs from running each alone unless the store makes them one after the other."""
    def config(seed: int) -> ExperimentConfig:
        overrides = ["structguard.max_epochs=3", "structguard.n_adv=2", "structguard.pgd_iterations=2"]
        return experiment_config(str(tiny.preset), k=4, seed=seed, methods=["structguard"], overrides=overrides,
                                 device="cpu")

    alone = {seed: RunResult.load(load_or_run(config(seed), root=cache.parent / "alone", progress=False))
             for seed in (1, 2)}
    together = cache.parent / "together"
    with ThreadPoolExecutor(max_workers=2) as sessions:
        directories = dict(zip((1, 2), sessions.map(
            lambda seed: load_or_run(config(seed), root=together, progress=False), (1, 2))))
    assert sorted(together.iterdir()) == sorted(directories.values())  # the store holds both
    for seed, directory in directories.items():
        result = RunResult.load(directory)
        assert result.seed == seed and result.forget_indices == alone[seed].forget_indices
        assert result.method("structguard").metrics == alone[seed].method("structguard").metrics


@pytest.mark.slow
def test_ctrl_c_during_a_run_exits_130_and_stores_nothing(tiny: Tiny, cache: Path) -> None:
    plugin = tiny.folder / "sleepy.py"
    plugin.write_text(SLEEPY_PLUGIN)
    out = cache.parent / "runs"
    command = [sys.executable, "-m", "stakes_core.cli", "--plugin", str(plugin), "run", "--preset", str(tiny.preset),
               "--methods", "sleepy", "--out", str(out), "--device", "cpu", "--quiet"]
    # the child starts with Python's own Ctrl-C handler whatever the test process does with SIGINT
    process = subprocess.Popen(command, env=tiny.env(cache), cwd=tiny.folder, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stderr is not None
    deadline = time.monotonic() + CHILD_TIMEOUT
    while process.stderr.readline().strip() != "STEP" and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before its first step"
    # one press, then as long as it takes: on a loaded machine the exit after "stakes: interrupted"
    # can take seconds, and a second press during it kills the interpreter (status -2, seen in a run)
    process.send_signal(signal.SIGINT)
    rest = process.communicate(timeout=CHILD_TIMEOUT)[1]
    assert process.returncode == 130, rest
    assert rest.strip().splitlines()[-1] == "stakes: interrupted" and "Traceback" not in rest
    assert not out.exists()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_file(tiny: Tiny, cache: Path) -> None:
    plugin = tiny.folder / "full_disk.py"
    plugin.write_text(FULL_DISK_PLUGIN)
    out = (cache.parent / "runs").resolve()
    env = {**tiny.env(cache), "FULL_DISK_UNDER": str(out), "FULL_DISK_ROOM": "1"}  # steps.csv fits, the model not
    command = [sys.executable, "-m", "stakes_core.cli", "--plugin", str(plugin), "run", "--preset", str(tiny.preset),
               "--methods", "neggrad", "--set", "neggrad.max_epochs=2", "--out", str(out), "--device", "cpu",
               "--quiet"]
    done = subprocess.run(command, env=env, cwd=tiny.folder, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"stakes: error: cannot write {out}/tiny/k4/seed0: {NO_SPACE}"]
    assert files_under(out) == []


@pytest.mark.slow
def test_a_damaged_checkpoint_is_retrained_with_a_one_line_warning(tiny: Tiny, cache: Path) -> None:
    checkpoint = next(p for p in (cache / "checkpoints").glob("*.pt"))
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    command = [sys.executable, "-m", "stakes_core.cli", "pretrain", "--preset", str(tiny.preset), "--device", "cpu",
               "--quiet"]
    done = subprocess.run(command, env=tiny.env(cache), cwd=tiny.folder, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"stakes: warning: checksum mismatch for {checkpoint}: the file is corrupt; removed it and rebuilding"
    ]
    assert "trained here" in done.stdout
    assert pretrained_model(tiny.config(), progress=False).source == "cache"  # whole again
