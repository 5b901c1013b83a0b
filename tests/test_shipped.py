"""The shipped digits checkpoint: every entry point loads it by default, it is the model the
README's numbers come from (its accuracy and hashes are pinned here), a damaged file is refused
in one line, and ``from_scratch`` trains on this machine instead under another run key."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from stakes_core.cli import main
from stakes_core.infra.assets import asset_path
from stakes_core.infra.cache import config_key, file_sha256, state_sha256
from stakes_core.metrics.accuracy import accuracy
from stakes_core.models import pretrain, shipped
from stakes_core.models.pretrain import PretrainConfig, build_model, checkpoint_config
from stakes_core.models.shipped import ShippedCheckpointError, find_shipped, shipped_checkpoints
from stakes_core.run.config import experiment_config
from stakes_core.run.context import dataset_with_fingerprint, pretrained_model
from stakes_core.run.environment import environment_record
from stakes_core.run.experiment import run_experiment
from stakes_core.run.runstore import run_key

PINNED_TEST_ACC = 98.88888597488403
"""356 of the 360 digits test images, as ``accuracy`` computes it (float32)."""
PINNED_FILE_SHA256 = "ff158c2550ab36c6e1a5a22459cf892fdd35b6a3afd814db83b9b5bb1c23539a"
PINNED_STATE_SHA256 = "bcd4295c6cf58878489e0bd3c6432273c06cc9a0dd213a33e3b1549ba1255a0c"


def digits_config(**choices: object):
    return experiment_config("digits", k=4, methods=["neggrad"], device="cpu", **choices)


def test_the_shipped_digits_model_is_loaded_by_default_with_its_pinned_accuracy() -> None:
    config = digits_config()
    pretrained = pretrained_model(config, progress=False)
    dataset, _ = dataset_with_fingerprint(config)
    assert pretrained.source == "shipped"
    assert state_sha256(pretrained.model.state_dict()) == PINNED_STATE_SHA256
    assert accuracy(pretrained.model, dataset.test_images, dataset.test_labels) == PINNED_TEST_ACC
    assert pretrained.test_acc == PINNED_TEST_ACC


def test_the_manifest_describes_the_file_it_ships() -> None:
    entry = next(e for e in shipped_checkpoints() if e.name == "digits")
    manifest = json.loads(asset_path("checkpoints", "manifest.json").read_text())["checkpoints"][0]
    assert entry.path == asset_path("checkpoints", "digits.pt")
    assert file_sha256(entry.path) == entry.sha256 == PINNED_FILE_SHA256
    assert manifest["state_sha256"] == PINNED_STATE_SHA256 and manifest["config_key"] == entry.key
    assert entry.test_acc == PINNED_TEST_ACC and entry.made["threads"] == 1
    assert entry.made["command"].startswith("python benchmarks/make_shipped_checkpoint.py")


def test_only_the_exact_checkpoint_config_gets_the_shipped_model() -> None:
    dataset, fingerprint = dataset_with_fingerprint(digits_config())
    recipe = PretrainConfig(**digits_config().pretrain)
    assert find_shipped(checkpoint_config(recipe, fingerprint)) is not None
    for other in (replace(recipe, seed=1), replace(recipe, epochs=14)):
        assert find_shipped(checkpoint_config(other, fingerprint)) is None
    assert find_shipped(checkpoint_config(recipe, {**fingerprint, "train_sha256": "0" * 64})) is None


@pytest.fixture
def tampered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped checkpoints with one byte of the weights file changed, in place of the real ones."""
    folder = tmp_path / "checkpoints"
    shutil.copytree(asset_path("checkpoints"), folder)
    weights = folder / "digits.pt"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(shipped, "asset_path", lambda *parts: tmp_path.joinpath(*parts))
    return weights


def test_a_tampered_shipped_checkpoint_is_refused_in_one_line(tampered: Path, isolated_cache, capsys) -> None:
    with pytest.raises(ShippedCheckpointError, match="does not match its SHA-256"):
        pretrained_model(digits_config(), progress=False)
    assert main(["pretrain", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stakes: error: shipped checkpoint ") and str(tampered) in lines[0]
    assert not (isolated_cache / "checkpoints").exists()  # refused, not retrained over


def test_from_scratch_trains_here_instead_and_is_another_run(isolated_cache, monkeypatch) -> None:
    """With ``from_scratch`` the shipped file is never read: the model is trained (here a stand-in
    for the 10-second training) and cached, and the runs of it have their own key."""
    trained = []

    def stand_in(config: PretrainConfig, dataset, *args: object, **kwargs: object):
        trained.append(config)
        return build_model(config, dataset).eval(), 0.5

    monkeypatch.setattr(pretrain, "train_model", stand_in)
    monkeypatch.setattr(pretrain, "load_shipped", lambda entry: pytest.fail("the shipped file was read"))
    config = digits_config(from_scratch=True)
    first, second = (pretrained_model(config, progress=False) for _ in range(2))
    assert (first.source, second.source) == ("trained", "cache") and len(trained) == 1
    assert state_sha256(first.model.state_dict()) != PINNED_STATE_SHA256
    assert run_key(config) != run_key(digits_config())
    fingerprint = dataset_with_fingerprint(config)[1]
    assert config_key(checkpoint_config(trained[0], fingerprint)) == shipped_checkpoints()[0].key  # same recipe


def test_the_environment_record_names_what_determines_the_numbers() -> None:
    record = environment_record("cpu", ["neggrad", "structguard"], "shipped")
    assert set(record) == {"stakes", "code_versions", "python", "torch", "numpy", "threads", "workers", "device", "cpu",
                           "gpu", "shipped_checkpoint"}
    assert record["workers"] == 1 and record["threads"] == torch.get_num_threads()
    halved = max(1, torch.get_num_threads() // 2)
    assert environment_record("cpu", ["neggrad"], "shipped", workers=2)["threads"] == halved
    assert record["code_versions"] == {"loop": 1, "neggrad": 1, "structguard": record["code_versions"]["structguard"]}
    assert record["cpu"] and record["gpu"] is None and record["shipped_checkpoint"] is True
    assert environment_record("cpu", [], "cache")["shipped_checkpoint"] is False


@pytest.mark.slow
def test_a_run_records_its_model_source_and_environment(tmp_path: Path) -> None:
    result = run_experiment(digits_config(overrides=["neggrad.max_epochs=1"]), progress=False)
    summary = json.loads((result.save(tmp_path, save_models=False) / "summary.json").read_text())
    assert summary["pretrained"]["source"] == "shipped"
    assert summary["pretrained"]["state_sha256"] == PINNED_STATE_SHA256
    assert summary["pretrained"]["test_acc"] == PINNED_TEST_ACC
    environment = summary["environment"]
    assert environment["shipped_checkpoint"] is True and environment["device"] == "cpu"
    assert set(environment["code_versions"]) == {"loop", "neggrad"} and environment["threads"] >= 1
    assert summary["config"]["from_scratch"] is False
    assert summary["methods"]["neggrad"]["reached_target"] == result.method("neggrad").reached_target
