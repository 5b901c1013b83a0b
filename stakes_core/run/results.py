"""``RunResult``: one experiment (dataset, k, seed, methods) as saved to and loaded from disk.

A run directory holds ``summary.json`` (config, the original model's reference row, every
method's final metrics, steps, seconds and timing breakdown, the forget and probe indices),
``steps.csv`` (one row per method and unlearning step: forget accuracy, structural collapse
on the shared backbone embedding in ``collapse``, one ``collapse_<view>`` column per other
structure view a method of the run recorded, such as StructGuard's ``collapse_projector``
(empty in the rows of methods without that view), loss and its terms) and, optionally,
``models/<method>.pt`` with the unlearned weights.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from stakes_core.infra.cache import atomic_write_bytes, writing
from stakes_core.infra.errors import StakesError
from stakes_core.metrics.records import StepRecord

FORMAT_VERSION = 1
HEAD_COLUMNS = ("method", "step", "epoch", "forget_acc", "collapse")
TAIL_COLUMNS = ("loss", "seconds")
STEP_COLUMNS = HEAD_COLUMNS + TAIL_COLUMNS
"""The columns every ``steps.csv`` has: the ``collapse_<view>`` columns sit between the head and
the tail, the loss terms after it (so a loss term may not be named ``collapse_…``)."""
VIEW_PREFIX = "collapse_"


class RunResultError(StakesError, ValueError):
    """A run directory that cannot be read."""


@dataclass
class MethodResult:
    """Final metrics and per-step history of one method in one run."""

    method: str
    config: dict[str, Any]
    metrics: dict[str, float]
    steps: int
    epochs: int
    timings: dict[str, float]
    reached_zero: bool
    curve: list[StepRecord] = field(default_factory=list)
    stop_target: float = 0.0
    """The forget accuracy (%) the run stopped at: 0, or the retrained model's (``stop_at="retrain"``)."""
    data_access: str = "forget"
    """What the method read (:mod:`stakes_core.methods.access`): forget, retain or retrain."""

    @property
    def seconds(self) -> float:
        """Wall time of the request: the sum of its timed phases."""
        return sum(self.timings.values())

    @property
    def mean_collapse(self) -> float:
        """Mean structural collapse over the recorded unlearning steps (step 0 excluded)."""
        values = [r.collapse for r in self.curve if r.step > 0 and not math.isnan(r.collapse)]
        return sum(values) / len(values) if values else math.nan

    @property
    def final_collapse(self) -> float:
        return self.curve[-1].collapse if self.curve else math.nan

    @property
    def tradeoff_acc(self) -> float:
        """``retain_acc − forget_acc`` at the end of unlearning."""
        return self.metrics["retain_acc"] - self.metrics["forget_acc"]

    @property
    def reached_target(self) -> bool:
        """Whether unlearning reached its target, forget accuracy at most ``stop_target`` (0 in the
        paper): the stopping rule fired (``reached_zero``, the field stored on disk) or the model
        left at the cap is there. False means the method stopped at its epoch cap above it."""
        return self.reached_zero or self.metrics["forget_acc"] <= self.stop_target

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "curve"}
        data.update(
            seconds=self.seconds, mean_collapse=self.mean_collapse, final_collapse=self.final_collapse,
            tradeoff_acc=self.tradeoff_acc, reached_target=self.reached_target,
        )
        return data


