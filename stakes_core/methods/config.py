"""The hyperparameters of the methods, with their meaning as data.

Every field of a method's config is declared with :func:`hyperparameter`, whose one-line
``help`` says what the value means, what raising it does and its unit, and whose ``key``
marks the few the dashboard exposes. :func:`describe` turns a config class into
:class:`Hyperparameter` rows, so the command line, the dashboard and the docs read one source.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.attacks import PGDConfig


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a method: its default, type, one-line help, whether the dashboard
    exposes it (``key``) and, for a string option, the values it accepts (``choices``)."""

    name: str
    default: Any
    kind: type
    help: str
    key: bool
    choices: tuple[str, ...] | None = None


def hyperparameter(
    default: Any, help: str, key: bool = False, choices: tuple[str, ...] | None = None, added: bool = False
) -> Any:
    """A config field with its help line, dashboard flag and allowed values in its metadata.

    ``added`` marks a hyperparameter added after runs were stored: at its default it is left out
    of run keys (:func:`keyed_values`), so those runs keep their keys."""
    metadata = {"help": help, "key": key, "choices": choices, "added": added}
    return dataclasses.field(default=default, metadata=metadata)


def keyed_values(config: Any) -> dict[str, Any]:
    """The hyperparameters of ``config`` that identify a run: every field, except an ``added``
    one left at its default."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if not (f.metadata.get("added") and getattr(config, f.name) == f.default)
    }


def new_default(config_class: type, name: str, default: Any) -> Any:
    """The field ``name`` of ``config_class`` with another default and the same metadata (for a
    subclass whose method starts from a different value)."""
    metadata = next(f.metadata for f in dataclasses.fields(config_class) if f.name == name)
    return dataclasses.field(default=default, metadata=metadata)


def describe(config_class: type) -> list[Hyperparameter]:
    """The :class:`Hyperparameter` rows of a config class, in field order."""
    kinds = typing.get_type_hints(config_class)
    return [
        Hyperparameter(
            f.name, f.default, kinds[f.name], f.metadata.get("help", ""), bool(f.metadata.get("key", False)),
            f.metadata.get("choices"),
        )
        for f in dataclasses.fields(config_class)
    ]


def checked_overrides(method: str, config: Any, overrides: dict[str, Any]) -> Any:
    """``config`` with ``overrides`` applied, each in the type of its field's default and among
    its choices, or a :class:`ConfigError` now rather than a crash in the middle of a run."""
    known = {f.name: f for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"{method} has no hyperparameter {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values = {key: _checked_value(method, key, value, getattr(config, key)) for key, value in overrides.items()}
    config = dataclasses.replace(config, **values) if values else config
    for name, spec in known.items():
        choices = spec.metadata.get("choices")
        if choices is not None and getattr(config, name) not in choices:
            raise ConfigError(f"{method} {name}='{getattr(config, name)}' is not one of {', '.join(choices)}")
    return config


def _checked_value(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the hyperparameter's default (an int is a valid float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    elif default is None:
        return value
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(default), "valid")
    raise ConfigError(f"{method}.{key} must be {kind}, got {value!r}")


@dataclass
class MethodConfig:
    """Hyperparameters every method has (the paper runs 101 epochs: ``range(0, max_iter + 1)``
    with max_iter 100)."""

    lr: float = hyperparameter(
        1e-3, "SGD learning rate of backbone and head; higher forgets in fewer steps but moves retained instances more"
        "; unit: none (a step-size multiplier)",
        key=True,
    )
    batch_size: int = hyperparameter(
        128, "images per batch of the forget set (and of the proxy or retain set); larger = fewer, smoother steps; "
        "unit: images"
    )
    max_epochs: int = hyperparameter(
        101, "cap on passes over the forget set (the paper: 101; the dashboard allows at most 101); higher lets a slow "
        "method keep going; unit: epochs", key=True
    )
    stop_from_epoch: int = hyperparameter(
        0, "first epoch in which forget accuracy 0 may stop the run; higher forces more epochs; unit: epochs, counted "
        "from 0"
    )
    bn_stats: str = hyperparameter(
        "train",
        "batch norm of the unlearned backbone during the steps: train (the paper: batch statistics, running "
        "statistics updated by every forward pass) or frozen (eval mode: the stored statistics, never updated); "
        "unit: a choice",
        choices=("train", "frozen"),
    )


@dataclass
class SGDMethodConfig(MethodConfig):
    """The baselines' optimiser: SGD with momentum and weight decay."""

    momentum: float = hyperparameter(
        0.9, "SGD momentum; higher carries more of the previous steps into each; unit: fraction, 0 to 1"
    )
    weight_decay: float = hyperparameter(
        1e-4, "SGD L2 weight decay; higher pulls all weights towards 0; unit: per step, multiplied by lr"
    )


@dataclass
class ProxyConfig(SGDMethodConfig):
    """The proxy set of targeted L2-PGD examples that stands in for the retain set."""

    n_adv: int = hyperparameter(
        20,
        "targeted adversarial examples made per forgotten image for the proxy set (the dashboard allows at most 50); "
        "more = a better retain stand-in, slower setup; unit: images per forgotten image",
        key=True,
    )
    pgd_eps: float = hyperparameter(
        4.0, "L2 radius of the PGD attack; larger = proxies further from the forget images; unit: L2 norm of "
        "normalised pixels",
        key=True,
    )
    pgd_step: float = hyperparameter(
        0.1, "L2 length of one PGD step; larger reaches the radius in fewer iterations; unit: L2 norm of normalised "
        "pixels"
    )
    pgd_iterations: int = hyperparameter(
        100, "PGD steps per attack; more = stronger proxies (more reach their target), slower setup; unit: steps"
    )
    target_rule: str = hyperparameter(
        "uniform_other",
        "how attack targets are drawn: uniform_other (any other class, the paper), authors "
        "(collisions go to class C//2, Q5) or semantic (class j with probability ∝ exp(cos(a_y, a_j)/target_tau): "
        "towards the classes whose anchors are nearest); unit: a choice",
        key=True,
        choices=("uniform_other", "authors", "semantic"),
    )
    target_tau: float = hyperparameter(
        0.1,
        "temperature of the semantic target rule; lower sends more targets to the nearest anchor's class, higher "
        "approaches uniform; unit: cosine units",
        added=True,
    )

    def __post_init__(self) -> None:
        if self.target_tau <= 0:
            raise ConfigError(f"target_tau must be > 0 (a temperature), got {self.target_tau}")

    @property
    def pgd(self) -> PGDConfig:
        return PGDConfig(self.pgd_eps, self.pgd_step, self.pgd_iterations)
