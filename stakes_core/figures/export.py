"""Write figures to disk: interactive HTML always, static PNG/SVG through kaleido when a
Chrome/Chromium it can drive is installed (``apt-get install chromium`` or ``plotly_get_chrome``)."""

from __future__ import annotations

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
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        reason = f"static export unavailable ({type(error).__name__}: {first_line})"
        if format != "auto":
            how = "install Chromium (apt-get install chromium) or run plotly_get_chrome"
            raise StaticExportUnavailable(f"{reason}; {how}") from None
        return written, reason
    return written + paths, None
