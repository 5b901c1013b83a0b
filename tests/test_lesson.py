"""The guided lesson (:mod:`stakes_core.lab.lesson`): its steps as data, every step run in its
quick version with a figure and sentences whose numbers are the run's, a warm step served from
the store, and the Lesson page walked from the first step to the last under AppTest, then again
in a new session without a single new run."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Iterator

import plotly.graph_objects as go
import pytest

from stakes_core.anchors import build_anchors, load_descriptions, match_classes
from stakes_core.anchors.build import anchor_similarity, mean_off_diagonal
from stakes_core.figures.style import method_label
from stakes_core.lab.lesson import (
    ARMS,
    EDIT,
    LESSON,
    MAX_EPOCHS,
    PRESET,
    LessonRun,
    StepView,
    is_stored,
    paired_sentences,
    run_step,
)
from stakes_core.methods import PAPER_METHODS
from stakes_core.metrics.records import StepRecord
from stakes_core.run.config import experiment_config
from stakes_core.run.results import MethodResult, RunResult
from stakes_core.run.runstore import store_root

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
WARM_SECONDS = 3.0
"""The most a step may take once its runs are stored (issue 18)."""


def numbers(pattern: str, text: str) -> tuple[str, ...]:
    """The groups of ``pattern`` in ``text`` (the test fails when it is not there)."""
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in {text!r}"
    return found.groups()


def stored_entries() -> int:
    """How many runs the store holds (its hidden folders are locks and partial writes)."""
    root = store_root()
    return sum(1 for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else 0


def test_the_lesson_has_five_to_seven_steps_each_complete() -> None:
    assert 5 <= len(LESSON) <= 7
    for step in LESSON:
        assert step.title and len(step.explanation) > 80 and step.question.rstrip().endswith("?")
        assert callable(step.figure) and callable(step.sentences)
        for fast in (False, True):
            configs = step.setting.configs(fast)
            assert configs and {c.dataset["name"] for _, _, c in configs} == {PRESET}
            assert all(c.method_configs[m]["max_epochs"] <= MAX_EPOCHS for _, _, c in configs for m in c.methods)
    full = [step.setting for step in LESSON]
    assert full[0].methods == ("neggrad",) and full[2].methods == PAPER_METHODS
    assert full[4].arms == ("edited",) and set(full[5].arms) == set(ARMS) and len(full[5].seeds) >= 2
    assert {c.k for s in full for _, _, c in s.configs()} == {8}
    edited = next(c for _, _, c in full[4].configs())
    assert load_descriptions(edited.descriptions) == EDIT.apply(load_descriptions(PRESET))


def fake_run(arm: str, seed: int, test_acc: float, collapse: float) -> LessonRun:
    """A stored StructGuard run reduced to what step 6 reads: its test accuracy and final collapse."""
    record = StepRecord(step=1, epoch=0, forget_acc=0.0, views={"backbone": collapse}, loss=0.0, seconds=0.0)
    result = MethodResult("structguard", {}, {"test_acc": test_acc, "retain_acc": 90.0, "forget_acc": 0.0}, 1, 1,
                          {}, True, [record])
    run = RunResult({"seed": seed}, {}, {}, {}, [0], [], {"structguard": result})
    return LessonRun(arm, seed, experiment_config(PRESET), Path("."), run)


@pytest.mark.parametrize("shift, verdict, interval", [(0.0, "within", "which holds 0"),
                                                      (5.0, "larger than", "clear of 0")])
def test_step_six_sets_the_paired_difference_against_seed_noise(shift: float, verdict: str, interval: str) -> None:
    shipped = [(0, 90.0), (1, 92.0), (2, 91.0)]  # seed-to-seed sd 1.0 point
    runs = [fake_run("shipped", seed, acc, 0.1) for seed, acc in shipped]
    runs += [fake_run("edited", seed, acc + shift + 0.1 * seed, 0.1) for seed, acc in shipped]
    test_sentence, collapse_sentence = paired_sentences(runs)
    assert f"{shift + 0.1:+.1f} points on average" in test_sentence and "vary by 1.0 points" in test_sentence
    assert f"the difference is {verdict} seed noise" in test_sentence and interval in test_sentence
    assert "+0.000 on average" in collapse_sentence and "within seed noise" in collapse_sentence


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> Iterator[list[StepView]]:
    """Every step in its quick version, run into a store of this module's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STAKES_CACHE_DIR", str(tmp_path_factory.mktemp("lesson_cache")))
        yield [run_step(step, fast=True) for step in LESSON]


@pytest.mark.slow
def test_every_step_runs_and_yields_a_figure_and_sentences(views: list[StepView]) -> None:
    for number, view in enumerate(views, start=1):
        assert view.number == number and view.fast and isinstance(view.figure, go.Figure) and view.figure.data
        assert view.sentences and all(s.strip() for s in view.sentences)
        assert view.introduction().startswith(f"### Step {number} of {len(LESSON)}")
        assert view.conclusion().endswith(view.step.question)
    assert views[0].ran == 1 and views[1].ran == 0  # step 2 shows step 1's run
    assert {run.result.k for view in views for run in view.runs} == {4}  # the quick version's k


