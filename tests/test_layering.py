"""The package's layers: a module may import its own layer and the layers below it, never above.

    infra → data → metrics → models → anchors → methods → run → report → analysis → figures → lab
    → top (cli, testing, the package root)

Every ``import`` is read from the source (function-level imports included), so an edge that
points upwards fails here the day it is written. The README's Layout section lists the same
layers and their modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "stakes_core"

LAYERS = (
    "infra", "data", "metrics", "models", "anchors", "methods", "run", "report", "analysis", "figures", "lab", "top",
)
"""Bottom to top; ``top`` holds ``cli``, ``testing`` and the package's ``__init__``."""

FORBIDDEN = {
    # the analyses rebuild a saved run's context, but never run the unlearning pipeline
    "analysis": ("stakes_core.run.experiment", "stakes_core.run.runstore"),
    "figures": ("stakes_core.run.experiment", "stakes_core.run.runstore"),
    "report": ("stakes_core.run.experiment", "stakes_core.run.runstore", "stakes_core.run.context"),
    # the on-disk run schema (steps.csv's records) reads without the methods that wrote it
    "run.results": ("stakes_core.methods",),
}
"""Modules a layer (``"analysis"``) or one module (``"run.results"``, named without the
``stakes_core.`` prefix) may not import even though they sit below it."""


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "stakes_core":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] in ("cli", "testing", "__init__"):
        return "top"
    return parts[1]


def forbidden_for(module: str) -> tuple[str, ...]:
    """What ``module`` may not import: its layer's rules and its own."""
    return FORBIDDEN.get(layer_of(module), ()) + FORBIDDEN.get(module.removeprefix("stakes_core."), ())


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``stakes_core`` import in ``path``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``stakes_core`` import in ``source``, a module of ``package``
    (relative imports resolved against it)."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from stakes_core import lab`` imports the sub-package itself
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names if name == "stakes_core"]
    return [(line, name) for line, name in found if name == "stakes_core" or name.startswith("stakes_core.")]


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_sits_in_a_known_layer() -> None:
    unknown = {module_name(p) for p in SOURCES if layer_of(module_name(p)) not in LAYERS}
    assert not unknown, f"modules outside the layers {LAYERS}: {sorted(unknown)}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    importer = module_name(path)
    rank = LAYERS.index(layer_of(importer))
    wrong = []
    for line, imported in imported_modules(path):
        if imported == "stakes_core":
            if layer_of(importer) != "top":
                wrong.append(f"line {line}: imports the package root (import the module that defines the name)")
            continue
        target = layer_of(imported)
        if target in LAYERS and LAYERS.index(target) > rank:
            wrong.append(f"line {line}: {imported} is in layer '{target}', above '{layer_of(importer)}'")
        if any(imported == banned or imported.startswith(banned + ".") for banned in forbidden_for(importer)):
            wrong.append(f"line {line}: {importer} may not import {imported}")
    assert not wrong, f"{importer}:\n" + "\n".join(wrong)


def test_every_forbidden_rule_names_a_layer_or_a_module() -> None:
    modules = {module_name(p).removeprefix("stakes_core.") for p in SOURCES}
    assert not set(FORBIDDEN) - set(LAYERS) - modules


def test_the_checker_sees_every_kind_of_import() -> None:
    """Plain, ``from``, relative and function-level imports are all found (so the test above can fail)."""
    source = (
        "import stakes_core.figures\nfrom . import records\n\n"
        "def late():\n    from stakes_core.lab import studies\n"
    )
    found = sorted(name for _, name in imports_in(source, "stakes_core.metrics"))
    assert found == ["stakes_core.figures", "stakes_core.lab", "stakes_core.metrics"]


def readme_layout() -> dict[str, set[str]]:
    """``{package: modules}`` as the README's Layout section lists them: a ``·``-separated list
    after ``  package/`` or on the lines under it (``""`` is the package's top-level files)."""
    text = (PACKAGE.parent / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    package = None
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            first, _, rest = line.strip().partition(" ")
            package = first.rstrip("/") if first.endswith("/") else ""
            line = rest if first.endswith("/") else line
        if "·" not in line or package is None:
            continue
        names = (chunk.split()[0].rstrip(":") for chunk in line.split("·") if chunk.strip())
        listed.setdefault(package, set()).update(name.removesuffix(".py") for name in names)
    return listed


def test_the_readme_layout_lists_every_module() -> None:
    listed = readme_layout()
    actual: dict[str, set[str]] = {"": {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}}
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        actual[folder.name] = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    assert listed == actual
