"""The Setup page's choices as a URL query string, so a copied link opens the same run.

``?preset=digits&k=8&seed=3&methods=neggrad,structguard&structguard.lr=0.01``: the settings that
define a run, each checked against what the dashboard offers, and every exposed hyperparameter
of a chosen method whose value differs from the preset's (as ``method.name``, the CLI's override
syntax). Pure Python: the dashboard reads ``st.query_params`` through :func:`decode` at start-up
and writes :func:`encode`'s answer back; a parameter it cannot use is ignored and named.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from stakes_core.methods import Hyperparameter, hyperparameters
from stakes_core.run.config import method_hyperparameters

SETTINGS = ("preset", "k", "seed", "methods", "anchors", "encoder", "descriptions", "stop_at", "scratch")
"""The query parameters besides the hyperparameters, in the order they are written."""
MAX_TEXT = 100
"""The longest free-text hyperparameter value a link may set."""


@dataclass(frozen=True)
class UrlChoices:
    """What a link may choose: the Setup page's options and the dashboard's limits (``limits``:
    the upper bound of a whole-number hyperparameter, by name)."""

    presets: Sequence[str]
    methods: Sequence[str]
    encoders: Sequence[str]
    descriptions: Sequence[str]
    anchor_sources: Sequence[str]
    stop_targets: Sequence[str]
    max_k: int
    max_seed: int
    limits: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Decoded:
    """The settings a query string set (keys as in :data:`SETTINGS`, plus ``hyperparameters``:
    ``{"method.name": value}``) and the parameters it ignored, each with why."""

    settings: dict[str, object] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def notice(self) -> str | None:
        """One line naming what was ignored, or ``None`` when nothing was."""
        if not self.ignored:
            return None
        return f"Ignored in the link: {'; '.join(self.ignored)}. The defaults stand in for them."


def key_hyperparameters(method: str) -> list[Hyperparameter]:
    """The hyperparameters of ``method`` the Setup page and a link expose (its config marks them
    ``key``; the rest keep the preset's values)."""
    return [hp for hp in hyperparameters(method) if hp.key]


def preset_hyperparameters(preset: str, method: str) -> dict[str, object]:
    """The key hyperparameters of ``method`` as the preset sets them (method defaults elsewhere)."""
    return dict(_preset_values(preset, method))


@functools.lru_cache(maxsize=256)
def _preset_values(preset: str, method: str) -> tuple[tuple[str, object], ...]:
    """Held once per preset and method: the dashboard asks on every rerun, and reading the preset
    and building the method's config each time cost about 10 ms for the paper's four methods."""
    values = method_hyperparameters(preset, method)
    return tuple((hp.name, values[hp.name]) for hp in key_hyperparameters(method))


def encode(settings: Mapping[str, Any]) -> dict[str, str]:
    """``settings`` (keys as in :data:`SETTINGS` plus ``hyperparameters``) as query strings: the
    methods comma-separated (left out when none is chosen), flags as ``true``/``false``, and only
    the hyperparameters that differ from the preset's values."""
    encoded: dict[str, str] = {}
    for name in SETTINGS:
        if name != "methods":
            encoded[name] = _text(settings[name])
        elif settings[name]:
            encoded[name] = ",".join(settings[name])
    presets: dict[str, dict[str, object]] = {}
    for name, value in settings.get("hyperparameters", {}).items():
        method, _, hp = name.partition(".")
        preset = presets.setdefault(method, preset_hyperparameters(settings["preset"], method))
        if preset.get(hp) != value:
            encoded[name] = _text(value)
    return encoded


def decode(params: Mapping[str, str], choices: UrlChoices) -> Decoded:
    """The settings in ``params`` that ``choices`` allow; each other parameter (unknown, or a
    value that is malformed or out of range) goes to ``ignored`` with the reason."""
    parsers: dict[str, Callable[[str], object]] = {
        "preset": _one_of(choices.presets), "k": _whole(1, choices.max_k), "seed": _whole(0, choices.max_seed),
        "methods": _methods(choices.methods), "anchors": _one_of(choices.anchor_sources),
        "encoder": _one_of(choices.encoders), "descriptions": _one_of(choices.descriptions),
        "stop_at": _one_of(choices.stop_targets), "scratch": _flag,
    }
    decoded = Decoded()
    hyper: dict[str, object] = {}
    for name, value in params.items():
        method, _, hp_name = name.partition(".")
        if name in parsers:
            parse = parsers[name]
        elif method in choices.methods and (hp := _key(method, hp_name)) is not None:
            parse = _hyperparameter_parser(hp, choices.limits.get(hp.name))
        else:
            decoded.ignored.append(f"{_short(name)} (unknown)")
            continue
        try:
            parsed = parse(value)
        except ValueError as error:
            decoded.ignored.append(f"{name}={_short(value)} ({error})")
            continue
        if name in parsers:
            decoded.settings[name] = parsed
        else:
            hyper[name] = parsed
    if hyper:
        decoded.settings["hyperparameters"] = hyper
    return decoded


def _text(value: object) -> str:
    """A value as the query string holds it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _short(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(method: str, name: str) -> Hyperparameter | None:
    return next((hp for hp in key_hyperparameters(method) if hp.name == name), None)


def _one_of(options: Sequence[str]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"not one of {', '.join(options)}" if len(options) <= 8 else "not a known choice")
        return value

    return parse


def _whole(low: int, high: int | None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value) if value.isascii() and value.isdigit() else -1
        if number < low or (high is not None and number > high):
            raise ValueError(f"not a whole number from {low}" + (f" to {high}" if high is not None else " up"))
        return number

    return parse


def _flag(value: str) -> bool:
    if value not in ("true", "false"):
        raise ValueError("not true or false")
    return value == "true"


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number < 0:
        raise ValueError("not a number ≥ 0")
    return number


def _free_text(value: str) -> str:
    if not value or len(value) > MAX_TEXT:
        raise ValueError(f"not a text of 1 to {MAX_TEXT} characters")
    return value


def _methods(options: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [name for name in value.split(",") if name]
        unknown = [name for name in names if name not in options]
        if not names or unknown:
            raise ValueError(f"unknown method {_short(unknown[0])}" if unknown else "no method")
        return list(dict.fromkeys(names))

    return parse


def _hyperparameter_parser(hp: Hyperparameter, limit: int | None) -> Callable[[str], object]:
    """The parser of one hyperparameter's value, by its type: the Setup page's input's range."""
    if hp.choices is not None:
        return _one_of(hp.choices)
    if hp.kind is bool:
        return _flag
    if hp.kind is int:
        return _whole(1 if limit else 0, limit)
    if hp.kind is float:
        return _number
    return _free_text
