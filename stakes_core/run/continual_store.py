"""Stored, resumable request sequences: every completed round of every arm and seed is a run-store
entry keyed by the sequence prefix (the settings of the arm plus F_1..F_t).

An entry ``<store>/continual/<dataset>-<arm>-seed<s>-round<t>-<key>/`` holds ``round.json`` (the
round's :class:`~stakes_core.run.continual.RoundRecord`) and ``model.pt`` (the model the round
left, which the next round starts from). It is written into a temporary folder and renamed into
place when complete, so a process killed inside a round leaves no entry for it, and one killed
between rounds leaves every finished round: rerunning resumes after the last complete round, and
a longer sequence (or one with more arms or seeds) reuses every round it shares.

A sequence written to an output folder (``stakes continual --out DIR``) records its settings in
``DIR/continual.json``. Running into the same folder again *resumes* it: settings that differ
(anything but the number of rounds, the arms and the seeds) are refused with a message naming
the first that differs.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from stakes_core.data.forget import check_seed
from stakes_core.infra.cache import atomic_write_bytes, config_key, writing
from stakes_core.infra.errors import StakesError
from stakes_core.methods import StepRecord
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.context import load_dataset, prepare_context
from stakes_core.run.continual import (
    CONTINUAL_VERSION,
    Arm,
    Pieces,
    RoundRecord,
    SequenceError,
    arm_config,
    check_rounds,
    check_sequence,
    draw_sequence,
    frozen,
    parse_arms,
    probe_indices,
    round_architecture,
    run_round,
)
from stakes_core.run.runstore import RUNNING, canonical_config, run_key, store_root

SUMMARY = "continual.json"
"""The file that marks an output folder as a continual run."""

RESUMABLE = ("rounds", "seed", "methods")
"""Settings a resumed output folder may change: more (or fewer) rounds, other arms and seeds."""


class SettingsChangedError(StakesError, ValueError):
    """An output folder holds a sequence whose settings differ from the ones asked for."""


@dataclass
class ContinualSettings:
    """What determines every sequence of a continual run but the arm and the seed: the base
    config (``k`` is the per-round size), the number of rounds and explicit forget sets, if given."""

    config: ExperimentConfig
    rounds: int
    sets: list[list[int]] | None = None

    def sequence(self, seed: int) -> list[list[int]]:
        """F_1..F_T for ``seed`` (the explicit sets, when given, for every seed), checked."""
        dataset = load_dataset(self.config)
        sets = self.sets
        if sets is None:
            sets = draw_sequence(dataset.num_train, self.config.k, self.rounds, seed)
        return check_sequence(sets, dataset)

    def describe(self) -> dict[str, Any]:
        """The settings as plain data, hyperparameters spelled out (what a resumed folder compares)."""
        return {**canonical_config(asdict(self.config)), "rounds": self.rounds, "sets": self.sets}


def continual_settings(
    preset: str = "digits",
    k: int | None = None,
    rounds: int = 5,
    methods: Sequence[str] = ("neggrad", "adv", "l2ul", "structguard"),
    sets: Sequence[Sequence[int]] | None = None,
    overrides: list[str] | None = None,
    **options: Any,
) -> tuple[ContinualSettings, list[Arm]]:
    """Settings and arms from a preset and the user's choices; ``sets`` gives the forget sets
    explicitly (then ``rounds`` is their number and ``k`` the first one's size). ``options`` are
    :func:`~stakes_core.run.config.experiment_config`'s (device, encoder, ...)."""
    arms = parse_arms(list(methods))
    base = list(dict.fromkeys(arm.method for arm in arms))
    explicit = [list(map(int, s)) for s in sets] if sets is not None else None
    if explicit is not None:
        rounds = check_rounds(len(explicit))
        if not explicit[0]:
            raise SequenceError("forget set 1 is empty: each request forgets at least one image")
        k = len(explicit[0])
    config = experiment_config(preset, k=k, methods=base, overrides=overrides, **options)
    return settings_from_config(config, rounds, sets=explicit), arms


def settings_from_config(
    config: ExperimentConfig, rounds: int, k: int | None = None, sets: list[list[int]] | None = None
) -> ContinualSettings:
    """Continual settings on a one-shot ``config`` (``k`` per round, default ``config.k``),
    checked now: bad sizes or sets are refused before any work."""
    settings = ContinualSettings(replace(config, k=config.k if k is None else k), check_rounds(rounds), sets)
    settings.sequence(config.seed)
    return settings


# --- round entries ---------------------------------------------------------------------------------
def round_directory(config: ExperimentConfig, arm: Arm, prefix: list[list[int]], root: str | Path | None) -> Path:
    """Where round ``len(prefix)`` of ``arm`` on ``config`` is (or will be) stored."""
    key = config_key({
        "run": run_key(arm_config(config, arm)), "reference": arm.reference, "sets": prefix,
        "continual": CONTINUAL_VERSION,
    })
    name = f"{config.dataset['name']}-{arm.name.replace('@', '-')}-seed{config.seed}-round{len(prefix)}-{key}"
    return store_root(root) / "continual" / name


def load_record(directory: Path) -> RoundRecord | None:
    """The stored round of ``directory``, or ``None`` when it is absent or incomplete."""
    try:
        data = json.loads((directory / "round.json").read_text())
        record = RoundRecord.from_dict(data["record"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if zipfile.is_zipfile(directory / "model.pt") else None


def save_round(directory: Path, record: RoundRecord, model: torch.nn.Module, prefix: list[list[int]]) -> None:
    """Write a round entry all at once (temporary folder, then rename)."""
    with writing(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".partial", dir=directory.parent))
        try:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, partial / "model.pt")
            body = {"record": record.as_dict(), "sets": prefix, "format": CONTINUAL_VERSION}
            (partial / "round.json").write_text(json.dumps(body, indent=1))
            shutil.rmtree(directory, ignore_errors=True)  # a damaged entry
            try:
                os.replace(partial, directory)
            except OSError:
                if load_record(directory) is None:  # not another writer's complete copy
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)


