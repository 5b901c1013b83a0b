"""Two stored runs side by side: the labels that tell stored runs apart, what differs in a
chosen pair, the refusal of two datasets, and the dashboard page that shows them."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

import pytest
from streamlit.testing.v1 import AppTest

from stakes_core.analysis import AnalysisError
from stakes_core.lab.side_by_side import StoredRun, default_pair, pair_differences, stored_runs
from stakes_core.methods import StepRecord
from stakes_core.run.config import experiment_config
from stakes_core.run.results import MethodResult, RunResult
from stakes_core.run.runstore import SkippedRun, load_or_run, run_directory, store_root

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
SHAPES = {"digits": [1, 16, 16], "shapes": [3, 32, 32]}


def fake_run(root: Path, stored_at: float, preset: str = "digits",
             methods: tuple[str, ...] = ("neggrad", "structguard"), k: int = 4, **options) -> Path:
    """A run of ``preset`` with the config the options give and made-up results (no training, no
    models), stored where the run store keeps it and dated ``stored_at``."""
    config = experiment_config(preset, k=k, methods=list(methods), device="cpu", **options)
    curve = [StepRecord(0, 0, 100.0, {"backbone": 0.0}, float("nan"), 0.0),
             StepRecord(1, 0, 0.0, {"backbone": 0.2}, 0.5, 0.1)]
    metrics = {"retain_acc": 90.0, "forget_acc": 0.0, "test_acc": 85.0, "deletion_rate": 100.0}
    results = {name: MethodResult(name, {}, metrics, 1, 1, {"steps": 0.1}, True, curve) for name in config.methods}
    run = RunResult(asdict(config), {"name": config.dataset["name"], "image_shape": SHAPES[preset]},
                    {"retain_acc": 95.0, "forget_acc": 100.0, "test_acc": 88.0}, {}, [3, 7, 9, 11], [1, 2], results)
    directory = run.save(run_directory(config, root), save_models=False)
    os.utime(directory / "summary.json", (stored_at, stored_at))
    return directory


@pytest.fixture
def store(tmp_path: Path) -> dict[str, Path]:
    """Five runs, the oldest first: the paper's text anchors, permuted anchors, StructGuard in the
    ConSE space, k = 16 with StructGuard alone, and a run of the shapes dataset."""
    return {
        "text": fake_run(tmp_path, 1_000),
        "permuted": fake_run(tmp_path, 2_000, anchor_source="permuted"),
        "conse": fake_run(tmp_path, 3_000, overrides=["structguard.structure_space=conse"]),
        "k16": fake_run(tmp_path, 4_000, methods=("structguard",), k=16),
        "shapes": fake_run(tmp_path, 5_000, preset="shapes", methods=("structguard",)),
    }


def by_name(root: Path, store: dict[str, Path]) -> dict[str, StoredRun]:
    runs = {run.directory: run for run in stored_runs(root).runs}
    return {name: runs[directory] for name, directory in store.items()}


def test_labels_tell_the_stored_runs_apart_newest_first(tmp_path: Path, store: dict[str, Path]) -> None:
    found = stored_runs(tmp_path)
    assert [run.directory for run in found.runs] == list(reversed(store.values()))
    labels = {run.directory: run.label for run in found.runs}
    assert labels[store["text"]] == ("digits · k = 4 · seed 0 · NegGrad, StructGuard · text anchors · "
                                     "structguard.structure_space=paper")
    assert labels[store["permuted"]] == ("digits · k = 4 · seed 0 · NegGrad, StructGuard · permuted anchors · "
                                         "structguard.structure_space=paper")
    assert labels[store["conse"]].endswith("text anchors · structguard.structure_space=conse")
    assert labels[store["k16"]].startswith("digits · k = 16 · seed 0 · StructGuard · text anchors")
    assert labels[store["shapes"]] == "shapes · k = 4 · seed 0 · StructGuard · text anchors"  # nothing varies there
    assert default_pair(found.runs) == (0, 1)  # the newest run has no other run of its dataset
    assert not found.skipped and not found.damaged


def test_the_default_pair_is_the_newest_run_and_the_newest_other_run_of_its_dataset(tmp_path: Path) -> None:
    fake_run(tmp_path, 1_000)
    fake_run(tmp_path, 2_000, preset="shapes")
    fake_run(tmp_path, 3_000, anchor_source="permuted")
    runs = stored_runs(tmp_path).runs
    assert [run.dataset[0] for run in runs] == ["digits", "shapes", "digits"] and default_pair(runs) == (0, 2)
    with pytest.raises(AnalysisError, match="needs two stored runs, and the store holds 1"):
        default_pair(runs[:1])


def test_what_differs_lists_each_changed_setting(tmp_path: Path, store: dict[str, Path]) -> None:
    runs = by_name(tmp_path, store)
    assert pair_differences(runs["text"], runs["permuted"]) == ["anchor_source: text → permuted"]
    assert pair_differences(runs["conse"], runs["text"]) == ["structguard.structure_space: conse → paper"]
    # NegGrad's hyperparameters are not compared with a run without it: the methods line says so
    assert pair_differences(runs["text"], runs["k16"]) == ["k: 4 → 16", "methods: NegGrad, StructGuard → StructGuard"]
    assert pair_differences(runs["text"], runs["text"]) == []


def test_two_datasets_are_refused_in_one_line_naming_both(tmp_path: Path, store: dict[str, Path]) -> None:
    runs = by_name(tmp_path, store)
    with pytest.raises(AnalysisError) as caught:
        pair_differences(runs["text"], runs["shapes"])
    assert str(caught.value) == ("the left run is on 'digits' (1×16×16) and the right run on 'shapes' (3×32×32): "
                                 "side by side compares two runs of one dataset")
    same_name = [StoredRun(Path(sha), ("digits", (1, 16, 16), sha * 16), ("neggrad",), {}) for sha in ("ab", "cd")]
    with pytest.raises(AnalysisError, match=r"on 'digits' \(1×16×16, training images abababab\) and the right run on "
                                            r"'digits' \(1×16×16, training images cdcdcdcd\):"):
        pair_differences(*same_name)


def test_a_run_stored_before_a_setting_existed_reads_as_its_default(tmp_path: Path) -> None:
    """The stopping target and StructGuard's structure space came later: a run that does not
    record them has their defaults; two runs with the same settings get their folders in their labels."""
    newer = fake_run(tmp_path, 2_000)
    older = newer.with_name(newer.name.replace("-k4-", "-k4-old-"))
    shutil.copytree(newer, older)
    summary = json.loads((older / "summary.json").read_text())
    del summary["config"]["stop_at"]
    del summary["config"]["method_configs"]["structguard"]["structure_space"]
    (older / "summary.json").write_text(json.dumps(summary))
    os.utime(older / "summary.json", (1_000, 1_000))
    runs = stored_runs(tmp_path).runs
    assert pair_differences(runs[1], runs[0]) == []
    assert [run.label for run in runs] == [f"digits · k = 4 · seed 0 · NegGrad, StructGuard · text anchors · {name}"
                                           for name in (newer.name, older.name)]


def test_unreadable_runs_and_unregistered_methods_are_left_out_and_named(tmp_path: Path) -> None:
    good = fake_run(tmp_path, 1_000)
    plugin = good.with_name("digits-k4-seed0-plugin")
    shutil.copytree(good, plugin)
    summary = json.loads((plugin / "summary.json").read_text())
    summary["config"]["methods"] = ["neggrad", "mine"]
    (plugin / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{")
    found = stored_runs(tmp_path)
    assert [run.directory for run in found.runs] == [good]
    assert found.skipped == [SkippedRun(plugin, ("mine",))]
    assert len(found.damaged) == 1 and "broken" in found.damaged[0] and "not valid JSON" in found.damaged[0]
    assert stored_runs(tmp_path / "nothing here").runs == []


# --- the page ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Two short digits runs (NegGrad, one epoch, k = 4: text then permuted anchors) and a newer
    made-up shapes run, kept aside in a cache of this module's own; each test stores some of them."""
    with pytest.MonkeyPatch.context() as patch:
        cache = tmp_path_factory.mktemp("side_by_side_cache")
        patch.setenv("STAKES_CACHE_DIR", str(cache))
        (cache / "aside").mkdir()
        made = {}
        for source in ("text", "permuted"):
            config = experiment_config("digits", k=4, methods=["neggrad"], anchor_source=source, device="cpu",
                                       overrides=["neggrad.max_epochs=1"])
            made[source] = load_or_run(config, progress=False).rename(cache / "aside" / f"digits-{source}")
        made["shapes"] = fake_run(cache / "aside", time.time() + 60, preset="shapes", methods=("neggrad",))
        yield made


