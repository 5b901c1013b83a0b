"""Two stored runs side by side: the runs of the store one can pick, each with a one-line label,
and what differs between the settings of a chosen pair.

A label always names the dataset, k, seed, methods and anchor source, and adds every other
setting on which the stored runs of its dataset disagree (StructGuard's structure space, an
encoder, a hyperparameter), so two runs never look alike in a list. Settings are compared
flattened (``structguard.lr``, ``dataset.image_size``), with what an older run did not record
filled in with today's defaults, so a run that names a default and one that leaves it out agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stakes_core.analysis import AnalysisError
from stakes_core.figures.style import method_label
from stakes_core.methods import METHODS, hyperparameters
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.results import RunResultError, find_runs, read_summary
from stakes_core.run.runstore import SkippedRun, store_root

LABEL_KEYS = ("dataset.name", "k", "seed", "methods", "anchor_source")
"""The settings every label names, in this order (and the first ones a list of differences shows)."""


@dataclass(frozen=True)
class StoredRun:
    """One stored run as the side-by-side view offers it: its folder, its dataset (name and
    image shape, and the training images' hash when recorded), its methods, its flattened
    settings as text and its label."""

    directory: Path
    dataset: tuple[str, tuple[int, ...], str]
    methods: tuple[str, ...]
    settings: dict[str, str]
    label: str = ""


@dataclass
class StoredRuns:
    """The stored runs that can be picked, most recent first; those left out because a method
    of theirs is not registered here; and why each unreadable one was left out."""

    runs: list[StoredRun] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def stored_runs(root: str | Path | None = None) -> StoredRuns:
    """Every run of the store under ``root`` (the project's by default), most recently stored
    first, each with a label that tells it apart from the others; reading never raises."""
    root = store_root(root)
    found = StoredRuns()
    dated: list[tuple[float, StoredRun]] = []
    for directory in find_runs(root) if root.is_dir() else []:
        try:
            summary = read_summary(directory)
            methods = tuple(summary["config"]["methods"])
            missing = tuple(name for name in methods if name not in METHODS)
            settings = {} if missing else flat_settings(summary["config"])
            stored_at = (directory / "summary.json").stat().st_mtime
        except RunResultError as error:
            found.damaged.append(str(error))
            continue
        except OSError as error:  # removed meanwhile
            found.damaged.append(f"{directory} cannot be read: {error}")
            continue
        except (KeyError, TypeError, AttributeError):
            found.damaged.append(f"{directory / 'summary.json'} is damaged: its config lacks a field every run has")
            continue
        if missing:
            found.skipped.append(SkippedRun(directory, missing))
            continue
        run = StoredRun(directory, dataset_identity(summary["dataset"]), methods, settings)
        dated.append((stored_at, run))
    dated.sort(key=lambda pair: (-pair[0], pair[1].directory.name))
    found.runs = labelled([run for _, run in dated])
    return found


def dataset_identity(dataset: dict[str, Any]) -> tuple[str, tuple[int, ...], str]:
    """What makes two runs' datasets the same: the name, the image shape and (when recorded)
    the hash of the training images."""
    return str(dataset.get("name", "?")), tuple(dataset.get("image_shape", ())), str(dataset.get("train_sha256", ""))


def flat_settings(config: dict[str, Any]) -> dict[str, str]:
    """A stored config as ``{dotted key: value as text}``: the run's fields (today's defaults for
    those it predates) and every hyperparameter of each of its methods (the method's default for
    those it did not record); a ``KeyError`` when it lacks a field every run has."""
    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig) if f.default is not dataclasses.MISSING}
    data = {**defaults, **config}
    flat: dict[str, str] = {}
    for key, value in data.items():
        if key == "method_configs":
            continue
        if key == "methods":
            flat[key] = ", ".join(method_label(name) for name in value)
        elif key == "descriptions":  # a shipped name, or the path of edited ones (named by their content)
            flat[key] = Path(value).name
        else:
            flatten(flat, key, value)
    lacking = [key for key in LABEL_KEYS if key not in flat]
    if lacking:
        raise KeyError(lacking[0])
    recorded = data.get("method_configs", {})
    for method in data["methods"]:
        values = {hp.name: hp.default for hp in hyperparameters(method)} | recorded.get(method, {})
        for name, value in values.items():
            flatten(flat, f"{method}.{name}", value)
    return flat


def flatten(flat: dict[str, str], key: str, value: Any) -> None:
    """Put ``value`` into ``flat`` under ``key``, a mapping as one key per entry (``key.entry``)."""
    if isinstance(value, dict):
        for name, inner in value.items():
            flatten(flat, f"{key}.{name}", inner)
    elif isinstance(value, (list, tuple)):
        flat[key] = ", ".join(map(str, value))
    else:
        flat[key] = str(value)


def labelled(runs: list[StoredRun]) -> list[StoredRun]:
    """``runs`` with their labels: the label settings, then every setting on which the runs of
    the same dataset disagree; a label shared by two runs (made by other code) gets the folder."""
    values: dict[tuple[str, str], set[str]] = {}
    for run in runs:
        for key, value in run.settings.items():
            values.setdefault((run.dataset[0], key), set()).add(value)
    labels = []
    for run in runs:
        settings = run.settings
        varying = [key for key in settings if key not in LABEL_KEYS and len(values[run.dataset[0], key]) > 1]
        parts = [settings["dataset.name"], f"k = {settings['k']}", f"seed {settings['seed']}", settings["methods"],
                 f"{settings['anchor_source']} anchors", *(f"{key}={settings[key]}" for key in varying)]
        labels.append(" · ".join(parts))
    return [
        dataclasses.replace(run, label=label if labels.count(label) == 1 else f"{label} · {run.directory.name}")
        for run, label in zip(runs, labels)
    ]


def default_pair(runs: list[StoredRun]) -> tuple[int, int]:
    """Positions in ``runs`` (most recent first) of the pair to show first: the most recent run
    and the most recent other run of its dataset, or else the second most recent run."""
    if len(runs) < 2:
        raise AnalysisError(f"side by side needs two stored runs, and the store holds {len(runs)}")
    same = [i for i, run in enumerate(runs[1:], start=1) if run.dataset == runs[0].dataset]
    return 0, same[0] if same else 1


def pair_differences(left: StoredRun, right: StoredRun) -> list[str]:
    """``"key: left → right"`` for every setting in which the two runs differ (the label
    settings first; the hyperparameters of a method only one of them ran are left out, the
    methods line says so). Runs of two datasets raise an :class:`AnalysisError` naming both."""
    if left.dataset != right.dataset:
        names = dataset_names(left.dataset, right.dataset)
        raise AnalysisError(f"the left run is on {names[0]} and the right run on {names[1]}: "
                            "side by side compares two runs of one dataset")
    ran = set(left.methods) | set(right.methods)
    shared = set(left.methods) & set(right.methods)
    keys = [*LABEL_KEYS, *(key for key in left.settings | right.settings if key not in LABEL_KEYS)]
    differences = []
    for key in keys:
        method = key.split(".", 1)[0]
        if method in ran and method not in shared:
            continue
        before, after = left.settings.get(key, "–"), right.settings.get(key, "–")
        if before != after:
            differences.append(f"{key}: {before} → {after}")
    return differences


def dataset_names(left: tuple[str, tuple[int, ...], str], right: tuple[str, tuple[int, ...], str]) -> list[str]:
    """How to name two datasets so that they read apart: the name and image shape, and the
    start of the training images' hash when those are the same."""
    names = [f"'{name}' ({'×'.join(map(str, shape)) or 'shape not recorded'})" for name, shape, _ in (left, right)]
    if names[0] == names[1]:
        names = [f"{name[:-1]}, training images {sha[:8] or 'not hashed'})" for name, (_, _, sha) in
                 zip(names, (left, right))]
    return names
