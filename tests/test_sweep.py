"""`stakes sweep`: grids from the command line and from spec files, their errors, the three
executors on the tiny preset (a local process pool, Ray with a 2-CPU local cluster, submitit's
local executor), file locks under concurrency, killed workers, failures and `--retry-failed`,
and `stakes table --sweep`."""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from stakes_core.cli import main
from stakes_core.infra.plugins import load_plugins
from stakes_core.report.sweeps import axis_choices, cell_rows, filter_cells, pool_cells
from stakes_core.report.table import paired_difference, summarize
from stakes_core.run.driver import plan, run_sweep
from stakes_core.run.executors import (
    ClusterUnreachableError,
    ExecutorOptions,
    MissingExtraError,
    RayExecutor,
    SerialExecutor,
    create_executor,
)
from stakes_core.run.results import RunResult, find_runs
from stakes_core.run.runstore import is_complete, load_or_run_exclusive
from stakes_core.run.sweep import Sweep, build_sweep, stored_results
from stakes_core.run.sweep_spec import SweepError, load_spec, spec_from_arguments
from stakes_core.testing import scratch_registries, write_tiny_preset

CHILD_TIMEOUT = 300

PLUGIN = '''"""The tiny dataset, a method that always fails, and a store that is killed once mid-write."""
import os
import signal
from pathlib import Path

from stakes_core.data import DATASETS
from stakes_core.methods import NegGrad, register_method
from stakes_core.testing import tiny_dataset

DATASETS.register("tiny", lambda **_: tiny_dataset())


class Broken(NegGrad):
    name = "broken"

    def loss(self, *args, **kwargs):
        raise RuntimeError("this method always fails")


register_method(Broken)

_replace = os.replace


def replace(source, destination):
    """SIGKILL this worker as it renames the entry of seed 1 into place, the first time only."""
    marker = os.environ.get("KILL_ONCE")
    if marker and Path(source).name.endswith(".partial") and "-seed1-" in Path(destination).name:
        if not Path(marker).exists():
            Path(marker).touch()
            os.kill(os.getpid(), signal.SIGKILL)
    _replace(source, destination)


os.replace = replace
'''

PRETRAIN_TOGETHER = '''
import sys, time
from pathlib import Path
from stakes_core.run.config import experiment_config
from stakes_core.run.context import pretrained_model

config = experiment_config(sys.argv[1], k=4, seed=0, methods=["neggrad"], device="cpu")
barrier = Path(sys.argv[2])
(barrier / sys.argv[3]).touch()
deadline = time.monotonic() + 120
while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
print(pretrained_model(config, progress=False).source)
'''


@dataclass
class Tiny:
    folder: Path
    preset: Path
    plugin: Path

    def spec(self, seeds: str = "0-1", methods: tuple[str, ...] = ("neggrad",), sets: tuple[str, ...] = ()):
        given = {"preset": [str(self.preset)], "seed": [seeds], "method": list(methods), "device": "cpu"}
        return spec_from_arguments(given, [f"{m}.max_epochs=2" for m in methods] + list(sets))

    def sweep(self, store: Path, **options) -> Sweep:
        return build_sweep(self.spec(**options), store)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tiny]:
    folder = tmp_path_factory.mktemp("tiny_sweep")
    plugin = folder / "tiny_plugin.py"
    plugin.write_text(PLUGIN)
    replace = os.replace
    with scratch_registries():
        load_plugins([str(plugin)])  # the workers load it too: the sweep passes them the loaded plugins
        yield Tiny(folder, write_tiny_preset(folder), plugin)
    os.replace = replace  # the plugin wraps it


def labels(sweep: Sweep) -> list[str]:
    return [cell.label(sweep.axes) for cell in sweep.cells]


# --- grids and their errors -------------------------------------------------------------------


def test_a_hyperparameter_axis_multiplies_only_its_own_methods_cells(tiny: Tiny, tmp_path: Path) -> None:
    sweep = tiny.sweep(tmp_path, seeds="0-1,5", methods=("neggrad", "adv"), sets=("adv.lr=0.01,0.02",))
    assert sweep.axes == ["seed", "method", "adv.lr"]
    assert len(sweep.cells) == 3 * (1 + 2)
    assert labels(sweep)[:3] == ["seed=0 neggrad", "seed=0 adv adv.lr=0.01", "seed=0 adv adv.lr=0.02"]
    assert [cell.config.method_configs["adv"]["lr"] for cell in sweep.cells if cell.method == "adv"][:2] == [0.01, 0.02]
    assert len({cell.directory for cell in sweep.cells}) == 9  # one run-store entry per cell


