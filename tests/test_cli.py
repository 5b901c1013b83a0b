"""The command line's contract: a user error is one ``stakes: error:`` line and exit status 2,
a bug keeps its traceback, and ``stakes cache`` lists and clears the cache's parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stakes_core.cli import main
from stakes_core.infra.assets import asset_path
from stakes_core.infra.cache_admin import human_size
from stakes_core.infra.errors import StakesError
from stakes_core.methods import NegGrad, register_method
from stakes_core.testing import scratch_registries


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--device", "tpu", "--quiet"], "unknown device 'tpu'"),
        (["run", "--set", "adv.lr", "--quiet"], "not of the form method.key=value"),
        (["run", "--set", "oracle.lr=0.1", "--methods", "neggrad", "--quiet"], "names method 'oracle'"),
        (["run", "--methods", "unlearn_all", "--quiet"], "unknown method 'unlearn_all'"),
        (["run", "--preset", "no/such/preset.json", "--quiet"], "unknown preset 'no/such/preset.json'"),
        (["run", "--descriptions", "no/such/file.json", "--quiet"], "descriptions file 'no/such/file.json' not found"),
        (["table", "no/such/runs"], "no run directories"),
        (["cache", "clear"], "say what to clear"),
    ],
)
def test_a_user_error_is_one_line_and_exit_status_2(argv: list[str], message: str, capsys) -> None:
    assert main(argv) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("stakes: error: ") and message in lines[0]


def test_a_preset_with_an_unknown_pretrain_key_is_a_user_error(tmp_path: Path, capsys) -> None:
    preset = json.loads(asset_path("presets", "digits.json").read_text())
    preset["pretrain"]["epoch"] = 3
    path = tmp_path / "typo.json"
    path.write_text(json.dumps(preset))
    assert main(["run", "--preset", str(path), "--quiet"]) == 2
    assert "unknown pretrain key(s) epoch" in error_lines(capsys)[-1]


class BrokenLoss(NegGrad):
    """A user's method with a bug: its loss raises a plain ValueError."""

    name = "broken_loss"

    def loss(self, *args: object, **kwargs: object) -> tuple:
        raise ValueError("a bug in the user's loss")


def test_an_error_inside_a_method_is_a_bug_and_keeps_its_traceback(tmp_path: Path, isolated_cache, capsys) -> None:
    preset = {
        "dataset": {"name": "digits", "image_size": 8},
        "pretrain": {"model": "resnet18_narrow", "model_kwargs": {"width": 2}, "epochs": 1},
        "anchors": {"encoder": "random:16", "descriptions": "digits"},
        "k": [2],
        "probe_size": 16,
        "methods": {},
    }
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(preset))
    argv = ["run", "--preset", str(path), "--methods", "broken_loss", "--out", str(tmp_path / "runs"), "--quiet",
            "--device", "cpu"]
    with scratch_registries():
        register_method(BrokenLoss)
        with pytest.raises(ValueError, match="a bug in the user's loss") as caught:
            main(argv)
    assert not isinstance(caught.value, StakesError)
    assert "stakes: error" not in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def fill_cache(root: Path) -> None:
    """Two stored runs, one checkpoint (payload + sidecar), one description and a stranger's file."""
    for name in ("digits-k4-seed0-aaaa", "digits-k4-seed1-bbbb"):
        (root / "runs" / name / "models").mkdir(parents=True)
        (root / "runs" / name / "summary.json").write_text("{}")
        (root / "runs" / name / "models" / "neggrad.pt").write_bytes(b"\0" * 3000)
    (root / "runs" / ".digits-k4-seed2-cccc.123.partial").mkdir()
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "key.pt").write_bytes(b"\0" * 2048)
    (root / "checkpoints" / "key.json").write_text("{}")
    (root / "descriptions").mkdir()
    (root / "descriptions" / "0123.json").write_text("{}")
    (root / "notes.txt").write_text("not the library's")


def test_cache_list_shows_every_part_with_entries_and_size(isolated_cache: Path, capsys) -> None:
    fill_cache(isolated_cache)
    assert main(["cache", "list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["cache:"][1] == str(isolated_cache)
    assert rows["runs"][1:4] == ["2", "5.9", "KiB"]
    assert rows["checkpoints"][1:4] == ["1", "2.0", "KiB"]
    assert rows["anchors"][1:3] == ["-", "absent"] and rows["embeddings"][1:3] == ["-", "absent"]
    assert rows["descriptions"][1:3] == ["1", "2"]
    assert rows["other"][1:3] == ["1", "17"]
    assert rows["total"][1] == "5"


def test_cache_clear_removes_the_chosen_parts_and_says_what_it_freed(isolated_cache: Path, capsys) -> None:
    fill_cache(isolated_cache)
    assert main(["cache", "clear", "--runs", "--anchors"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("removed runs: 2 entries, 5.9 KiB")
    assert out[1].startswith("anchors: absent, nothing to remove")
    assert out[2] == "freed 5.9 KiB"
    assert not (isolated_cache / "runs").exists() and (isolated_cache / "checkpoints" / "key.pt").is_file()
    assert main(["cache", "clear", "--all"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "freed 2.0 KiB"
    assert [p.name for p in isolated_cache.iterdir()] == ["notes.txt"]  # never the library's to remove


def test_cache_list_of_a_cache_that_does_not_exist(isolated_cache: Path, capsys) -> None:
    assert main(["cache", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["total", "0", "0", "B"]


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 * 1024**2 + 1, "5.0 MiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_human_size(size: int, text: str) -> None:
    assert human_size(size) == text
