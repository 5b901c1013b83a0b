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

A damaged entry (a truncated ``steps.csv`` or ``summary.json``, a missing or truncated model) is
never served: :func:`load_or_run` runs it again with a :class:`DamagedRunWarning` and
:func:`sibling_runs` leaves it out with one. Two processes that store the same run at once
each write their own temporary folder; the entry holds one complete copy. The workers of
sweeps use :func:`load_or_run_exclusive`, which holds the entry's cross-process lock (in the
store's hidden ``.sweep/locks``) while it runs, so overlapping sweeps run a shared cell once.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import warnings
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager

from stakes_core.anchors import load_descriptions
from stakes_core.anchors.descriptions import Descriptions, descriptions_hash
from stakes_core.infra.cache import atomic_write_bytes, cache_root, config_key, writing
from stakes_core.infra.errors import StakesError
from stakes_core.infra.locks import file_lock
from stakes_core.methods import METHODS, StepRecord, create_method
from stakes_core.methods.config import keyed_values
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.environment import code_versions
from stakes_core.run.experiment import run_experiment
from stakes_core.run.results import FORMAT_VERSION, MethodResult, RunResult, RunResultError, find_runs, read_summary


class UnregisteredMethodWarning(UserWarning):
    """A stored run was skipped because one of its methods is not registered in this process
    (typically a plugin's method, with the plugin not loaded)."""


class DamagedRunWarning(UserWarning):
    """A stored run is damaged: it is run again (:func:`load_or_run`) or left out (:func:`sibling_runs`)."""


RUNNING = threading.Lock()
"""One new run at a time in a process. A run sets torch's intra-op thread count (process-wide)
for its method workers, and a user's method may draw from torch's process-wide random
generator, so two runs interleaved in threads (two dashboard sessions of one server) would
change each other's results; the second waits."""


def store_root(root: str | Path | None = None) -> Path:
    """``root``, or the ``runs`` folder of the project cache (``$STAKES_CACHE_DIR``)."""
    return Path(root) if root is not None else cache_root() / "runs"


