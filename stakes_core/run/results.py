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

from stakes_core.infra.cache import atomic_write_bytes
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

    def summary(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "curve"}
        data.update(
            seconds=self.seconds, mean_collapse=self.mean_collapse, final_collapse=self.final_collapse,
            tradeoff_acc=self.tradeoff_acc,
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
        """Write the run to ``directory`` (created if needed); files are replaced atomically."""
        directory = Path(directory)
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
            "methods": {name: result.summary() for name, result in self.methods.items()},
        }
        atomic_write_bytes(directory / "summary.json", json.dumps(summary, indent=2).encode())
        atomic_write_bytes(directory / "steps.csv", self._steps_csv().encode())
        if save_models:
            for name, model in self.models.items():
                buffer = io.BytesIO()
                torch.save(model.state_dict(), buffer)
                atomic_write_bytes(directory / "models" / f"{name}.pt", buffer.getvalue())
        return directory

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
        """Read a run written by :meth:`save` (models are not loaded; see ``load_state_dict``)."""
        directory = Path(directory)
        try:
            summary = json.loads((directory / "summary.json").read_text())
            rows = list(csv.DictReader((directory / "steps.csv").read_text().splitlines()))
        except FileNotFoundError as error:
            raise RunResultError(f"{directory} is not a run directory (missing {Path(error.filename).name})") from None
        except json.JSONDecodeError as error:
            raise RunResultError(f"{directory}/summary.json is not valid JSON: {error}") from None
        if summary.get("format") != FORMAT_VERSION:
            raise RunResultError(f"{directory} has format {summary.get('format')}, this version reads {FORMAT_VERSION}")
        curves: dict[str, list[StepRecord]] = {}
        for row in rows:
            views = {"backbone": float(row["collapse"])}
            terms = {}
            for key, value in row.items():
                if key in STEP_COLUMNS or value == "":
                    continue
                if key.startswith(VIEW_PREFIX):
                    views[key[len(VIEW_PREFIX) :]] = float(value)
                else:
                    terms[key] = float(value)
            curves.setdefault(row["method"], []).append(
                StepRecord(
                    int(row["step"]), int(row["epoch"]), float(row["forget_acc"]), views, float(row["loss"]),
                    float(row["seconds"]), terms,
                )
            )
        methods = {}
        for name, data in summary["methods"].items():
            keys = ("method", "config", "metrics", "steps", "epochs", "timings", "reached_zero")
            fields_ = {k: data[k] for k in keys}
            methods[name] = MethodResult(**fields_, curve=curves.get(name, []))
        return cls(
            summary["config"], summary["dataset"], summary["original"], summary["pretrained"],
            summary["forget_indices"], summary["probe_indices"], methods, summary.get("environment", {}),
        )

    @staticmethod
    def model_state(directory: str | Path, method: str) -> dict[str, torch.Tensor]:
        """The saved weights of ``method`` in a run directory (``weights_only`` load)."""
        path = Path(directory) / "models" / f"{method}.pt"
        if not path.is_file():
            raise RunResultError(f"no saved model for '{method}' in {directory}")
        return torch.load(path, map_location="cpu", weights_only=True)


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory (holding ``summary.json``) under ``root``, sorted."""
    root = Path(root)
    if (root / "summary.json").is_file():
        return [root]
    return sorted(p.parent for p in root.rglob("summary.json"))
