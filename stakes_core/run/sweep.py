"""What a sweep is: the cells of a spec (:mod:`stakes_core.run.sweep_spec`), each one run of one
method (:func:`stakes_core.run.config.experiment_config`) and so one run-store entry: cells
already stored are skipped, a sweep resumes where it stopped, and two sweeps that overlap share
their common cells. A hyperparameter axis multiplies only its own method's cells. Also: which
cells are stored, and how long the others should take by the store's own timings.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from stakes_core.anchors import ENCODERS, load_descriptions
from stakes_core.anchors.variants import check_anchor_source
from stakes_core.data.forget import check_seed
from stakes_core.infra.accel import Acceleration
from stakes_core.infra.errors import ConfigError, StakesError
from stakes_core.methods import METHODS, create_method
from stakes_core.run.cells import read_records
from stakes_core.run.config import (
    ExperimentConfig,
    check_device_name,
    experiment_config,
    order_methods,
    resolve_device,
)
from stakes_core.run.presets import load_preset
from stakes_core.run.results import RunResult, find_runs, read_summary
from stakes_core.run.runstore import is_complete, run_directory, store_root
from stakes_core.run.sweep_spec import DEFAULTS, FIELDS, SweepError, SweepSpec


@dataclass(frozen=True)
class Cell:
    """One run of the grid: its field and hyperparameter values, its config and its entry."""

    values: dict[str, Any]
    config: ExperimentConfig
    directory: Path

    @property
    def method(self) -> str:
        return self.config.methods[0]

    def label(self, axes: list[str]) -> str:
        """The cell by the values of ``axes`` (the names that vary): ``k=4 seed=0 neggrad``."""
        parts = [str(self.values[name]) if name == "method" else f"{name}={self.values[name]}"
                 for name in axes if name in self.values]
        return " ".join(parts) or self.directory.name


@dataclass
class Sweep:
    """The cells of a spec in grid order, its axes (the names with several values) and its store."""

    spec: SweepSpec
    cells: list[Cell]
    axes: list[str]
    store: Path


# --- the grid ---------------------------------------------------------------------------------


def check_values(spec: SweepSpec) -> None:
    """Check every value where it was given, before any cell is built."""
    checks: dict[str, Callable[[Any], Any]] = {
        "preset": load_preset, "seed": check_seed, "anchors": check_anchor_source,
        "precision": lambda value: Acceleration(value, False),
        "encoder": lambda value: ENCODERS.get(value.partition(":")[0]),
        "descriptions": load_descriptions, "device": check_device_name, "method": METHODS.get,
    }
    positive = ("k", "pretrain_epochs", "probe_size", "record_every")
    for name, values in spec.fields.items():
        for value in values:
            try:
                if name in positive and value < 1:
                    raise ConfigError(f"{name}={value} is invalid: it must be at least 1")
                if name in checks:
                    checks[name](value)
            except StakesError as error:
                raise SweepError(f"{spec.where(name)}: {error}") from None
    methods = spec.fields.get("method", DEFAULTS["method"])
    try:
        order_methods(list(methods))
    except StakesError as error:
        raise SweepError(f"{spec.where('method')}: {error}") from None
    for name, values in spec.hyperparameters.items():
        method, key = name.split(".", 1)
        if method not in methods:
            raise SweepError(f"{spec.where(name)}: {name} names method '{method}', which the sweep does not run "
                             f"(methods: {', '.join(methods)})")
        for value in values:
            try:
                create_method(method, **{key: value})
            except (StakesError, TypeError) as error:
                raise SweepError(f"{spec.where(name)}: {error}") from None


def build_sweep(spec: SweepSpec, store: str | Path | None = None, gpus_per_cell: int = 0) -> Sweep:
    """Every cell of ``spec`` in grid order (fields in :data:`FIELDS` order, a method's own
    hyperparameters after it), each with its config and run-store entry under ``store`` (the
    spec's store, else the cache's). ``device`` ``auto`` becomes ``cuda`` when each cell gets a
    GPU (``gpus_per_cell``), else the device of this machine."""
    check_values(spec)
    fields = {name: list(values) for name, values in spec.fields.items()}
    for name, values in DEFAULTS.items():
        fields.setdefault(name, list(values))
    if "k" not in fields:
        if len(fields["preset"]) > 1:
            raise SweepError(f"{spec.source}: give k when the sweep has several presets")
        fields["k"] = list(load_preset(fields["preset"][0])["k"])
    fields["method"] = order_methods(fields["method"])
    ordered = [name for name in FIELDS if name in fields]
    root = store_root(store if store is not None else spec.store)
    cells: list[Cell] = []
    for combination in itertools.product(*(fields[name] for name in ordered)):
        common = dict(zip(ordered, combination))
        own = [name for name in spec.hyperparameters if name.split(".", 1)[0] == common["method"]]
        for chosen in itertools.product(*(spec.hyperparameters[name] for name in own)):
            cell_values = {**common, **dict(zip(own, chosen))}
            try:
                config = cell_config(cell_values, gpus_per_cell)
            except StakesError as error:
                raise SweepError(f"{spec.source}: {error}") from None
            cells.append(Cell(cell_values, config, run_directory(config, root)))
    if not cells:
        raise SweepError(f"{spec.source}: the grid has no cells")
    axes = [name for name in ordered if len(fields[name]) > 1]
    axes += [name for name, values in spec.hyperparameters.items() if len(values) > 1]
    return Sweep(spec, cells, axes, root)


def cell_config(values: dict[str, Any], gpus_per_cell: int = 0) -> ExperimentConfig:
    """The :class:`ExperimentConfig` of one cell's values."""
    overrides = [f"{name}={json.dumps(value)}" for name, value in values.items() if "." in name]
    options = {"root": values["data_root"]} if "data_root" in values else None
    config = experiment_config(
        values["preset"], k=values["k"], seed=values["seed"], methods=[values["method"]], overrides=overrides,
        encoder=values.get("encoder"), descriptions=values.get("descriptions"), dataset_options=options,
        pretrain_epochs=values.get("pretrain_epochs"), device="cpu", precision=values.get("precision", "fp32"),
        channels_last=values.get("channels_last", False), anchor_source=values.get("anchors", "text"),
        from_scratch=values.get("from_scratch", False),
    )
    device = values.get("device", "auto")
    if device == "auto":
        device = "cuda" if gpus_per_cell > 0 else resolve_device("auto")
    changes: dict[str, Any] = {"device": device}
    for name in ("probe_size", "record_every"):
        if name in values:
            changes[name] = values[name]
    return replace(config, **changes)