def test_a_spec_file_gives_the_same_cells_as_the_command_line(tiny: Tiny, tmp_path: Path) -> None:
    (tmp_path / "grid.yaml").write_text(
        f"preset: {tiny.preset}\nseeds: 0-1\nmethods: [neggrad]\ndevice: cpu\nset:\n  neggrad.max_epochs: 2\n"
        "store: store\n"
    )
    (tmp_path / "grid.toml").write_text(
        f'preset = "{tiny.preset}"\nseeds = [0, 1]\nmethods = ["neggrad"]\ndevice = "cpu"\nstore = "store"\n\n'
        "[set]\nneggrad.max_epochs = 2\n"
    )
    expected = [cell.directory for cell in tiny.sweep(tmp_path / "store").cells]
    for name in ("grid.yaml", "grid.toml"):
        spec = load_spec(tmp_path / name)
        assert spec.store == (tmp_path / "store").resolve()
        assert [cell.directory for cell in build_sweep(spec).cells] == expected


@pytest.mark.parametrize(("name", "text", "message"), [
    ("bad.yaml", "k: [4, 8\nseeds: 0-2\n", r"bad.yaml line 2: malformed YAML: "),
    ("bad.toml", "k = [4, 8\nseeds = 1\n", r"bad.toml line \d: malformed TOML: "),
    ("field.yaml", "k: [4]\nseedz: 0-2\n", r"field.yaml line 2: unknown axis or field 'seedz' \(known: .*METHOD.KEY\)"),
    ("hyper.yaml", "methods: [neggrad]\nset:\n  neggrad.lrr: [0.1, 0.2]\n",
     r"hyper.yaml line 3: neggrad has no hyperparameter lrr \(known: .*lr"),
    ("other.yaml", "methods: [neggrad]\nset:\n  adv.lr: 0.1\n",
     r"other.yaml line 3: adv.lr names method 'adv', which the sweep does not run"),
    ("empty.yaml", "k: []\n", r"empty.yaml line 1: k has no values, so the grid has no cells"),
    ("range.yaml", "seeds: 9-3\n", r"range.yaml line 1: the seed range '9-3' is empty"),
    ("type.yaml", "k: four\n", r"type.yaml line 1: k must be whole numbers or ranges like 0-9, got 'four'"),
    ("method.toml", 'methods = ["neggrad", "nosuch"]\n', r"method.toml line 1: unknown method 'nosuch'"),
    ("list.yaml", "- k\n- 4\n", r"list.yaml line 1: a sweep spec is a mapping of names to values, not a list"),
])
def test_a_bad_spec_file_is_one_error_with_its_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(SweepError, match=message):
        build_sweep(load_spec(tmp_path / name), tmp_path)


@pytest.mark.parametrize(("argv", "message"), [
    (["--set", "lambda=1,2"], r"--set lambda: unknown axis or field 'lambda'"),
    (["--seeds", "3-1"], r"--seeds: the seed range '3-1' is empty"),
    (["--methods", "neggrad", "--set", "structguard.align_weight=0.5,1"],
     r"--set structguard.align_weight: .* which the sweep does not run"),
    (["--set", "anchors=text,nosuch"], r"--set anchors: anchor source 'nosuch' is not one of"),
    (["--k", "0"], r"--k: k=0 is invalid"),
])
def test_bad_command_line_axes_are_one_line_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["sweep", "--store", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stakes: error: ")
    assert re.search(message, err[0]), err[0]
    assert not any(tmp_path.iterdir())


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def without(name: str, *args, **kwargs):
        if name in ("ray", "submitit"):
            raise ModuleNotFoundError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without)
    with pytest.raises(MissingExtraError, match=r"needs ray, .*'stakes\[ray\]' \(or pip install ray==2.60.0\)"):
        create_executor("ray", ExecutorOptions())
    with pytest.raises(MissingExtraError, match=r"pip install 'stakes\[slurm\]' \(or pip install submitit==1.5.4\)"):
        create_executor("slurm", ExecutorOptions())