def load_round_model(pieces: Pieces, method: str, directory: Path, t: int) -> torch.nn.Module:
    """The model round ``t`` of ``method`` left, from its entry."""
    model = round_architecture(pieces.original, method, t, pieces.anchors.shape[1])  # type: ignore[arg-type]
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    return frozen(model.to(pieces.config.device))


def sequence_pieces(config: ExperimentConfig, progress: bool = False) -> Pieces:
    """What every round of ``config.seed`` shares (the pretrained model, anchors, probe, ...)."""
    context, _ = prepare_context(config, progress)
    probe = probe_indices(context.dataset.num_train, config.probe_size, config.seed)
    return Pieces(config, context.dataset, context.original, context.anchors, context.projection, probe, context.accel)


@dataclass
class SequenceResult:
    """One arm's sequence for one seed: its rounds, their entries, and which were computed now."""

    arm: str
    seed: int
    records: list[RoundRecord]
    directories: list[Path]
    computed: list[int] = field(default_factory=list)


def run_sequence(
    settings: ContinualSettings,
    arm: Arm,
    seed: int,
    root: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> SequenceResult:
    """Serve the sequence of ``seed`` with ``arm``, reusing every stored round and storing each
    new one as soon as it is complete. ``on_step`` sees every step; raising from it stops the
    sequence, and the round in progress is not stored."""
    config = replace(settings.config, seed=check_seed(seed))
    sets = settings.sequence(seed)
    directories = [round_directory(config, arm, sets[:t], root) for t in range(1, len(sets) + 1)]
    records = [load_record(d) for d in directories]
    result = SequenceResult(arm.name, seed, [], directories)
    if all(r is not None for r in records):
        result.records = [r for r in records if r is not None]
        return result
    with RUNNING:
        pieces = sequence_pieces(config, progress)
        current: torch.nn.Module | None = frozen(copy.deepcopy(pieces.original))
        for t, (directory, record) in enumerate(zip(directories, records), start=1):
            if record is None:
                if current is None:
                    current = load_round_model(pieces, arm.method, directories[t - 2], t - 1)
                current, record = run_round(pieces, arm, sets, t, current, progress, on_step)
                save_round(directory, record, current, sets[:t])
                result.computed.append(t)
            else:
                current = None  # loaded from the entry only if a later round needs it
            result.records.append(record)
    return result


# --- a whole continual run ---------------------------------------------------------------------------
@dataclass
class ContinualRun:
    """Every round of every arm and seed of a continual run, with its settings."""

    settings: dict[str, Any]
    arms: list[str]
    seeds: list[int]
    records: list[RoundRecord]
    entries: dict[str, dict[str, list[str]]]
    computed: int = 0

    @property
    def rounds(self) -> int:
        return int(self.settings["rounds"])

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "arms": self.arms, "seeds": self.seeds, "entries": self.entries,
                "records": [r.as_dict() for r in self.records], "format": CONTINUAL_VERSION}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        columns = [*RoundRecord.__dataclass_fields__, "relapse"]
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        for record in self.records:
            row = record.as_dict()
            row["earlier_forget_acc"] = " ".join(f"{v:.4f}" for v in record.earlier_forget_acc)
            writer.writerow(row)
        return buffer.getvalue()

    def save(self, folder: Path) -> None:
        """``continual.json`` and ``rounds.csv``, each written atomically."""
        atomic_write_bytes(folder / "rounds.csv", self.to_csv().encode())
        atomic_write_bytes(folder / SUMMARY, json.dumps(self.to_json(), indent=1).encode())

    @classmethod
    def load(cls, folder: str | Path) -> "ContinualRun":
        """The continual run saved in ``folder`` (one-line error when there is none)."""
        path = Path(folder) / SUMMARY
        try:
            data = json.loads(path.read_text())
            records = [RoundRecord.from_dict(r) for r in data["records"]]
            return cls(data["settings"], data["arms"], data["seeds"], records, data["entries"])
        except FileNotFoundError:
            raise StakesError(f"{folder} holds no continual run ({SUMMARY} is missing)") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise StakesError(f"{path} is damaged: {error}") from None

    def config(self) -> ExperimentConfig:
        """The base config of the run (the first seed's)."""
        fields = ExperimentConfig.__dataclass_fields__
        return ExperimentConfig(**{key: value for key, value in self.settings.items() if key in fields})


