"""Errors raised by the dataset loaders, kept apart so every loader can import them."""

from __future__ import annotations

from stakes_core.infra.errors import StakesError


class DatasetNotFoundError(StakesError, FileNotFoundError):
    """The dataset's files are missing or fail their integrity check; the message says
    where the loader looked and how to get the data."""


class DatasetFormatError(StakesError, ValueError):
    """The dataset's files exist but are not laid out or encoded as the loader expects."""
