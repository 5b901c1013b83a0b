"""A sweep's spec: the values of each field and hyperparameter, from the command line or a
YAML/TOML file, checked as they are read.

Every field of :data:`FIELDS` is an axis when it has several values and fixed when it has one;
``METHOD.KEY`` names a hyperparameter of one method. A spec file (``.yaml``, ``.yml``,
``.json`` or ``.toml``) holds the same names::

    preset: digits
    k: [4, 8, 16]
    seeds: 0-9                    # a range, a number or a list
    methods: [neggrad, adv, l2ul, structguard]
    set:
      structguard.align_weight: [0.5, 1, 2]
    store: runs/grid              # the run store (relative to this file); default: the cache's

Every problem is one line that names the file and line, or the option, and the problem.
:mod:`stakes_core.run.sweep` turns a spec into its cells.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stakes_core.infra.errors import ConfigError
from stakes_core.methods import PAPER_METHODS


class SweepError(ConfigError):
    """A sweep that cannot be built: an unknown axis or field, an empty grid, a malformed file."""


@dataclass(frozen=True)
class Field:
    """One configuration field a sweep can vary: its kind (``int``, ``bool`` or ``str``) and help."""

    kind: type
    help: str


FIELDS: dict[str, Field] = {
    "preset": Field(str, "shipped preset name or JSON file"),
    "k": Field(int, "forget-set size"),
    "seed": Field(int, "seed of the forget set, the probe set and the methods"),
    "method": Field(str, "unlearning method (each cell runs one)"),
    "encoder": Field(str, "anchor encoder: minilm, clip:ARCH/PRETRAINED, random:DIM"),
    "descriptions": Field(str, "shipped description set or a JSON file"),
    "anchors": Field(str, "anchor source: text, permuted, rotated, random or prototypes"),
    "precision": Field(str, "fp32 or bf16"),
    "channels_last": Field(bool, "NHWC memory layout"),
    "from_scratch": Field(bool, "pretrain here instead of loading the shipped checkpoint"),
    "pretrain_epochs": Field(int, "pretraining epochs (with from_scratch)"),
    "probe_size": Field(int, "retained images of the structure probe"),
    "record_every": Field(int, "record the curves every n steps"),
    "device": Field(str, "cpu, cuda, cuda:N or mps (auto: where the sweep starts)"),
    "data_root": Field(str, "where the dataset lives (CIFAR, imagefolder)"),
}
"""Every field a sweep can set or vary, in the order cells are listed."""
ALIASES = {"seeds": "seed", "methods": "method"}
"""Plural spellings accepted for the same fields (``--seeds``, ``methods:`` in a file)."""
DEFAULTS: dict[str, list[Any]] = {"preset": ["digits"], "seed": [0], "method": list(PAPER_METHODS)}
"""What a field is when the sweep does not say; ``k`` defaults to the preset's own list."""
OPTIONS = {"seed": "--seeds", "method": "--methods"}
"""The command-line options of fields whose option is not ``--<field>``."""
RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


@dataclass
class SweepSpec:
    """A grid as given: values per field and per ``METHOD.KEY`` hyperparameter (one value is a
    fixed setting, several an axis), the run store, and where each name was given
    (``origin[name]``: ``"sweep.yaml line 4"`` or ``"--set structguard.lr"``) for messages."""

    fields: dict[str, list[Any]] = field(default_factory=dict)
    hyperparameters: dict[str, list[Any]] = field(default_factory=dict)
    store: Path | None = None
    origin: dict[str, str] = field(default_factory=dict)
    source: str = "the command line"

    def where(self, name: str) -> str:
        """Where ``name`` was given, as the start of a message."""
        return self.origin.get(name, self.source)


def canonical_name(name: str, where: str) -> str:
    """A field name (plural spellings mapped) or ``METHOD.KEY``; anything else is refused."""
    name = ALIASES.get(name, name)
    if name in FIELDS or ("." in name and all(name.split(".", 1))):
        return name
    known = ", ".join([*FIELDS, *ALIASES])
    raise SweepError(
        f"{where}: unknown axis or field '{name}' (known: {known}; a method's hyperparameter is METHOD.KEY)"
    )


def parse_ints(raw: Any, name: str, where: str) -> list[int]:
    """Whole numbers from a number, a ``"0-9"`` range, a comma list or a list of any of these."""
    items = raw if isinstance(raw, list) else [raw]
    values: list[int] = []
    for item in items:
        if isinstance(item, bool):
            raise SweepError(f"{where}: {name} must be whole numbers, got {item!r}")
        if isinstance(item, int):
            values.append(item)
            continue
        for part in str(item).split(","):
            found = RANGE.match(part)
            if found:
                low, high = int(found[1]), int(found[2])
                if high < low:
                    raise SweepError(f"{where}: the {name} range '{part.strip()}' is empty (write low-high)")
                values.extend(range(low, high + 1))
            elif part.strip().lstrip("-").isdigit():
                values.append(int(part))
            else:
                raise SweepError(f"{where}: {name} must be whole numbers or ranges like 0-9, got {part.strip()!r}")
    return values


