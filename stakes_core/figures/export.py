"""Write figures to disk: interactive HTML always, static PNG/SVG through kaleido when a
Chrome/Chromium it can drive is installed (``apt-get install chromium`` or ``plotly_get_chrome``);
render one figure as PNG/SVG bytes, and a run's figures as one zip (the dashboard's downloads)."""

from __future__ import annotations

import functools
import io
import tempfile
import zipfile
from pathlib import Path

import plotly.graph_objects as go

from stakes_core.infra.errors import ConfigError, StakesError

EXPORT_FORMATS = ("auto", "html", "png", "svg")


class StaticExportUnavailable(StakesError, RuntimeError):
    """PNG/SVG export was asked for but kaleido cannot run here."""


def save_figures(
    figures: dict[str, go.Figure], directory: str | Path, format: str = "auto", scale: float = 2.0
) -> tuple[list[Path], str | None]:
    """Save every figure as ``<name>.html`` (plotly.js written once beside them, so the pages
    open offline) and, for ``png``/``svg``/``auto``, as a static image in one kaleido batch.

    ``auto`` falls back to HTML only when static export cannot run and returns the reason;
    ``png``/``svg`` raise :class:`StaticExportUnavailable` instead."""
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format '{format}' is not one of {', '.join(EXPORT_FORMATS)}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, figure in figures.items():
        path = directory / f"{name}.html"
        figure.write_html(path, include_plotlyjs="directory", full_html=True)
        written.append(path)
    if format == "html" or not figures:
        return written, None
    import plotly.io as pio

    suffix = "svg" if format == "svg" else "png"
    paths = [directory / f"{name}.{suffix}" for name in figures]
    try:
        sized = list(figures.values())  # kaleido's batch ignores each layout's size unless it is passed in
        pio.write_images(sized, paths, scale=scale, width=[figure.layout.width for figure in sized],
                         height=[figure.layout.height for figure in sized])
    except Exception as error:  # kaleido reports a missing browser in several exception types
        reason = f"static export unavailable ({_first_line(error)})"
        if format != "auto":
            how = "install Chromium (apt-get install chromium) or run plotly_get_chrome"
            raise StaticExportUnavailable(f"{reason}; {how}") from None
        return written, reason
    return written + paths, None


@functools.cache
def static_export_reason() -> str | None:
    """``None`` when kaleido can render PNG/SVG here, else why not. Only a real render tells (kaleido
    may be installed without a Chromium it can drive), so this draws a one-point figure, once per
    process: a few seconds the first time."""
    try:
        go.Figure(go.Scatter(x=[0], y=[0])).to_image(format="png", width=40, height=40)
    except Exception as error:  # a missing kaleido is a ValueError, a missing browser one of several types
        return _first_line(error)
    return None


def static_image(figure: go.Figure, format: str, scale: float = 2.0) -> bytes:
    """``figure`` as PNG or SVG bytes at its own size (what :func:`save_figures` writes to a file)."""
    if format not in ("png", "svg"):
        raise ConfigError(f"format '{format}' is not png or svg")
    return figure.to_image(format=format, scale=scale, width=figure.layout.width, height=figure.layout.height)


def figures_zip(run_dir: str | Path, embedding: str = "umap", device: str = "cpu") -> tuple[bytes, list[str]]:
    """Every figure of the run at ``run_dir``, as ``stakes figures`` writes them (HTML with plotly.js
    beside it, PNG too where kaleido can render, ``analysis.json``), in one zip under the folder
    ``<run>-figures/``; and the report's notes (e.g. why there is no PNG)."""
    from stakes_core.figures.report import write_report  # the report imports this module

    run_dir = Path(run_dir)
    with tempfile.TemporaryDirectory(prefix="stakes-figures-") as folder:
        report = write_report(run_dir, folder, format="auto", embedding=embedding, device=device, progress=False)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(Path(folder).rglob("*")):
                if path.is_file():
                    archive.write(path, f"{run_dir.name}-figures/{path.relative_to(folder)}")
    return buffer.getvalue(), report.notes


def _first_line(error: Exception) -> str:
    """``Type: first line of the message``: a one-line reason."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
