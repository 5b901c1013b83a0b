"""Display helpers for the notebooks in ``notebooks/``: one call sets up plotly so figures show in
JupyterLab *and* in the HTML that ``nbconvert`` renders, tables print as markdown, and
:func:`check_setup` checks the notebook's ``DATASET`` and ``DEVICE`` in its setup cell."""

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


def check_setup(dataset: str, device: str = "auto") -> None:
    """Check a notebook's ``DATASET`` (a preset) and ``DEVICE`` before anything runs: the preset
    and its names are known, its data is on disk (loaded now, nothing is trained) and the device
    is there. Prints one line of what was found; otherwise raises the one-line
    :class:`~stakes_core.infra.errors.StakesError` that says what is missing and how to get it,
    so an executed notebook stops at its setup cell rather than deep inside the first run."""
    from stakes_core.run.config import experiment_config
    from stakes_core.run.context import load_dataset

    config = experiment_config(dataset, k=1, device=device)
    data = load_dataset(config)  # cached in this process: the notebook's runs reuse it
    print(f"{data.name}: {data.num_train:,} training and {int(data.test_labels.numel()):,} test images, "
          f"device {config.device}")


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
