"""Display helpers for the notebooks in ``notebooks/``: one call sets up plotly so figures show in
JupyterLab *and* in the HTML that ``nbconvert`` renders, and tables print as markdown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from stakes_core.analysis import LoadedRun
    from stakes_core.analysis.retrieval import RetrievalView

NOTEBOOK_RENDERER = "plotly_mimetype+notebook"
"""JupyterLab draws the plotly mimetype; nbconvert's HTML uses the ``notebook`` renderer's HTML,
which embeds plotly.js once per notebook, so the rendered page works offline."""


def setup_notebook(renderer: str = NOTEBOOK_RENDERER) -> None:
    """Make ``fig.show()`` render in JupyterLab and in exported HTML (a kernel's default,
    ``plotly_mimetype``, leaves the exported HTML blank)."""
    import plotly.io as pio

    pio.renderers.default = renderer


def show_markdown(text: str) -> None:
    """Display ``text`` (a markdown table, a short note) as formatted markdown."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def descriptions_markdown(descriptions: dict[str, list[str]], per_class: int = 3) -> str:
    """A markdown table of the first ``per_class`` attribute descriptions of each class."""
    lines = ["| class | attributes (first few) | count |", "|---|---|---|"]
    for name, attributes in descriptions.items():
        shown = "; ".join(attributes[:per_class]) + (" …" if len(attributes) > per_class else "")
        lines.append(f"| {name} | {shown} | {len(attributes)} |")
    return "\n".join(lines)


def retrieval_grid(run: LoadedRun, view: RetrievalView, kinds: Sequence[str] = ("forget", "retained", "test"),
                   per_kind: int = 1) -> go.Figure:
    """The top-k retrieval grid of the first ``per_kind`` queries of each kind in ``view``."""
    from stakes_core.analysis.retrieval import retrieval_images
    from stakes_core.figures import retrieval_grid_figure

    queries = [q for kind in kinds for q in [i for i, k in enumerate(view.query_kinds) if k == kind][:per_kind]]
    return retrieval_grid_figure(view, retrieval_images(run, view, queries), queries, run.dataset.classes)
