"""The paper's numbers are data with a source, printed only beside the CIFAR settings."""

from __future__ import annotations

from stakes_core.report.paper import PAPER_NUMBERS, SOURCE, paper_column, paper_value, table_with_paper
from stakes_core.report.table import Cell


def rows(k: int) -> list[dict]:
    names = ("retain_acc", "forget_acc", "test_acc")
    return [
        {"k": k, "method": m, "n": 1, "cells": {x: Cell([1.0]) for x in names},
         "reached": None if m == "original" else 1}
        for m in ("original", "l2ul", "structguard")
    ]


def test_known_numbers_and_missing_ones() -> None:
    assert paper_value("cifar10", 256, "structguard", "test_acc") == 56.32
    assert paper_value("cifar100", 256, "l2ul", "test_acc") == 48.71
    assert paper_value("cifar10", 16, "structguard", "test_acc") is None  # never invented
    assert paper_value("cifar10", 256, "neggrad", "test_acc") is None
    assert all(n.source == SOURCE for n in PAPER_NUMBERS)


def test_paper_column_only_for_the_cifar_settings() -> None:
    assert paper_column(rows(256), "cifar10") == ["–", "45.44", "56.32"]
    assert paper_column(rows(16), "cifar10") == ["–", "–", "–"]
    assert paper_column(rows(256), "digits") == ["", "", ""]


def test_table_with_paper_adds_the_column_for_cifar_only() -> None:
    cifar = table_with_paper(rows(256), "cifar100")
    assert "paper test_acc" in cifar and "| 256 | structguard | – | 1 | 1.0 | 1.0 | 1.0 | 1/1 | 56.91 |" in cifar
    assert "paper" not in table_with_paper(rows(16), "digits")