def parse_values(name: str, raw: Any, where: str) -> list[Any]:
    """The values of field or hyperparameter ``name`` given as ``raw`` (a scalar or a list;
    from the command line a comma-separated string), checked to be a non-empty list."""
    if name in FIELDS and FIELDS[name].kind is int:
        values: list[Any] = parse_ints(raw, name, where)
    elif isinstance(raw, list):
        values = list(raw)
    elif isinstance(raw, str) and name != "preset":  # a preset path may hold commas
        values = [json_or_text(part) for part in raw.split(",")]
    else:
        values = [raw]
    if not values:
        raise SweepError(f"{where}: {name} has no values, so the grid has no cells")
    if name in FIELDS and FIELDS[name].kind is bool:
        bad = [value for value in values if not isinstance(value, bool)]
        if bad:
            raise SweepError(f"{where}: {name} must be true or false, got {bad[0]!r}")
    elif name in FIELDS and FIELDS[name].kind is str:
        bad = [value for value in values if not isinstance(value, str) or not value]
        if bad:
            raise SweepError(f"{where}: {name} must be names, got {bad[0]!r}")
    repeated = sorted({str(value) for value in values if values.count(value) > 1})
    if repeated:
        raise SweepError(f"{where}: {name} lists {', '.join(repeated)} more than once")
    return values


def json_or_text(text: str) -> Any:
    """``"0.5"`` → 0.5, ``"true"`` → True, anything that is not JSON stays text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip()


def spec_from_arguments(values: dict[str, Any], sets: list[str], base: SweepSpec | None = None) -> SweepSpec:
    """A spec from command-line values (``{"k": ["4", "8"], "seed": ["0-9"], ...}``; ``None``
    for options not given) and ``--set NAME=V1,V2`` texts, on top of ``base`` (a spec file)."""
    spec = base or SweepSpec()
    for name, raw in values.items():
        if raw is None:
            continue
        where = OPTIONS.get(name, f"--{name.replace('_', '-')}")
        spec.fields[name] = parse_values(name, raw, where)
        spec.origin[name] = where
    for text in sets:
        target, equals, raw = text.partition("=")
        where = f"--set {target.strip()}"
        if not equals or not target.strip() or not raw.strip():
            raise SweepError(f"{where}: write NAME=VALUE or NAME=V1,V2,... (NAME a field or METHOD.KEY), got {text!r}")
        name = canonical_name(target.strip(), where)
        add_values(spec, name, parse_values(name, raw.strip(), where), where)
    return spec


def add_values(spec: SweepSpec, name: str, values: list[Any], where: str) -> None:
    """Put the values of ``name`` (a field or ``METHOD.KEY``) into ``spec``."""
    (spec.fields if name in FIELDS else spec.hyperparameters)[name] = values
    spec.origin[name] = where


# --- spec files -------------------------------------------------------------------------------


def load_spec(path: str | Path) -> SweepSpec:
    """The spec in a ``.yaml``/``.yml``/``.json`` or ``.toml`` file; a malformed file, an unknown
    name or a bad value is one :class:`SweepError` naming the file, the line and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepError(f"sweep spec {path} does not exist") from None
    except (OSError, ValueError) as error:
        raise SweepError(f"sweep spec {path} cannot be read: {error}") from None
    data = parse_toml(path, text) if path.suffix == ".toml" else parse_yaml(path, text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SweepError(f"{path} line 1: a sweep spec is a mapping of names to values, not a {type(data).__name__}")
    spec = SweepSpec(source=str(path))
    for key, raw in data.items():
        where = f"{path} line {line_of(text, str(key))}"
        if key == "store":
            if not isinstance(raw, str) or not raw:
                raise SweepError(f"{where}: store must be a folder path, got {raw!r}")
            spec.store = (path.parent / raw).resolve()
        elif key == "set":
            if not isinstance(raw, dict):
                raise SweepError(f"{where}: set must map METHOD.KEY to a value or a list of values")
            for name, values in flat_hyperparameters(raw):
                line = line_of(text, name)  # "sg.lr:" in YAML; "lr =" under [set.sg] or "sg.lr =" in TOML
                here = f"{path} line {line if line != '?' else line_of(text, name.rpartition('.')[2])}"
                if "." not in name or not all(name.split(".", 1)):
                    raise SweepError(f"{here}: set.{name} is not a METHOD.KEY hyperparameter")
                add_values(spec, name, parse_values(name, values, here), here)
        else:
            name = canonical_name(str(key), where)
            if "." in name:
                raise SweepError(f"{where}: put the hyperparameter {name} under set:")
            add_values(spec, name, parse_values(name, raw, where), where)
    return spec


def parse_yaml(path: Path, text: str) -> Any:
    """YAML (and so JSON), with a parse error as the line and the problem."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise SweepError(f"{path}{line}: malformed YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: malformed YAML: {error}") from None


def parse_toml(path: Path, text: str) -> Any:
    """TOML (Python's ``tomllib``, 3.11+), with a parse error as the line and the problem."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise SweepError(f"{path}: TOML spec files need Python 3.11 or later; write it as YAML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+), column \d+\)", str(error))
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error)) or "invalid TOML"
        raise SweepError(f"{path} line {found[1] if found else '?'}: malformed TOML: {problem}") from None


def flat_hyperparameters(section: dict[str, Any]) -> list[tuple[str, Any]]:
    """``{"sg.lr": [..]}`` and the nested ``{"sg": {"lr": [..]}}`` (TOML's dotted keys) alike."""
    found: list[tuple[str, Any]] = []
    for key, value in section.items():
        if isinstance(value, dict):
            found += [(f"{key}.{inner}", values) for inner, values in value.items()]
        else:
            found.append((str(key), value))
    return found


def line_of(text: str, key: str) -> str:
    """The first line of ``text`` that sets ``key`` (``key:`` or ``key =``, quoted or not)."""
    pattern = re.compile(rf"""^\s*(?:["']?{re.escape(key)}["']?|{re.escape(key)})\s*[:=]""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return str(number)
    return "?"
