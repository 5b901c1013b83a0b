"""The errors that are the user's to fix, as opposed to bugs.

The command line prints a :class:`StakesError` as one ``stakes: error: …`` line (exit status 2)
and the dashboard shows it in the page; any other exception is a bug (ours or in a user's
plugin) and keeps its traceback. Each error class of the library subclasses
:class:`StakesError` and keeps its older base (``ValueError``, ``FileNotFoundError``, …), so
code that catches those still catches it.
"""

from __future__ import annotations


class StakesError(Exception):
    """Something the user can fix (a name, a value, a file, missing data); the message says what."""


class ConfigError(StakesError, ValueError):
    """A setting, name or value the user gave that cannot be used (a ``ValueError`` too, for
    callers that catch that)."""
