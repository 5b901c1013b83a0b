"""A sweep's stored cells as the existing tables and as rows to filter (reads results only).

A cell of a sweep is a run of one method. :func:`pool_cells` puts the cells of one setting
back together: for each (k, seed), one :class:`~stakes_core.run.results.RunResult` holding
every method of that forget set, so :func:`~stakes_core.report.table.summarize` and
:func:`~stakes_core.report.table.paired_difference` work on them as on ``stakes run``'s
runs (the original model's row is counted once per seed, and differences pair by seed). A
method with a hyperparameter axis appears once per value, labelled
``structguard[align_weight=2]``. Axes that change what every method starts from (the anchors,
the preset, the encoder, ...) give one table each.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from stakes_core.report.table import metric_value
from stakes_core.run.results import RunResult

CellResult = tuple[dict[str, Any], RunResult]
"""A stored cell: its field and hyperparameter values (``k``, ``seed``, ``method``, ...) and its run."""
GRID = ("k", "seed", "method")
"""The axes every table already lays out: rows by k and method, pooled over seeds."""


def method_label(values: dict[str, Any], axes: Sequence[str]) -> str:
    """The cell's method, with its own hyperparameter axes: ``structguard[align_weight=2]``."""
    method = values["method"]
    own = [f"{name.split('.', 1)[1]}={values[name]}" for name in axes if name.startswith(f"{method}.")]
    return f"{method}[{', '.join(own)}]" if own else method


def setting_axes(axes: Sequence[str]) -> list[str]:
    """The axes that make separate tables: every one but k, seed, method and hyperparameters."""
    return [name for name in axes if name not in GRID and "." not in name]


def setting_title(values: dict[str, Any], axes: Sequence[str]) -> str:
    """``anchors=rotated, encoder=minilm``, or ``every cell`` when nothing separates settings."""
    return ", ".join(f"{name}={values[name]}" for name in setting_axes(axes)) or "every cell"


def pool_cells(cells: Sequence[CellResult], axes: Sequence[str]) -> list[tuple[str, list[RunResult]]]:
    """Per setting (its title), the cells merged into one run per (k, seed) as above."""
    settings: dict[str, dict[tuple[int, int], list[CellResult]]] = {}
    for values, run in cells:
        settings.setdefault(setting_title(values, axes), {}).setdefault((run.k, run.seed), []).append((values, run))
    pooled = []
    for title, groups in settings.items():
        pooled.append((title, [merged(group, axes) for _, group in sorted(groups.items())]))
    return pooled


def merged(group: list[CellResult], axes: Sequence[str]) -> RunResult:
    """The cells of one forget set (same setting, k and seed) as one run with every method."""
    first = group[0][1]
    methods = {}
    for values, run in group:
        label = method_label(values, axes)
        methods[label] = replace(run.method(values["method"]), method=label)
    config = {**first.config, "methods": list(methods)}
    return replace(first, config=config, methods=methods, models={})


def cell_rows(cells: Sequence[CellResult], axes: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
    """One plain row per cell: the values of ``axes`` and the method's ``metrics``."""
    return [
        {**{name: values.get(name) for name in axes}, **{m: metric_value(run, values["method"], m) for m in metrics},
         "reached_target": run.method(values["method"]).reached_target}
        for values, run in cells
    ]


def axis_choices(cells: Sequence[CellResult], axes: Sequence[str]) -> dict[str, list[Any]]:
    """Every value each axis takes among ``cells``, in grid order (what a filter offers)."""
    choices: dict[str, list[Any]] = {name: [] for name in axes}
    for values, _ in cells:
        for name in axes:
            if values.get(name) not in choices[name]:
                choices[name].append(values.get(name))
    return choices


def filter_cells(cells: Sequence[CellResult], chosen: dict[str, Sequence[Any]]) -> list[CellResult]:
    """The cells whose value of every axis in ``chosen`` is one of the chosen values."""
    return [(values, run) for values, run in cells
            if all(values.get(name) in allowed for name, allowed in chosen.items())]
