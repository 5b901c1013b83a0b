"""The classroom lesson: what its button does, callable without a browser."""

from __future__ import annotations

import pytest

from stakes_core.lab.teaching import CollapseLesson, figure_output, has_reg_lambda


@pytest.fixture(scope="module")
def lesson():
    return CollapseLesson("digits", method="neggrad", k=4, max_epochs=2, device="cpu")


@pytest.mark.slow
def test_unlearn_adds_a_try_and_its_curve(lesson) -> None:
    attempt = lesson.unlearn()
    assert attempt.number == 1 and attempt.k == 4 and attempt.max_epochs == 2 and attempt.reg_lambda is None
    assert attempt.result.method("neggrad").config["max_epochs"] == 2
    assert attempt.result.method("neggrad").config["lr"] == lesson.settings["lr"]
    second = lesson.unlearn(lr=0.01)
    assert second.result.method("neggrad").config["lr"] == 0.01
    curves = lesson.curve_figure().data
    assert [t.name for t in curves] == [attempt.label, second.label]
    assert list(curves[0].x) == [r.step for r in attempt.result.method("neggrad").curve]
    heatmaps = [t for t in lesson.heatmap_figure().data if t.type == "heatmap"]  # beside the own-class marks
    assert len(heatmaps) == 3 and heatmaps[0].z.shape[1] == 10  # S_ori, S_unl, difference; 10 anchors
    assert "| try 2: neggrad" in lesson.summary()


def test_unknown_settings_are_refused(lesson) -> None:
    with pytest.raises(ValueError, match="unknown lesson setting"):
        lesson.unlearn(epochs=3)


@pytest.mark.slow
def test_the_button_unlearns_and_updates_the_widgets() -> None:
    lesson = CollapseLesson("digits", method="structguard", k=16, max_epochs=50, device="cpu", fast=True)
    box = lesson.widget()
    assert box is not None and not lesson._widgets["controls"]["reg_lambda"].disabled
    lesson._widgets["controls"]["method"].value = "adv"  # adv has no λ
    assert lesson._widgets["controls"]["reg_lambda"].disabled
    lesson._widgets["controls"]["method"].value = "neggrad"
    lesson._widgets["button"].click()
    assert "<b>try 1" in lesson._widgets["status"].value, lesson._widgets["status"].value
    (attempt,) = lesson.tries
    assert attempt.k == 4 and attempt.max_epochs == 8  # fast caps k and the epochs
    curve = lesson._widgets["curve"].outputs[0]["data"]["application/vnd.plotly.v1+json"]
    assert len(curve["data"]) == 1
    lesson.reset()
    assert lesson.tries == [] and lesson._widgets["table"].outputs[0]["data"]["text/plain"] == ""


def test_helpers() -> None:
    assert has_reg_lambda("structguard") and has_reg_lambda("l2ul") and not has_reg_lambda("neggrad")
    import plotly.graph_objects as go

    record = figure_output(go.Figure(go.Scatter(x=[1], y=[2])))
    assert record["output_type"] == "display_data" and record["data"]["application/vnd.plotly.v1+json"]["data"]


@pytest.mark.slow
def test_switching_method_takes_that_methods_preset_learning_rate() -> None:
    lesson = CollapseLesson("digits", method="structguard", k=4, max_epochs=1, device="cpu")
    assert lesson.settings["lr"] == 0.01  # the digits preset's StructGuard rate
    attempt = lesson.unlearn(method="neggrad")
    assert attempt.lr == 0.0003 and attempt.result.method("neggrad").config["lr"] == 0.0003
