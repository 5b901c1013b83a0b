"""Dataset presets as data: the paper's hyperparameters per setting live in ``assets/presets``.

A preset names the dataset, the backbone and its pretraining, the anchors (encoder and
descriptions), the forget-set sizes and every method's hyperparameters. Users pass a shipped
name (``digits``, ``cifar10``, ``cifar100``) or the path of their own JSON file.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from stakes_core.infra.assets import asset_path, list_assets
from stakes_core.infra.errors import StakesError
from stakes_core.models.pretrain import PretrainConfig

REQUIRED_KEYS = ("dataset", "pretrain", "anchors", "k", "methods")


class PresetError(StakesError, ValueError):
    """A preset that cannot be used, with a one-line reason."""


def list_presets() -> list[str]:
    return list_assets("presets")


def load_preset(source: str | Path) -> dict[str, Any]:
    """The preset named ``source`` (a shipped name or a JSON path), validated."""
    if isinstance(source, str) and source in list_presets():
        path = asset_path("presets", f"{source}.json")
    else:
        path = Path(source)
        if not path.is_file():
            choices = ", ".join(list_presets())
            raise PresetError(f"unknown preset '{source}' (choose from {choices} or give a JSON file)")
    try:
        preset = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise PresetError(f"preset {path} is not valid JSON: {error}") from None
    if not isinstance(preset, dict):
        raise PresetError(f"preset {path} must be a JSON object, not {type(preset).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in preset]
    if missing:
        raise PresetError(f"preset {path} lacks {', '.join(missing)}")
    check_pretrain(preset["pretrain"], path)
    return preset


def check_pretrain(pretrain: object, path: Path) -> None:
    """Refuse a ``pretrain`` section that :class:`PretrainConfig` cannot take."""
    known = ", ".join(sorted(f.name for f in fields(PretrainConfig)))
    if not isinstance(pretrain, dict):
        raise PresetError(f"preset {path}: 'pretrain' must be an object with {known}")
    unknown = sorted(set(pretrain) - {f.name for f in fields(PretrainConfig)})
    if unknown:
        raise PresetError(f"preset {path}: unknown pretrain key(s) {', '.join(unknown)} (known: {known})")
    missing = [key for key in ("model", "epochs") if key not in pretrain]
    if missing:
        raise PresetError(f"preset {path}: pretrain lacks {', '.join(missing)}")
