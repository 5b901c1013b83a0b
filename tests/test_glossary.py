"""The glossary (``stakes_core.figures.tables.COLUMNS``): every metric a table or figure shows
says what it is, which way is better and its ideal; the dashboard's tables carry it as the column
header's tooltip and the figures in the hover of the points that plot the metric."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from stakes_core.analysis import CollapseCurve, TradeoffPoint
from stakes_core.analysis.changes import SPLITS, ClassAccuracy, PerClassAccuracy
from stakes_core.analysis.field import FIELD_COLUMNS
from stakes_core.analysis.membership import LossAttack, LossAttackView
from stakes_core.analysis.privacy import PrivacyView
from stakes_core.analysis.retrieval import RetrievalView, retrieval_metrics
from stakes_core.analysis.ulira import ULiRAView
from stakes_core.figures import (
    collapse_curves_figure,
    collapse_tradeoff_figure,
    privacy_figure,
    retrieval_metrics_figure,
)
from stakes_core.figures.changes import per_class_accuracy_figure
from stakes_core.figures.continual import CURVE_PANELS, round_curves_figure
from stakes_core.figures.curves import KEY_TITLES
from stakes_core.figures.membership import loss_attack_figure, ulira_figure
from stakes_core.figures.tables import COLUMNS, DIRECTIONS, HOVER_WIDTH, column, glossary, hover_help
from stakes_core.figures.variants import METRIC_TITLES, paired_differences_figure
from stakes_core.metrics.accuracy import evaluate
from stakes_core.report.comparison import VariantComparison
from stakes_core.report.continual import ROUND_METRICS
from stakes_core.report.table import GAP_METRICS, METRICS, RUN_COLUMNS
from stakes_core.run.continual import RoundRecord
from stakes_core.testing import tiny_dataset, tiny_model

APP = str(Path(__file__).resolve().parent.parent / "app")


def shown_metrics() -> set[str]:
    """Every metric id the tables and figures show, read from the code's own registries and
    from what the measuring functions return."""
    dataset = tiny_dataset(num_classes=2, per_class=4)
    accuracies = evaluate(tiny_model(dataset), dataset, torch.tensor([0, 1]))
    retrieval = retrieval_metrics(torch.tensor([[0, 1]]), torch.tensor([0]))
    return {*RUN_COLUMNS, *METRICS, *GAP_METRICS, *FIELD_COLUMNS, *ROUND_METRICS, *KEY_TITLES, *METRIC_TITLES,
            *(key for key, _ in CURVE_PANELS), *accuracies, *retrieval, *(f"{split}_acc" for split in SPLITS)}


def test_every_metric_shown_has_an_entry_with_direction_and_ideal() -> None:
    missing = sorted(key for key in shown_metrics() if not column(key).graded)
    assert not missing, f"metrics without a glossary entry (what, better, ideal): {missing}"


def test_every_entry_is_a_description_or_states_direction_and_ideal() -> None:
    for key, entry in COLUMNS.items():
        assert entry.what and "%{" not in entry.help, key  # "%{" would be read as a plotly hover template field
        if entry.better or entry.ideal:
            assert entry.graded, f"{key}: 'better' must start with one of {DIRECTIONS} and 'ideal' be given"
            assert entry.help == f"{entry.what}. Better: {entry.better}. Ideal: {entry.ideal}", key
            lines = hover_help(key).split("<br>")
            assert all(len(line) <= HOVER_WIDTH and not line.startswith("%") for line in lines), key
            assert " ".join(lines).replace("\u00a0", " ") == entry.help, key
        else:
            assert entry.help == entry.what and not column(key).graded, key
    for key in ("method", "a_users_metric"):  # a figure cannot plot an unexplained metric
        with pytest.raises(KeyError, match="no glossary entry"):
            hover_help(key)
    assert glossary(["relapse", "method"], ids=True).split("  \n") == [
        f"**relapse**: {column('relapse').help}.", f"**method**: {column('method').help}."]


def hover_texts(figure: go.Figure) -> list[str]:
    """Each trace's hover template with its per-point texts (``customdata``) appended."""
    return [f"{trace.hovertemplate} {json.dumps(trace.customdata, default=str, ensure_ascii=False)}"
            for trace in figure.data if trace.hovertemplate]