# --- what is stored, and how long the rest takes ----------------------------------------------


def stored_cells(sweep: Sweep) -> list[bool]:
    """For every cell, whether its entry is complete in the store (and reads back)."""
    return [is_complete(cell.directory, cell.config.methods) for cell in sweep.cells]


def stored_timings(root: Path) -> dict[tuple[str, str, int], list[float]]:
    """Seconds per cell that the store has seen, by (dataset, method, k): the wall time of every
    cell a sweep ran (its record, :mod:`stakes_core.run.cells`), else, for runs stored by other
    means, the method's own timed request (``seconds`` in ``summary.json``)."""
    walls: dict[tuple[str, str, int], list[float]] = {}
    for record in read_records(root):
        key = (record.get("dataset"), record.get("method"), record.get("k"))
        if record.get("ok") and record.get("ran") and isinstance(record.get("seconds"), float):
            walls.setdefault(key, []).append(record["seconds"])  # type: ignore[arg-type]
    found: dict[tuple[str, str, int], list[float]] = {}
    for directory in find_runs(root) if root.is_dir() else []:
        try:
            summary = read_summary(directory)
            dataset, k = summary["dataset"]["name"], len(summary["forget_indices"])
            for name, data in summary["methods"].items():
                found.setdefault((dataset, name, k), []).append(float(data["seconds"]))
        except (StakesError, KeyError, TypeError, ValueError):  # a damaged entry: nothing to learn from it
            continue
    return {**found, **walls}


def estimate_seconds(cells: list[Cell], timings: dict[tuple[str, str, int], list[float]]) -> tuple[float, int]:
    """The summed seconds of ``cells`` estimated from ``timings`` (:func:`stored_timings`): the
    mean of stored runs of the same dataset, method and k, else of the method at any k, scaled
    by k; and how many cells had nothing to go by (left out of the sum)."""
    total, unknown = 0.0, 0
    for cell in cells:
        dataset, method, k = cell.config.dataset["name"], cell.method, cell.config.k
        same = timings.get((dataset, method, k))
        if same:
            total += sum(same) / len(same)
            continue
        other = [(key[2], seconds) for key, values in timings.items() if key[:2] == (dataset, method)
                 for seconds in values]
        if other:
            total += sum(seconds * k / other_k for other_k, seconds in other) / len(other)
        else:
            unknown += 1
    return total, unknown


def human_seconds(seconds: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``."""
    if math.isnan(seconds):
        return "unknown"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def stored_results(sweep: Sweep) -> tuple[list[tuple[dict[str, Any], RunResult]], list[Cell]]:
    """The stored cells of ``sweep`` with their runs, and the cells not stored (yet)."""
    found, missing = [], []
    for cell, stored in zip(sweep.cells, stored_cells(sweep)):
        if stored:
            found.append((cell.values, RunResult.load(cell.directory)))
        else:
            missing.append(cell)
    return found, missing
