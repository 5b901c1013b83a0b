"""No typed figures: a measured number in a notebook's prose must be computed by a cell.

The check reads every markdown cell of every notebook (and the lesson's step texts, which the
dashboard and notebook 09 show) and fails on a *figure*: a decimal number, a percentage or a signed
number. Settings (k=16, 10 seeds, 10,000 shufflings) are integers and pass; so do section references
(``§6.4``), code spans, the confidence level of an interval ("95 % interval"), the ends of the scale
(a forget accuracy of 0 % is a target, not a measurement) and the paper's own
figures as recorded in :mod:`stakes_core.report.paper` (quoted, not measured here).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stakes_core.lab.lesson import LESSON
from stakes_core.report.paper import PAPER_CLAIMS, PAPER_NUMBERS

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

FIGURE = re.compile(r"(?<![\w.])[+−]?\d+(?:\.\d+)?\s?%|(?<![\w)])[+−]\d+(?:\.\d+)?|(?<![\w.])\d+\.\d+")
"""A percentage, a signed number or a decimal number (not ``t−1``, an index)."""

NOT_FIGURES = re.compile(
    r"`[^`]*`"                              # code spans: parameters, paths, expressions
    r"|§\s?\d+(?:\.\d+)*"                   # section references
    r"|\b\d+\s?%\s(?=(?:confidence|interval))"  # the level of an interval
    r"|(?<![\w.+−])(?:0|100)\s?%"           # the ends of the scale: targets and ideals
    r"|\b[\w-]+/\d+\b"                     # model names such as ViT-B/32
    r"|\(?https?://\S+"                    # links
)


def quoted_paper_figures() -> set[str]:
    """Every number the project records from the paper, as it may be written in prose."""
    figures = {f"{number.value:.2f}" for number in PAPER_NUMBERS}
    for claim in PAPER_CLAIMS:
        figures.update(match.lstrip("+−-").replace(" ", "").rstrip("%") for match in FIGURE.findall(claim))
    return figures


QUOTED = quoted_paper_figures()


def typed_figures(text: str) -> list[str]:
    """The figures in ``text`` that are neither settings nor quotations from the paper."""
    found = []
    for match in FIGURE.findall(NOT_FIGURES.sub(" ", text)):
        bare = match.lstrip("+−").replace(" ", "").rstrip("%")
        if bare not in QUOTED:
            found.append(match)
    return found


def markdown_cells(path: Path) -> list[tuple[int, str]]:
    cells = json.loads(path.read_text())["cells"]
    return [(index, "".join(cell["source"])) for index, cell in enumerate(cells) if cell["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_markdown_has_no_typed_figures(path: Path) -> None:
    typed = {index: figures for index, text in markdown_cells(path) if (figures := typed_figures(text))}
    assert not typed, f"{path.name}: markdown cells state figures no cell computes (cell: figures): {typed}"


def test_lesson_texts_have_no_typed_figures() -> None:
    for step in LESSON:
        text = " ".join(str(getattr(step, field)) for field in ("title", "explanation", "question"))
        assert not typed_figures(text), f"lesson step '{step.title}' types figures: {typed_figures(text)}"


@pytest.mark.parametrize("text, expected", [
    ("the project measured test-query mAP 99.0 for the original model", ["99.0"]),
    ("ρ = −0.44 (p = 0.0004)", ["−0.44", "0.0004"]),
    ("rotated text anchors −0.8 ± 3.3 test points", ["−0.8", "3.3"]),
    ("forget accuracy 43 % at the cap", ["43 %"]),
    ("a gain of +7 points", ["+7"]),
    ("from round t−1's model, 0.5 s", ["0.5"]),
])
def test_the_check_catches_typed_figures(text: str, expected: list[str]) -> None:
    assert typed_figures(text) == expected


@pytest.mark.parametrize("text", [
    "k=16, seeds 0–4, 10,000 shufflings",
    "the paper's exact definition is not known; see `method.md` §6.4",
    "with a 95 % interval that excludes 0",
    "forget accuracy falls to 0 % while test accuracy should stay near 100 %",
    "`lr=0.03` and `ViT-B/32`",
    "CLIP ViT-B/32 on a machine with internet",
    "The paper reports semantic anchors +7.84 A_test over visual prototypes",
])
def test_the_check_passes_settings_and_quotations(text: str) -> None:
    assert typed_figures(text) == []