def test_figures_put_each_plotted_metrics_help_in_its_hover() -> None:
    record = RoundRecord("adv", 0, 2, 4, 0.0, [25.0], 90.0, 85.0, 0.1, 0.05, 1.0, 3, True)
    retrieval = RetrievalView("backbone", {"adv": {"forget": {"R@1": 10.0, "mAP": 5.0}}}, ["forget"], [0], [1],
                              [5], [1], {"adv": [[5]]}, 0.0)
    attack = LossAttack(0.6, 0.4, (0.5, 0.7), 4, 2)
    per_class = PerClassAccuracy(("adv",), ("a", "b"), (1,),
                                 tuple(ClassAccuracy("adv", split, c, 1, 2) for split in SPLITS for c in (0, 1)))
    comparison = VariantComparison("adv", 4, [0, 1], ["full", "w/o SA"],
                                   {"full": {"mean_collapse": [0.1, 0.2]}, "w/o SA": {"mean_collapse": [0.3, 0.2]}})
    figures = [
        (collapse_curves_figure([CollapseCurve("adv", 4, 0, [0, 1], [0.0, 0.1], [100.0, 0.0])]), ["collapse"]),
        (collapse_tradeoff_figure([TradeoffPoint("adv", 4, 0, 0.1, 0.2, 80.0, 85.0)], "final_collapse"),
         ["final_collapse", "tradeoff_acc"]),
        (retrieval_metrics_figure(retrieval), ["R@1", "mAP"]),
        (privacy_figure(PrivacyView("confidence", {"adv": 60.0}, {"adv": 55.0}, 10, 0.0)),
         ["mia_efficacy", "attack_acc"]),
        (loss_attack_figure(LossAttackView({"adv": attack}, [0, 1, 2, 3], 0)), ["loss_mia", "loss_auc"]),
        (per_class_accuracy_figure(per_class), [f"{split}_acc" for split in SPLITS]),
        (round_curves_figure([record]), [key for key, _ in CURVE_PANELS]),
        (ulira_figure(ULiRAView([3, 4], [3, 4], [0], "pooled", np.zeros((1, 2)), np.zeros((1, 2)), {},
                                {"adv": np.array([-1.5, 2.0])}, 0.0, 0, 0.0)), ["ulira_score"]),
        (paired_differences_figure(comparison, "mean_collapse"), ["mean_collapse"]),
    ]
    for figure, keys in figures:
        hovers = hover_texts(figure)
        assert hovers and all("Better:" in text for text in hovers), figure.layout.title.text
        for key in keys:
            assert any(hover_help(key) in text for text in hovers), (figure.layout.title.text, key)


TABLES_SCRIPT = """
import sys
sys.path.insert(0, {app!r})
from stakes_core.report.table import Cell
from widgets import show_raw_table, show_summary_table, show_table

show_table([{{"method": "neggrad", "data": "D_f only", "forget_acc": 0.0, "mean_collapse": 0.1234, "k": 4}}])
show_summary_table([{{"k": 4, "method": "neggrad", "data": "D_f only", "n": 2, "reached": 1,
                      "cells": {{"test_acc": Cell([80.0, 82.0]), "loss_mia": Cell([0.5, 0.6])}}}}])
show_raw_table([{{"lr": 0.0003, "avg_gap": 1.25, "reached_target": True}}], ["lr", "avg_gap", "reached_target"])
"""


def test_the_dashboards_tables_carry_each_columns_help_as_its_tooltip() -> None:
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    at = AppTest.from_string(TABLES_SCRIPT.format(app=APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [["method", "data", "forget_acc", "mean_collapse", "k"],
             ["k", "method", "data", "n", "test_acc", "loss_mia", "reached_target"],
             ["avg_gap", "reached_target"]]
    for number, (table, keys) in enumerate(zip(at.dataframe, shown, strict=True)):
        settings = json.loads(table.proto.columns)
        for key in keys:
            name = key if number == 2 else column(key).name  # the raw table is keyed by ids
            assert settings[name]["label"] == column(key).name and settings[name]["help"] == column(key).help, key
    assert "help" not in json.loads(at.dataframe[2].proto.columns)["lr"]  # a sweep axis: no entry, no tooltip