@dataclass
class RunResult:
    """Everything one experiment produced; ``methods`` keeps the order in which they ran."""

    config: dict[str, Any]
    dataset: dict[str, Any]
    original: dict[str, float]
    pretrained: dict[str, Any]
    forget_indices: list[int]
    probe_indices: list[int]
    methods: dict[str, MethodResult]
    environment: dict[str, Any] = field(default_factory=dict)
    models: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)
    stop: dict[str, Any] = field(default_factory=lambda: {"at": "zero", "target": 0.0})
    """The stopping target: ``at`` (zero or retrain) and ``target``, the forget accuracy (%) it stood for."""

    @property
    def k(self) -> int:
        return len(self.forget_indices)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    def method(self, name: str) -> MethodResult:
        if name not in self.methods:
            raise KeyError(f"method '{name}' was not run (this run has: {', '.join(self.methods)})")
        return self.methods[name]

    def save(self, directory: str | Path, save_models: bool = True) -> Path:
        """Write the run to ``directory`` (created if needed); files are replaced atomically, and
        a failed write raises :class:`~stakes_core.infra.cache.WriteError` naming ``directory``.
        :func:`~stakes_core.run.runstore.store_result` writes a whole run or nothing."""
        directory = Path(directory)
        with writing(directory):
            self._write(directory, save_models)
        return directory

    def _write(self, directory: Path, save_models: bool) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        summary = {
            "format": FORMAT_VERSION,
            "config": self.config,
            "dataset": self.dataset,
            "original": self.original,
            "pretrained": self.pretrained,
            "forget_indices": self.forget_indices,
            "probe_indices": self.probe_indices,
            "environment": self.environment,
            "stop": self.stop,
            "methods": {name: result.summary() for name, result in self.methods.items()},
        }
        atomic_write_bytes(directory / "steps.csv", self._steps_csv().encode())
        if save_models:
            for name, model in self.models.items():
                buffer = io.BytesIO()
                torch.save(model.state_dict(), buffer)
                atomic_write_bytes(directory / "models" / f"{name}.pt", buffer.getvalue())
        # last: summary.json marks a run directory (find_runs)
        atomic_write_bytes(directory / "summary.json", json.dumps(summary, indent=2).encode())

    def _steps_csv(self) -> str:
        curves = [r for result in self.methods.values() for r in result.curve]
        views = sorted({v for r in curves for v in r.views if v != "backbone"})
        terms = sorted({t for r in curves for t in r.terms})
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow([*HEAD_COLUMNS, *(VIEW_PREFIX + v for v in views), *TAIL_COLUMNS, *terms])
        for name, result in self.methods.items():
            for r in result.curve:
                collapse = [r.collapse, *(r.views.get(v, "") for v in views)]
                writer.writerow([name, r.step, r.epoch, r.forget_acc, *collapse, r.loss, r.seconds,
                                 *(r.terms.get(t, "") for t in terms)])
        return text.getvalue()

    @classmethod
    def load(cls, directory: str | Path) -> "RunResult":
        """Read a run written by :meth:`save` (models are not loaded; see ``load_state_dict``);
        a missing or damaged file raises :class:`RunResultError` naming it (and the line)."""
        directory = Path(directory)
        summary = read_summary(directory)
        curves = read_steps(directory / "steps.csv")
        methods = {}
        for name, data in summary["methods"].items():
            fields_ = {k: data[k] for k in METHOD_KEYS}
            optional = {k: data[k] for k in OPTIONAL_METHOD_KEYS if k in data}
            methods[name] = MethodResult(**fields_, **optional, curve=curves.get(name, []))
        return cls(
            summary["config"], summary["dataset"], summary["original"], summary["pretrained"],
            summary["forget_indices"], summary["probe_indices"], methods, summary.get("environment", {}),
            stop=summary.get("stop", {"at": "zero", "target": 0.0}),
        )

    @staticmethod
    def model_state(directory: str | Path, method: str) -> dict[str, torch.Tensor]:
        """The saved weights of ``method`` in a run directory (``weights_only`` load)."""
        path = Path(directory) / "models" / f"{method}.pt"
        if not path.is_file():
            raise RunResultError(f"no saved model for '{method}' in {directory}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises many types for a truncated or foreign file
            raise RunResultError(f"{path} is damaged: {error}") from None


SUMMARY_KEYS = ("config", "dataset", "original", "pretrained", "forget_indices", "probe_indices", "methods")
"""What every ``summary.json`` holds besides its ``format``."""
METHOD_KEYS = ("method", "config", "metrics", "steps", "epochs", "timings", "reached_zero")
"""What every method's entry of ``summary.json`` holds."""
OPTIONAL_METHOD_KEYS = ("stop_target", "data_access")
"""What a method's entry holds since the field's baselines (runs stored before lack them)."""


def read_summary(directory: Path) -> dict[str, Any]:
    """The ``summary.json`` of a run directory, checked to hold every key a run needs."""
    path = directory / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunResultError(f"{directory} is not a run directory (missing summary.json)") from None
    except (OSError, ValueError) as error:  # ValueError: invalid JSON or UTF-8
        raise RunResultError(f"{path} is damaged: not valid JSON ({error})") from None
    if not isinstance(summary, dict):
        raise RunResultError(f"{path} is damaged: it holds a {type(summary).__name__}, not a run summary")
    if summary.get("format") != FORMAT_VERSION:
        raise RunResultError(f"{directory} has format {summary.get('format')}, this version reads {FORMAT_VERSION}")
    missing = [key for key in SUMMARY_KEYS if key not in summary]
    if missing:
        raise RunResultError(f"{path} is damaged: it has no {', '.join(missing)}")
    if not isinstance(summary["methods"], dict):
        raise RunResultError(f"{path} is damaged: 'methods' is not a mapping of method names")
    for name, data in summary["methods"].items():
        lacking = [key for key in METHOD_KEYS if key not in data] if isinstance(data, dict) else list(METHOD_KEYS)
        if lacking:
            raise RunResultError(f"{path} is damaged: method '{name}' has no {', '.join(lacking)}")
    return summary


def read_steps(path: Path) -> dict[str, list[StepRecord]]:
    """The step records of ``steps.csv`` by method, every line checked: all columns present,
    every field there and every number a number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise RunResultError(f"{path.parent} is not a run directory (missing steps.csv)") from None
    except (OSError, ValueError) as error:
        raise RunResultError(f"{path} is damaged: {error}") from None
    reader = csv.reader(lines)
    header = next(reader, [])
    missing = [column for column in STEP_COLUMNS if column not in header]
    if missing:
        raise RunResultError(f"{path} is damaged: line 1 lacks the column(s) {', '.join(missing)}")
    curves: dict[str, list[StepRecord]] = {}
    for line, values in enumerate(reader, start=2):
        if len(values) != len(header):
            raise RunResultError(
                f"{path} is damaged: line {line} has {len(values)} of the {len(header)} fields (truncated?)"
            )
        row = dict(zip(header, values))
        try:
            record = step_record(row)
        except ValueError as error:
            problem = f"line {line} holds a value that is not a number ({error})"
            raise RunResultError(f"{path} is damaged: {problem}") from None
        curves.setdefault(row["method"], []).append(record)
    return curves


def step_record(row: dict[str, str]) -> StepRecord:
    """One row of ``steps.csv`` as a :class:`StepRecord` (``ValueError`` on a bad number)."""
    views = {"backbone": float(row["collapse"])}
    terms = {}
    for key, value in row.items():
        if key in STEP_COLUMNS or value == "":
            continue
        if key.startswith(VIEW_PREFIX):
            views[key[len(VIEW_PREFIX) :]] = float(value)
        else:
            terms[key] = float(value)
    return StepRecord(
        int(row["step"]), int(row["epoch"]), float(row["forget_acc"]), views, float(row["loss"]),
        float(row["seconds"]), terms,
    )


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (holding ``summary.json``) under ``root``, sorted; hidden folders (a
    run store writer's temporary ``.….partial``, left behind by a killed process) are not runs."""
    root = Path(root)
    if (root / "summary.json").is_file():
        return [root]
    found = (p.parent for p in root.rglob("summary.json"))
    return sorted(d for d in found if not any(part.startswith(".") for part in d.relative_to(root).parts))