def is_continual_run(folder: str | Path) -> bool:
    """Whether ``folder`` holds a saved continual run."""
    return (Path(folder) / SUMMARY).is_file()


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        return {key: value for name, item in data.items() for key, value in _flat(item, f"{prefix}{name}.").items()}
    return {prefix[:-1]: data}


def settings_difference(stored: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first setting (other than :data:`RESUMABLE`) that differs, as ``name (stored …, now …)``;
    hyperparameters are compared for the methods both runs have."""
    common = set(stored.get("method_configs", {})) & set(wanted.get("method_configs", {}))
    old, new = _flat(stored), _flat(wanted)
    for key in sorted(set(old) | set(new)):
        top = key.split(".")[0]
        if top in RESUMABLE or (top == "method_configs" and key.split(".")[1] not in common):
            continue
        if old.get(key, "(unset)") != new.get(key, "(unset)"):
            return f"{key} (stored {old.get(key, '(unset)')!r}, now {new.get(key, '(unset)')!r})"
    return None


def check_resume(folder: Path, settings: ContinualSettings) -> None:
    """Refuse to resume ``folder`` with settings other than the ones it holds."""
    if not is_continual_run(folder):
        return
    stored = ContinualRun.load(folder).settings
    different = settings_difference(stored, settings.describe())
    if different is not None:
        raise SettingsChangedError(
            f"{folder} holds a sequence with other settings: {different}; use another --out folder or remove it"
        )


def stored_continual(
    settings: ContinualSettings, arms: Sequence[Arm], seeds: Sequence[int], root: str | Path | None = None
) -> ContinualRun | None:
    """The continual run when every round of every arm and seed is stored, else ``None``
    (nothing is computed: what a page shows on a plain rerun)."""
    run = ContinualRun(settings.describe(), [arm.name for arm in arms], list(seeds), [], {})
    for seed in seeds:
        config = replace(settings.config, seed=check_seed(seed))
        sets = settings.sequence(seed)
        for arm in arms:
            directories = [round_directory(config, arm, sets[:t], root) for t in range(1, len(sets) + 1)]
            records = [load_record(d) for d in directories]
            if any(record is None for record in records):
                return None
            run.records.extend(r for r in records if r is not None)
            run.entries.setdefault(arm.name, {})[str(seed)] = [str(d.resolve()) for d in directories]
    return run


def run_continual(
    settings: ContinualSettings,
    arms: Sequence[Arm],
    seeds: Sequence[int],
    out: str | Path | None = None,
    root: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> ContinualRun:
    """Every arm's sequence for every seed (stored rounds reused), saved to ``out`` when given."""
    seeds = [check_seed(seed) for seed in seeds]
    if not seeds:
        raise SequenceError("choose at least one seed")
    for seed in seeds:
        settings.sequence(seed)
    folder = Path(out) if out is not None else None
    if folder is not None:
        check_resume(folder, settings)
    run = ContinualRun(settings.describe(), [arm.name for arm in arms], list(seeds), [], {})
    jobs = [(arm, seed) for seed in seeds for arm in arms]
    for arm, seed in tqdm(jobs, desc="sequences", disable=not progress):
        result = run_sequence(settings, arm, seed, root, progress, on_step)
        run.records.extend(result.records)
        run.entries.setdefault(arm.name, {})[str(seed)] = [str(d.resolve()) for d in result.directories]
        run.computed += len(result.computed)
    if folder is not None:
        run.save(folder)
    return run