@pytest.mark.slow
def test_step_one_and_two_state_the_neggrad_run(views: list[StepView]) -> None:
    run = views[0].runs[0].result
    neggrad = run.method("neggrad")
    first, second = views[0].sentences
    assert numbers(r"on the (\d+) images from ([\d.]+) % to ([\d.]+) %", first) == (
        str(run.k), f"{run.original['forget_acc']:.1f}", f"{neggrad.metrics['forget_acc']:.1f}")
    assert numbers(r"Test accuracy went from ([\d.]+) % to ([\d.]+) %", second) == (
        f"{run.original['test_acc']:.1f}", f"{neggrad.metrics['test_acc']:.1f}")
    assert list(views[0].figure.data[0].y) == [r.forget_acc for r in neggrad.curve]
    collapse = views[1].sentences[0]
    assert numbers(r"is ([\d.]+) \(mean over the steps ([\d.]+)\)", collapse) == (
        f"{neggrad.final_collapse:.3f}", f"{neggrad.mean_collapse:.3f}")
    assert list(views[1].figure.data[0].y) == [r.collapse for r in neggrad.curve]


@pytest.mark.slow
def test_step_three_states_every_methods_test_accuracy_and_collapse(views: list[StepView]) -> None:
    run = views[2].runs[0].result
    assert list(run.methods) == list(PAPER_METHODS) and len(views[2].figure.data) == len(PAPER_METHODS)
    for method in PAPER_METHODS:
        result = run.method(method)
        assert numbers(rf"{method_label(method)} test accuracy ([\d.]+) %, final collapse ([\d.]+)",
                       views[2].sentences[0]) == (f"{result.metrics['test_acc']:.1f}", f"{result.final_collapse:.3f}")


@pytest.mark.slow
def test_steps_four_and_five_state_the_stakes_and_the_edit(views: list[StepView]) -> None:
    shipped, edited = views[3].runs[0], views[4].runs[0]
    classes = list(shipped.result.dataset["classes"])

    def cosine(run: LessonRun):
        return anchor_similarity(build_anchors(match_classes(load_descriptions(run.config.descriptions), classes),
                                               run.config.encoder))

    assert numbers(r"mean cosine ([\d.]+);", views[3].sentences[0]) == (f"{mean_off_diagonal(cosine(shipped)):.2f}",)
    a, b = classes.index(EDIT.source), classes.index(EDIT.target)
    assert numbers(r"from ([\d.]+) to ([\d.]+), and", views[4].sentences[0]) == (
        f"{float(cosine(shipped)[a, b]):.2f}", f"{float(cosine(edited)[a, b]):.2f}")
    for view, run in ((views[3], shipped), (views[4], edited)):
        result = run.result.method("structguard")
        assert numbers(r"test accuracy ([\d.]+) %, final collapse ([\d.]+)", view.sentences[1]) == (
            f"{result.metrics['test_acc']:.1f}", f"{result.final_collapse:.3f}")


@pytest.mark.slow
def test_step_six_states_the_paired_difference_of_its_runs(views: list[StepView]) -> None:
    runs = views[5].runs
    seeds = sorted({run.seed for run in runs})
    assert len(seeds) == 2 and {run.arm for run in runs} == set(ARMS)
    accuracy = {(run.arm, run.seed): run.result.method("structguard").metrics["test_acc"] for run in runs}
    differences = [accuracy["edited", s] - accuracy["shipped", s] for s in seeds]
    noise = statistics.stdev(accuracy["shipped", s] for s in seeds)
    sentence = views[5].sentences[0]
    assert numbers(r"shipped: ([+-][\d.]+) points on average", sentence) == (f"{statistics.fmean(differences):+.1f}",)
    assert numbers(r"vary by ([\d.]+) points", sentence) == (f"{noise:.1f}",)
    verdict = "within" if abs(statistics.fmean(differences)) <= noise else "larger than"
    assert f"{verdict} seed noise" in sentence


@pytest.mark.slow
def test_a_stored_step_is_served_from_the_store_quickly(views: list[StepView]) -> None:
    for step in LESSON:
        assert is_stored(step, fast=True)
        again = run_step(step, fast=True)
        assert again.ran == 0 and again.seconds <= WARM_SECONDS and again.sentences == views[again.number - 1].sentences


def walk(at) -> list[int]:
    """Visit every step from the first with Next, pressing Run this step where it shows; the steps pressed."""
    pressed = []
    for index, step in enumerate(LESSON):
        assert at.radio(key="lesson_step").value == index
        if any(button.key == "lesson_run" for button in at.button):
            assert not at.get("plotly_chart")  # nothing to show before the step has run
            at.button(key="lesson_run").click().run()
            pressed.append(index)
        assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
        assert len(at.get("plotly_chart")) == 1
        assert any(step.question in info.value for info in at.info)
        if index < len(LESSON) - 1:
            at.button(key="lesson_next").click().run()
    return pressed


@pytest.mark.slow
def test_the_page_walks_the_lesson_then_serves_it_from_the_store(tmp_path, monkeypatch) -> None:
    app_test = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("STAKES_CACHE_DIR", str(tmp_path / "cache"))

    def lesson_page():
        at = app_test.from_file(MAIN, default_timeout=300)
        at.run()
        at.switch_page("views/lesson.py").run()
        at.toggle(key="lesson_fast").set_value(True).run()
        assert not at.exception and at.title[0].value == "Lesson"
        return at

    first = walk(lesson_page())
    assert first[0] == 0 and 1 not in first  # step 2 shows the run of step 1
    entries = stored_entries()
    assert entries > 0
    assert walk(lesson_page()) == [] and stored_entries() == entries