def canonical_config(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with every method's hyperparameters spelled out in full, so settings that
    name a default explicitly and settings that leave it out are the same run. The paper's
    stopping target (``stop_at="zero"``) and hyperparameters added later, at their defaults
    (:func:`~stakes_core.methods.config.keyed_values`), are left out, so runs stored before those
    options existed keep their keys."""
    data = json.loads(json.dumps(config))
    if data.get("stop_at", "zero") == "zero":
        data.pop("stop_at", None)
    data["method_configs"] = {
        name: keyed_values(create_method(name, **data.get("method_configs", {}).get(name, {})).config)
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
    data["code_versions"] = code_versions(config.methods)
    return config_key(data)


def run_directory(config: ExperimentConfig, root: str | Path | None = None) -> Path:
    """Where the run of ``config`` is (or will be) stored."""
    name = f"{config.dataset['name']}-k{config.k}-seed{config.seed}-{run_key(config)}"
    return store_root(root) / name


def entry_problem(directory: Path, methods: list[str]) -> str | None:
    """Why ``directory`` is not a complete stored run of ``methods`` that reads back (``None``
    when it is one): absent, a model missing or truncated, or a damaged file (the message of
    :meth:`RunResult.load`, naming it)."""
    if not (directory / "summary.json").is_file():
        return f"{directory} is not stored"
    for name in methods:
        model = directory / "models" / f"{name}.pt"
        if not model.is_file():
            return f"{directory} has no saved model for '{name}'"
        if not zipfile.is_zipfile(model):  # torch.save writes a zip archive; a truncated one lacks its end
            return f"{model} is damaged: not a complete torch.save archive"
    try:
        RunResult.load(directory)
    except RunResultError as error:
        return str(error)
    return None


def is_complete(directory: Path, methods: list[str]) -> bool:
    """True when ``directory`` holds a finished run that reads back, with a saved model for
    every method (:func:`entry_problem` says what is wrong otherwise)."""
    return entry_problem(directory, methods) is None


def load_or_run(
    config: ExperimentConfig,
    root: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
    workers: int | None = None,
    on_result: Callable[[str, MethodResult], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> Path:
    """The directory of the run of ``config``, running it first when it is not stored yet or
    its entry is damaged (said in a one-line :class:`DamagedRunWarning`; never served). Runs of
    one process are made one at a time (:data:`RUNNING`), so each has the results of its config.

    ``on_step`` sees every step record of a new run and ``on_result`` each method's result as it
    finishes; raising from either cancels the run, and nothing is stored. ``workers``: methods
    run at once; ``on_notice`` hears what a retrain will cost before it starts
    (:func:`~stakes_core.run.experiment.run_experiment`).
    """
    directory = run_directory(config, root)
    problem = entry_problem(directory, config.methods)
    if problem is None:
        return directory
    if (directory / "summary.json").is_file():
        warnings.warn(f"{problem}; running it again", DamagedRunWarning, stacklevel=2)
    with RUNNING:
        if is_complete(directory, config.methods):  # stored meanwhile (another session or process)
            return directory
        result = run_experiment(config, progress=progress, on_step=on_step, workers=workers, on_result=on_result,
                                on_notice=on_notice)
    if is_complete(directory, config.methods):  # another process stored the same run meanwhile
        return directory
    return store_result(result, directory)


SWEEP_FOLDER = ".sweep"
"""The store's hidden folder for what sweeps keep beside the entries: locks, per-cell logs and
records (hidden, so listings of runs never take it for a run)."""


def entry_lock(directory: Path) -> ContextManager[float]:
    """The cross-process lock of the run-store entry ``directory``."""
    return file_lock(directory.parent / SWEEP_FOLDER / "locks" / f"{directory.name}.lock")


def load_or_run_exclusive(config: ExperimentConfig, root: str | Path | None = None,
                          progress: bool = True) -> tuple[Path, bool]:
    """:func:`load_or_run` holding the entry's cross-process lock while the run is made, so a
    process that asks for the same entry meanwhile (a worker of an overlapping sweep) waits and
    then loads it instead of running it again. Returns the directory and whether this call ran it.
    A holder that is killed releases the lock (the OS does) and leaves no entry, only its hidden
    temporary folder, so the next asker runs it."""
    directory = run_directory(config, root)
    if is_complete(directory, config.methods):
        return directory, False
    with entry_lock(directory):
        if is_complete(directory, config.methods):  # stored while this process waited for the lock
            return directory, False
        return load_or_run(config, root, progress), True


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
    """What :func:`find_siblings` found: the runs, the stored runs it had to skip because a
    method of theirs is not registered now, and what is wrong with each damaged one it left out."""

    runs: list[RunResult] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def find_siblings(
    config: ExperimentConfig, root: str | Path | None = None, vary: tuple[str, ...] = ("seed", "k")
) -> Siblings:
    """Stored runs whose configuration equals ``config`` except in the fields ``vary`` (by
    default the seeds and forget-set sizes of one setting: what a methods × k table pools).

    Runs made by other code are left out: one whose key no longer matches its config (a
    method's or the loop's ``version`` was bumped since) and one whose config the methods no
    longer accept (a hyperparameter was removed). A run of a method that is not registered now
    is left out with a notice in ``skipped``, a damaged one with its problem in ``damaged``;
    nothing here raises for what the store holds.
    """
    root = store_root(root)
    wanted = {key: value for key, value in canonical_config(asdict(config)).items() if key not in vary}
    found = Siblings()
    for directory in find_runs(root) if root.is_dir() else []:
        try:
            saved = read_summary(directory)["config"]  # no step records yet
            missing = tuple(name for name in saved["methods"] if name not in METHODS)
        except RunResultError as error:
            found.damaged.append(str(error))
            continue
        except (KeyError, TypeError):
            found.damaged.append(f"{directory / 'summary.json'} is damaged: its config has no list of methods")
            continue
        if missing:
            found.skipped.append(SkippedRun(directory, missing))
            continue
        try:
            same = {key: value for key, value in canonical_config(saved).items() if key not in vary} == wanted
            current = same and directory.name.endswith(f"-{run_key(ExperimentConfig(**saved))}")
        except (StakesError, ValueError, TypeError):  # a field, hyperparameter or descriptions file gone: other code
            continue
        if current:
            try:
                found.runs.append(RunResult.load(directory))
            except RunResultError as error:
                found.damaged.append(str(error))
    return found


def sibling_runs(
    config: ExperimentConfig, root: str | Path | None = None, vary: tuple[str, ...] = ("seed", "k")
) -> list[RunResult]:
    """The runs of :func:`find_siblings`; each stored run it skipped is reported with an
    :class:`UnregisteredMethodWarning` (a notebook shows it under the cell)."""
    found = find_siblings(config, root, vary)
    for skipped in found.skipped:
        warnings.warn(str(skipped), UnregisteredMethodWarning, stacklevel=2)
    for problem in found.damaged:
        warnings.warn(f"left out a damaged stored run: {problem}", DamagedRunWarning, stacklevel=2)
    return found.runs


def store_result(result: RunResult, directory: Path, save_models: bool = True) -> Path:
    """Save ``result`` to ``directory`` all at once: into a temporary folder of this writer's
    own, renamed into place when complete, so a failure (a full disk: a one-line
    :class:`~stakes_core.infra.cache.WriteError`) or a kill leaves no partial entry and an
    existing ``directory`` is replaced only by a whole run. When another writer puts the same
    entry in place meanwhile, its copy is kept."""
    directory = Path(directory)
    with writing(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent))
        try:
            result.save(partial, save_models)
            shutil.rmtree(directory, ignore_errors=True)  # a damaged entry, or an earlier run of --out
            try:
                os.replace(partial, directory)
            except OSError:
                if not (directory / "summary.json").is_file():  # not another writer's complete copy
                    raise
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