def page_with(runs: dict[str, Path], *names: str) -> AppTest:
    """The Side by side page with the runs ``names`` (and no other) in the store."""
    shutil.rmtree(store_root(), ignore_errors=True)
    for name in names:
        shutil.copytree(runs[name], store_root() / runs[name].name)  # keeps the files' times: the order they were made
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.switch_page("views/side_by_side.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.slow
def test_the_page_shows_what_differs_and_both_runs(runs: dict[str, Path]) -> None:
    at = page_with(runs, "text", "permuted")
    assert not at.error, [e.value for e in at.error]
    assert [box.label for box in at.selectbox] == ["Left run", "Right run"]
    assert at.selectbox[0].value.endswith("digits-permuted") and at.selectbox[1].value.endswith("digits-text")
    assert "**What differs** (left → right): anchor_source: permuted → text" in [m.value for m in at.markdown]
    assert [list(table.value["method"]) for table in at.dataframe] == [["original", "NegGrad"]] * 2
    assert len(at.get("plotly_chart")) == 2  # the collapse curves; the embeddings wait for the checkbox
    at.session_state["side_layout"] = "pca"  # the quick layout (UMAP would first compile itself)
    at.checkbox(key="side_embeddings").check().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert at.radio(key="side_layout").value == "pca" and len(at.get("plotly_chart")) == 4


@pytest.mark.slow
def test_two_datasets_are_refused_in_the_page_with_no_figures(runs: dict[str, Path]) -> None:
    at = page_with(runs, "text", "shapes")
    assert [e.value for e in at.error] == [
        "the left run is on 'shapes' (3×32×32) and the right run on 'digits' (1×16×16): side by side compares two "
        "runs of one dataset"
    ]
    assert not at.get("plotly_chart") and not at.dataframe


@pytest.mark.slow
def test_one_stored_run_says_how_to_make_a_second(runs: dict[str, Path]) -> None:
    at = page_with(runs, "text")
    assert any("needs two stored runs and the store holds 1" in i.value for i in at.info)
    assert not at.selectbox and not at.dataframe
