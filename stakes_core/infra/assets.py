"""Locate the small data files the project ships in ``assets/`` (descriptions, presets).

``assets/`` is installed as the resource package ``stakes_assets`` (see ``pyproject.toml``),
so the same lookup works from a source checkout, an editable install and a wheel.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from stakes_core.infra.errors import StakesError


class AssetNotFoundError(StakesError, FileNotFoundError):
    """A file that should ship with stakes is missing: the installation is incomplete."""


def asset_path(*parts: str) -> Path:
    """Path of a shipped asset, e.g. ``asset_path("descriptions", "digits.json")``."""
    path = Path(str(resources.files("stakes_assets").joinpath(*parts)))
    if not path.exists():
        raise AssetNotFoundError(f"shipped asset {'/'.join(parts)} is missing from this installation")
    return path


def list_assets(folder: str, suffix: str = ".json") -> list[str]:
    """Stem names of the shipped assets in ``folder`` with the given suffix."""
    directory = Path(str(resources.files("stakes_assets").joinpath(folder)))
    return sorted(p.stem for p in directory.glob(f"*{suffix}"))
