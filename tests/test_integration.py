"""End to end on the offline default (digits): every method forgets k=16, deterministically,
and the CLI runs, saves, tabulates and fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from stakes_core.cli import main
from stakes_core.run.config import experiment_config
from stakes_core.run.experiment import run_experiment

pytestmark = pytest.mark.slow  # every test here runs the digits default end to end

ALL_METHODS = ["neggrad", "adv", "l2ul", "structguard", "oracle"]


@pytest.fixture(scope="module")
def digits_runs():
    """The same run twice: the methods one after another with one torch thread, then side by side
    on two workers of one thread each (which must give the same numbers, bit for bit)."""
    config = experiment_config("digits", k=16, seed=0, methods=ALL_METHODS, device="cpu")
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        sequential = run_experiment(config, progress=False, workers=1)
        torch.set_num_threads(2)
        side_by_side = run_experiment(config, progress=False, workers=2)
    finally:
        torch.set_num_threads(previous)
    assert side_by_side.environment["threads"] == sequential.environment["threads"] == 1
    return [sequential, side_by_side]


def test_pretrained_digits_model_is_accurate(digits_runs) -> None:
    assert digits_runs[0].original["test_acc"] >= 95.0
    assert digits_runs[0].original["forget_acc"] == 100.0


@pytest.mark.parametrize("method", ALL_METHODS)
def test_every_method_drives_forget_accuracy_to_zero(digits_runs, method: str) -> None:
    result = digits_runs[0].method(method)
    assert result.reached_zero and result.metrics["forget_acc"] == 0.0 and result.metrics["deletion_rate"] == 100.0
    assert result.curve[-1].forget_acc == 0.0 and result.steps == len(result.curve) - 1


def test_same_seed_gives_identical_metrics(digits_runs) -> None:
    first, second = digits_runs  # one after another, then side by side: the same threads per method
    for name in ALL_METHODS:
        assert first.method(name).metrics == second.method(name).metrics
        assert [r.collapse for r in first.method(name).curve] == [r.collapse for r in second.method(name).curve]
        assert [r.loss for r in first.method(name).curve][1:] == [r.loss for r in second.method(name).curve][1:]


def test_structguard_records_both_structure_views(digits_runs) -> None:
    curve = digits_runs[0].method("structguard").curve
    assert curve[0].collapse == 0.0
    assert curve[0].views["projector"] > 0.5  # the projector starts random (digits.md)


def test_cli_run_then_table(tmp_path, capsys) -> None:
    assert main(["run", "--k", "4", "--seeds", "0", "1", "--methods", "neggrad", "l2ul", "--out", str(tmp_path),
                 "--quiet", "--device", "cpu"]) == 0
    assert (tmp_path / "digits" / "k4" / "seed1" / "models" / "l2ul.pt").is_file()
    capsys.readouterr()
    assert main(["table", str(tmp_path), "--paired", "l2ul", "neggrad", "--correlation"]) == 0
    out = capsys.readouterr().out
    assert "| 4 | original | – | 2 |" in out and "| 4 | l2ul | D_f only | 2 |" in out
    assert "l2ul − neggrad (test_acc)" in out
    assert "Spearman rank correlation of final_collapse with test_acc over 4 method runs" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--k", "0"], "k=0 is invalid"),
        (["run", "--k", "5000"], "k=5000 is invalid"),
        (["run", "--methods", "unlearn_all"], "unknown method 'unlearn_all'"),
        (["run", "--preset", "mnist"], "unknown preset 'mnist'"),
        (["run", "--encoder", "word2vec"], "unknown encoder 'word2vec'"),
        (["run", "--set", "adv.lr"], "not of the form method.key=value"),
        (["run", "--preset", "cifar10", "--data-root", "/nonexistent"], "CIFAR-10 not found under /nonexistent"),
        (["table", "/nonexistent"], "no run directories"),
    ],
)
def test_cli_errors_are_one_line_with_exit_status_2(argv, message, capsys) -> None:
    assert main([*argv, "--quiet"] if argv[0] == "run" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("stakes: error: ") and message in err[-1]


def test_bad_descriptions_files_are_rejected(tmp_path, capsys) -> None:
    short = tmp_path / "nine.json"
    short.write_text('{' + ", ".join(f'"{d}": ["a stroke"]' for d in range(9)) + '}')
    broken = tmp_path / "broken.json"
    broken.write_text('{"0": ["loop"],')
    for path, message in ((short, "9 classes but the dataset has 10"), (broken, "invalid JSON at line 1")):
        assert main(["run", "--k", "4", "--descriptions", str(path), "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_cli_pretrain_reports_the_cached_model(digits_runs, capsys) -> None:
    assert main(["pretrain", "--quiet"]) == 0
    assert "resnet18_narrow on digits: test_acc" in capsys.readouterr().out


def test_console_script_module_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "stakes_core.cli", "list"], capture_output=True, text=True, check=True)
    assert "methods: adv (D_f only), boundary_shrink (D_f only), finetune (D_f + D_r)," in done.stdout
    assert "oracle (D_f + D_r), random_label (D_f only)" in done.stdout and "retrain (retrains on D_r)" in done.stdout


def test_cli_runs_a_users_image_folder_preset(tmp_path, isolated_cache, capsys) -> None:
    """The path a user takes for Lacuna-10 faces: a folder of class sub-folders + a preset."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(["alice", "bob", "carol"]):
        folder = tmp_path / "faces" / name
        folder.mkdir(parents=True)
        for i in range(12):
            pixels = (rng.random((20, 20, 3)) * 80 + 60 * c).astype("uint8")
            Image.fromarray(pixels).save(folder / f"{i}.png")
    descriptions = tmp_path / "faces.json"
    descriptions.write_text(json.dumps({n: [f"{n}'s face"] for n in ["alice", "bob", "carol"]}))
    preset = {
        "dataset": {"name": "imagefolder", "root": str(tmp_path / "faces"), "image_size": 16},
        "pretrain": {"model": "resnet18_narrow", "model_kwargs": {"width": 4}, "epochs": 2},
        "anchors": {"encoder": "random:32", "descriptions": str(descriptions)},
        "k": [2],
        "methods": {"structguard": {"n_adv": 4, "pgd_iterations": 3, "pgd_eps": 0.5, "max_epochs": 3}},
    }
    (tmp_path / "faces_preset.json").write_text(json.dumps(preset))
    argv = ["run", "--preset", str(tmp_path / "faces_preset.json"), "--methods", "neggrad", "structguard",
            "--out", str(tmp_path / "runs"), "--quiet", "--device", "cpu"]
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "runs" / "imagefolder" / "k2" / "seed0" / "summary.json").read_text())
    assert summary["dataset"]["classes"] == ["alice", "bob", "carol"]
    assert set(summary["methods"]) == {"neggrad", "structguard"}


def test_cli_run_passes_acceleration_flags(tmp_path) -> None:
    assert main(["run", "--k", "4", "--methods", "neggrad", "--channels-last", "--out", str(tmp_path), "--quiet",
                 "--device", "cpu", "--no-models"]) == 0
    summary = json.loads((tmp_path / "digits" / "k4" / "seed0" / "summary.json").read_text())
    assert summary["config"]["channels_last"] is True and summary["config"]["precision"] == "fp32"
    assert summary["methods"]["neggrad"]["metrics"]["forget_acc"] == 0.0