def test_an_unreachable_address_is_a_clear_message_after_a_bounded_wait(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = create_executor("ray", ExecutorOptions(address=f"127.0.0.1:{port}", connect_timeout=1.5))
    start = time.monotonic()
    with pytest.raises(ClusterUnreachableError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} within "
                       r"1.5 s \(.*\); start it with `ray start --head`"):
        executor.start()
    assert 1.5 <= time.monotonic() - start < 10


# --- running cells ----------------------------------------------------------------------------


def run(sweep: Sweep, executor: str = "local", retry_failed: bool = False, **options):
    """Plan and run ``sweep``, one torch thread per cell (two on a busy 2-core machine is far slower)."""
    options.setdefault("threads", 1)
    found = plan(sweep, retry_failed)
    report = run_sweep(sweep, found.to_run, create_executor(executor, ExecutorOptions(**options)), progress=False)
    return found, report


def step_records(directory: Path) -> dict:
    run = RunResult.load(directory)
    return {name: [repr((r.step, r.forget_acc, r.views, r.loss, r.terms)) for r in result.curve]
            for name, result in run.methods.items()}  # repr: the loss of step 0 is nan


@pytest.mark.slow
def test_the_local_pool_runs_missing_cells_reruns_a_killed_workers_cell_and_skips_stored_ones(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    found, report = run(tiny.sweep(store, seeds="0"), "local", workers=1)  # in this process
    assert found.count("to run") == 1 and [o.ok for o in report.outcomes] == [True]
    monkeypatch.setenv("KILL_ONCE", str(tmp_path / "killed"))  # the worker storing seed 1 is killed mid-rename
    sweep = tiny.sweep(store, seeds="0-2")
    found, report = run(sweep, "local", workers=2, threads=1)  # two spawned workers
    assert found.states == ["stored", "to run", "to run"]
    assert (tmp_path / "killed").exists() and "seed=1" in report.requeued
    assert sorted(o.label for o in report.outcomes) == ["seed=1", "seed=2"]
    assert all(o.ok and o.ran for o in report.outcomes) and not report.failures
    assert find_runs(store) == sorted(cell.directory for cell in sweep.cells)  # the torn copy is hidden, never read
    assert any(p.name.endswith(".partial") for p in store.iterdir())
    assert all(is_complete(cell.directory, ["neggrad"]) for cell in sweep.cells)
    log = (store / ".sweep" / "logs" / f"{sweep.cells[1].directory.name}.log").read_text()
    assert "worker process died" in log and log.count("=== seed=1:") == 2 and "ran and stored" in log
    found, report = run(sweep, "local", workers=2)
    assert found.states == ["stored"] * 3 and report.outcomes == [] and found.estimate_line(2) == "nothing to run"


@pytest.mark.slow
def test_ray_on_a_two_cpu_local_cluster(tiny: Tiny, tmp_path: Path) -> None:
    sweep = tiny.sweep(tmp_path / "ray")
    executor = create_executor("ray", ExecutorOptions(workers=2, threads=1))
    assert isinstance(executor, RayExecutor)
    report = run_sweep(sweep, sweep.cells, executor, progress=False)
    assert [o.ok for o in report.outcomes] == [True, True], report.failures
    serial = tiny.sweep(tmp_path / "serial")
    run(serial, "local", workers=1, threads=1)
    for cell, reference in zip(sweep.cells, serial.cells):  # the same per-step records as a serial run
        assert step_records(cell.directory) == step_records(reference.directory)


@pytest.mark.slow
def test_slurm_through_submitits_local_executor(tiny: Tiny, tmp_path: Path) -> None:
    sweep = tiny.sweep(tmp_path / "slurm")
    found, report = run(sweep, "slurm", workers=2, threads=1, folder=tmp_path / "submitit")
    assert [o.ok for o in report.outcomes] == [True, True], report.failures
    assert all(is_complete(cell.directory, ["neggrad"]) for cell in sweep.cells)


@pytest.mark.slow
def test_two_processes_that_need_the_same_checkpoint_pretrain_it_once(tiny: Tiny, tmp_path: Path) -> None:
    env = {**os.environ, "STAKES_CACHE_DIR": str(tmp_path / "cache"), "STAKES_PLUGINS": str(tiny.plugin),
           "OMP_NUM_THREADS": "1"}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    workers = [subprocess.Popen([sys.executable, "-c", PRETRAIN_TOGETHER, str(tiny.preset), str(barrier), str(i)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [worker.communicate(timeout=CHILD_TIMEOUT) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    assert sorted(out.strip() for out, _ in outputs) == ["cache", "trained"]  # one trained it, the other waited


@pytest.mark.slow
def test_two_sweeps_that_reach_the_same_cell_at_once_run_it_once(tiny: Tiny, tmp_path: Path) -> None:
    (cell,) = tiny.sweep(tmp_path, seeds="3").cells
    with ThreadPoolExecutor(max_workers=2) as sweeps:  # the entry's file lock orders threads as it orders processes
        outcomes = list(sweeps.map(lambda _: load_or_run_exclusive(cell.config, tmp_path, progress=False), range(2)))
    assert sorted(ran for _, ran in outcomes) == [False, True] and {d for d, _ in outcomes} == {cell.directory}


@pytest.mark.slow
def test_failures_are_summarised_exit_non_zero_and_are_retried_only_when_asked(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--plugin", str(tiny.plugin), "sweep", "--preset", str(tiny.preset), "--seeds", "0", "--methods",
            "neggrad", "broken", "--set", "neggrad.max_epochs=2", "--set", "broken.max_epochs=2", "--device", "cpu",
            "--store", str(tmp_path), "--workers", "1", "--threads", "1", "--quiet"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    log = tmp_path / ".sweep" / "logs"
    assert "sweep: 1 of 2 cells ran" in out
    failed = [line for line in out.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and failed[0].startswith("failed: broken: RuntimeError: this method always fails (log: ")
    assert err.strip().splitlines()[-1] == ("stakes: error: 1 of the sweep's 2 cells failed (see above; "
                                            "--retry-failed runs them again)")
    (broken_log,) = [path for path in log.iterdir() if "RuntimeError: this method always fails" in path.read_text()]
    assert "Traceback" in broken_log.read_text()
    assert main(argv) == 2  # left alone, still reported
    out = capsys.readouterr().out
    assert "1 stored, 1 failed before, 0 to run" in out and "left alone (--retry-failed runs them again)" in out
    assert main([*argv, "--retry-failed"]) == 2
    assert "1 stored, 1 failed before, 1 to run" in capsys.readouterr().out
    assert broken_log.read_text().count("=== broken") == 2
    assert main([*argv, "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-2:] == ["  neggrad  stored", "  broken   failed before"]


@pytest.mark.slow
def test_table_of_a_sweep_pools_its_cells_by_seed(tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "grid.yaml").write_text(
        f"preset: {tiny.preset}\nseeds: 0-1\nmethods: [neggrad, adv]\ndevice: cpu\nstore: store\nset:\n"
        "  neggrad.max_epochs: 2\n  adv.max_epochs: 2\n  adv.lr: [0.01, 0.02]\n"
    )
    sweep = build_sweep(load_spec(tmp_path / "grid.yaml"))
    run(sweep, "local", workers=1)
    found, missing = stored_results(sweep)
    assert len(found) == 6 and missing == []
    ((title, runs),) = pool_cells(found, sweep.axes)
    assert title == "every cell" and [run.seed for run in runs] == [0, 1]
    assert list(runs[0].methods) == ["neggrad", "adv[lr=0.01]", "adv[lr=0.02]"]
    rows = summarize(runs)
    assert [(row["method"], row["n"]) for row in rows] == [("original", 2), ("neggrad", 2), ("adv[lr=0.01]", 2),
                                                          ("adv[lr=0.02]", 2)]
    (pair,) = paired_difference(runs, "adv[lr=0.02]", "neggrad", "test_acc")
    assert pair["seeds"] == [0, 1]
    choices = axis_choices(found, sweep.axes)
    assert choices == {"seed": [0, 1], "method": ["neggrad", "adv"], "adv.lr": [None, 0.01, 0.02]}
    chosen = filter_cells(found, {"seed": [1], "method": ["adv"]})
    assert [row["adv.lr"] for row in cell_rows(chosen, sweep.axes, ["test_acc"])] == [0.01, 0.02]
    assert main(["table", "--sweep", str(tmp_path / "grid.yaml"), "--paired", "adv[lr=0.01]", "neggrad"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### every cell") and "| 4 | adv[lr=0.02] | D_f only | 2 |" in out
    assert "adv[lr=0.01] − neggrad" in out
    json.dumps(cell_rows(found, sweep.axes, ["test_acc"]))  # plain data, for the dashboard


def test_one_worker_runs_in_this_process() -> None:
    assert isinstance(create_executor("local", ExecutorOptions(workers=1)), SerialExecutor)
