"""The notebooks in notebooks/: committed clean, parametrised the papermill way, and each one
executes top to bottom with ``FAST=True`` (offline, CPU). Select them with ``-m notebooks``;
the executions share the session's throw-away cache, so runs made by one notebook are reused
by the next."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REQUIRED = {"DATASET", "K", "SEEDS", "FAST", "DEVICE"}


def parameters_cell(notebook: dict) -> dict:
    tagged = [c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{len(tagged)} cells are tagged 'parameters' (one is required)"
    return tagged[0]


def assigned(source: str) -> dict[str, object]:
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign), "the parameters cell holds assignments only"
        for target in node.targets:
            values[target.id] = ast.literal_eval(node.value)
    return values


def test_there_are_ten_notebooks() -> None:
    assert [p.stem[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 11)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean_with_one_parameters_cell(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    assert set(notebook["metadata"]) <= {"kernelspec", "language_info"}, "stray notebook metadata (papermill, widgets)"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "outputs must be cleared"
            assert set(cell["metadata"]) <= {"tags"}, f"stray cell metadata {set(cell['metadata'])}"
    assert notebook["cells"][0]["cell_type"] == "markdown" and "".join(notebook["cells"][0]["source"]).startswith("# ")
    values = assigned("".join(parameters_cell(notebook)["source"]))
    assert REQUIRED <= set(values), f"missing parameters: {REQUIRED - set(values)}"
    assert values["DATASET"] == "digits" and values["FAST"] is False and values["DEVICE"] == "auto"


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_with_fast(path: Path, tmp_path: Path) -> None:
    papermill = pytest.importorskip("papermill")
    out = tmp_path / path.name
    papermill.execute_notebook(
        str(path), str(out), parameters={"FAST": True}, kernel_name="python3", cwd=str(tmp_path),
        progress_bar=False, execution_timeout=300,
    )  # raises PapermillExecutionError when a cell raises
    executed = json.loads(out.read_text(encoding="utf-8"))
    html = [o["data"]["text/html"] for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]
            if "text/html" in o.get("data", {})]
    if any(".show()" in "".join(c["source"]) for c in executed["cells"]):  # figures must survive an HTML export
        assert any("Plotly.newPlot" in "".join(h) for h in html), "no figure rendered as HTML"
