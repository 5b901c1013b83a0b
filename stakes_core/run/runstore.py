"""Runs cached by their configuration, so a notebook cell or a dashboard button that asks for
a run it has already made answers at once.

A run lives in ``<root>/<dataset>-k<k>-seed<seed>-<key>/`` (the ``stakes run`` layout), where
``key`` hashes the whole :class:`~stakes_core.run.experiment.ExperimentConfig` with the *content*
of its descriptions, so editing a descriptions file gives other runs. A run is written to a
temporary folder and renamed into place only once it is complete: a run that fails or is
cancelled never replaces or half-fills an entry.

Stored results follow the code: the key also holds the code version of each method of the run
(its class attribute ``version``) and of the shared loop
(:data:`~stakes_core.methods.base.LOOP_VERSION`). Bump a method's ``version`` when a change
alters its results; its stored runs then no longer match any key, so ``load_or_run``
recomputes them and :func:`sibling_runs` leaves them out.

The store may hold runs of methods that are not registered now (a plugin that is not loaded
in this process). Reading the store never fails on them: :func:`sibling_runs` skips each such
run with an :class:`UnregisteredMethodWarning` naming its folder and the method.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from stakes_core.anchors import load_descriptions
from stakes_core.anchors.descriptions import Descriptions, descriptions_hash
from stakes_core.infra.cache import atomic_write_bytes, cache_root, config_key
from stakes_core.infra.errors import StakesError
from stakes_core.methods import LOOP_VERSION, METHODS, StepRecord, create_method
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.experiment import run_experiment
from stakes_core.run.results import FORMAT_VERSION, RunResult, find_runs


class UnregisteredMethodWarning(UserWarning):
    """A stored run was skipped because one of its methods is not registered in this process
    (typically a plugin's method, with the plugin not loaded)."""


def store_root(root: str | Path | None = None) -> Path:
    """``root``, or the ``runs`` folder of the project cache (``$STAKES_CACHE_DIR``)."""
    return Path(root) if root is not None else cache_root() / "runs"


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with every method's hyperparameters spelled out in full, so settings that
    name a default explicitly and settings that leave it out are the same run."""
    data = json.loads(json.dumps(config))
    data["method_configs"] = {
        name: asdict(create_method(name, **data.get("method_configs", {}).get(name, {})).config)
        for name in data["methods"]
    }
    return data


def run_key(config: ExperimentConfig) -> str:
    """A stable key of everything that determines the run: the config with every
    hyperparameter spelled out, the descriptions by content and the code version of every
    method of the run and of the shared loop."""
    data = canonical_config(asdict(config))
    data["descriptions"] = descriptions_hash(load_descriptions(config.descriptions))
    data["format"] = FORMAT_VERSION
    data["code_versions"] = {"loop": LOOP_VERSION, **{name: METHODS.get(name).version for name in config.methods}}
    return config_key(data)


def run_directory(config: ExperimentConfig, root: str | Path | None = None) -> Path:
    """Where the run of ``config`` is (or will be) stored."""
    name = f"{config.dataset['name']}-k{config.k}-seed{config.seed}-{run_key(config)}"
    return store_root(root) / name


def is_complete(directory: Path, methods: list[str]) -> bool:
    """True when ``directory`` holds a finished run with a saved model for every method."""
    return (directory / "summary.json").is_file() and all(
        (directory / "models" / f"{name}.pt").is_file() for name in methods
    )


def load_or_run(
    config: ExperimentConfig,
    root: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> Path:
    """The directory of the run of ``config``, running it first when it is not stored yet.

    ``on_step`` sees every step record of a new run; raising from it cancels the run, and
    nothing is stored.
    """
    directory = run_directory(config, root)
    if is_complete(directory, config.methods):
        return directory
    result = run_experiment(config, progress=progress, on_step=on_step)
    return store_result(result, directory)


@dataclass(frozen=True)
class SkippedRun:
    """A stored run left out because its ``methods`` are not registered in this process."""

    directory: Path
    methods: tuple[str, ...]

    def __str__(self) -> str:
        names = ", ".join(f"'{name}'" for name in self.methods)
        verb = "is" if len(self.methods) == 1 else "are"
        return (f"skipped the stored run {self.directory.name}: its method {names} {verb} not registered "
                "(load the plugin that defines it: stakes --plugin FILE, or STAKES_PLUGINS)")


@dataclass
class Siblings:
    """What :func:`find_siblings` found: the runs, and the stored runs it had to skip because a
    method of theirs is not registered now."""

    runs: list[RunResult] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)


def find_siblings(
    config: ExperimentConfig, root: str | Path | None = None, vary: tuple[str, ...] = ("seed", "k")
) -> Siblings:
    """Stored runs whose configuration equals ``config`` except in the fields ``vary`` (by
    default the seeds and forget-set sizes of one setting: what a methods × k table pools).

    Runs made by other code are left out: one whose key no longer matches its config (a
    method's or the loop's ``version`` was bumped since) and one whose config the methods no
    longer accept (a hyperparameter was removed). A run of a method that is not registered now
    is left out with a notice in ``skipped``; nothing here raises for what the store holds.
    """
    root = store_root(root)
    wanted = {key: value for key, value in canonical_config(asdict(config)).items() if key not in vary}
    found = Siblings()
    for directory in find_runs(root) if root.is_dir() else []:
        saved = json.loads((directory / "summary.json").read_text())["config"]  # no step records yet
        missing = tuple(name for name in saved["methods"] if name not in METHODS)
        if missing:
            found.skipped.append(SkippedRun(directory, missing))
            continue
        try:
            same = {key: value for key, value in canonical_config(saved).items() if key not in vary} == wanted
            current = same and directory.name.endswith(f"-{run_key(ExperimentConfig(**saved))}")
        except (StakesError, ValueError, TypeError):  # a field, hyperparameter or descriptions file gone: other code
            continue
        if current:
            found.runs.append(RunResult.load(directory))
    return found


def sibling_runs(
    config: ExperimentConfig, root: str | Path | None = None, vary: tuple[str, ...] = ("seed", "k")
) -> list[RunResult]:
    """The runs of :func:`find_siblings`; each stored run it skipped is reported with an
    :class:`UnregisteredMethodWarning` (a notebook shows it under the cell)."""
    found = find_siblings(config, root, vary)
    for skipped in found.skipped:
        warnings.warn(str(skipped), UnregisteredMethodWarning, stacklevel=2)
    return found.runs


def store_result(result: RunResult, directory: Path) -> Path:
    """Save ``result`` to ``directory`` all at once (temporary folder, then rename)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = directory.with_name(f".{directory.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        result.save(partial)
        if directory.exists():  # an incomplete entry (a complete one is returned before running)
            shutil.rmtree(directory)
        os.replace(partial, directory)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return directory


def stored_descriptions(descriptions: Descriptions, root: str | Path | None = None) -> str:
    """Write edited descriptions to a file named by their content and return its path, which
    an :class:`ExperimentConfig` can use as its ``descriptions`` (validated first)."""
    descriptions = load_descriptions(descriptions)
    folder = Path(root) if root is not None else cache_root() / "descriptions"
    path = folder / f"{descriptions_hash(descriptions)[:20]}.json"
    if not path.is_file():
        atomic_write_bytes(path, json.dumps(descriptions, indent=2, ensure_ascii=False).encode("utf-8"))
    return str(path)
