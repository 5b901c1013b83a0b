"""Display helpers the notebooks call (stakes_core.lab.notebook)."""

from __future__ import annotations

import plotly.io as pio
import pytest

from stakes_core.analysis import load_run
from stakes_core.analysis.retrieval import retrieval_view
from stakes_core.lab.notebook import NOTEBOOK_RENDERER, descriptions_markdown, retrieval_grid, setup_notebook
from stakes_core.lab.studies import Study


def test_setup_notebook_sets_a_renderer_that_survives_html_export() -> None:
    before = pio.renderers.default
    try:
        setup_notebook()
        assert pio.renderers.default == NOTEBOOK_RENDERER and "notebook" in NOTEBOOK_RENDERER.split("+")
    finally:
        pio.renderers.default = before


def test_descriptions_markdown_shows_the_first_attributes_and_counts() -> None:
    text = descriptions_markdown({"cat": ["a", "b", "c", "d"], "dog": ["e"]}, per_class=2)
    assert "| cat | a; b … | 4 |" in text and "| dog | e | 1 |" in text


@pytest.mark.slow
def test_retrieval_grid_shows_one_query_per_kind_under_each_model(tmp_path) -> None:
    study = Study("digits", ks=4, seeds=[0], methods=["neggrad"], overrides=["neggrad.max_epochs=1"], device="cpu")
    run = load_run(study.run(progress=False, root=tmp_path)[0])
    view = retrieval_view(run, test_queries=10, gallery_size=40, top=3)
    figure = retrieval_grid(run, view)
    images = [t for t in figure.data if t.type == "image"]
    assert len(images) == 3 * 2 * 4  # 3 queries × 2 models × (query + top 3)
