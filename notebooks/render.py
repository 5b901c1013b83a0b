"""Execute every notebook and render it, with its outputs, to HTML for reading without running.

    python notebooks/render.py                 # full runs (the numbers the notebooks are about)
    python notebooks/render.py --fast          # FAST=True smoke runs, seconds each
    python notebooks/render.py --only 01 03    # some notebooks
    python notebooks/render.py -p DATASET=cifar10 -p DEVICE=cuda   # any parameter, as JSON or a string

The committed notebooks stay clean: executed copies go to a temporary folder, and the HTML pages
(with plotly.js embedded, so they open offline) plus an ``index.html`` go to ``docs/notebooks/``.
Runs are cached by the project's run store, so rendering again is quick.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "docs" / "notebooks"


def parse_parameter(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` with VALUE read as JSON when it parses (numbers, lists, true/false)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"parameter '{text}' is not NAME=VALUE")
    name, raw = text.split("=", 1)
    try:
        return name, json.loads(raw)
    except json.JSONDecodeError:
        return name, raw


def render(
    notebooks: list[Path], out: Path, parameters: dict[str, object], timeout: int
) -> list[tuple[str, float, str]]:
    """Execute and convert each notebook; returns (name, seconds, status) per notebook."""
    import papermill
    from nbconvert import HTMLExporter

    out.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    results = []
    with tempfile.TemporaryDirectory(prefix="stakes-notebooks-") as scratch:
        for path in notebooks:
            executed = Path(scratch) / path.name
            start = time.perf_counter()
            status = "ok"
            try:
                papermill.execute_notebook(
                    str(path), str(executed), parameters=parameters, kernel_name="python3", cwd=str(HERE),
                    progress_bar=False, execution_timeout=timeout,
                )
            except Exception as error:  # the page is still written, with the traceback in it
                status = f"failed: {type(error).__name__}"
            seconds = time.perf_counter() - start
            if executed.exists():
                body, _ = exporter.from_filename(str(executed))
                (out / f"{path.stem}.html").write_text(body, encoding="utf-8")
            results.append((path.stem, seconds, status))
            print(f"{path.stem}: {status} in {seconds:.1f} s", flush=True)
    write_index(out, results, parameters)
    return results


def write_index(out: Path, results: list[tuple[str, float, str]], parameters: dict[str, object]) -> None:
    items = "\n".join(
        f'<li><a href="{name}.html">{html.escape(name)}</a> ({status}, {seconds:.0f} s)</li>'
        for name, seconds, status in results
    )
    settings = html.escape(json.dumps(parameters)) if parameters else "the notebooks' defaults"
    (out / "index.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>stakes notebooks</title>"
        f"<h1>stakes notebooks, rendered</h1><p>Parameters: {settings}.</p><ul>{items}</ul>",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="run with FAST=True (smoke runs)")
    parser.add_argument("--only", nargs="+", default=None, help="notebook numbers or names, e.g. 01 03_stakes")
    parser.add_argument("-p", "--parameter", action="append", type=parse_parameter, default=[],
                        help="NAME=VALUE passed to every notebook's parameters cell")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of the HTML pages")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    notebooks = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        notebooks = [p for p in notebooks if any(p.stem == o or p.stem.startswith(f"{o}_") for o in args.only)]
        if not notebooks:
            parser.error(f"no notebook matches {' '.join(args.only)}")
    parameters = dict(args.parameter)
    if args.fast:
        parameters["FAST"] = True
    results = render(notebooks, args.out, parameters, args.timeout)
    total = sum(seconds for _, seconds, _ in results)
    print(f"{len(results)} notebooks in {total:.0f} s → {args.out}/index.html")
    return 0 if all(status == "ok" for _, _, status in results) else 1


if __name__ == "__main__":
    sys.exit(main())
