"""What data a method reads: the column every table shows and the dashboard's "retain-free only" filter.

The paper's instance-wise protocol gives a method the forget set D_f and nothing else (the
proxy set it builds from D_f is its own). The field's references break that rule on purpose,
and say so: they read the retained training images D_r, or retrain on them from scratch.

- ``forget``: D_f only (retain-free; the paper's protocol),
- ``retain``: D_f and D_r (a reference the protocol forbids, labelled "uses D_r"),
- ``retrain``: trains a new model on D_r from scratch (the field's gold reference).

A method reads D_r only through :meth:`~stakes_core.methods.context.UnlearnContext.retained`,
which refuses a method declared ``forget``; the tests also hand retain-free methods a dataset
whose retained images raise on access.
"""

from __future__ import annotations

from stakes_core.infra.errors import ConfigError

DATA_ACCESS: dict[str, str] = {
    "forget": "D_f only",
    "retain": "D_f + D_r",
    "retrain": "retrains on D_r",
}
"""Every kind of data access, with the label tables and the dashboard show."""


class RetainAccessError(ConfigError):
    """A method declared retain-free asked for the retained images, or a retain-free request named a
    method that needs them."""


def check_data_access(value: str, method: str = "method") -> str:
    """``value`` if it is a kind of :data:`DATA_ACCESS`, else a one-line error."""
    if value not in DATA_ACCESS:
        raise ConfigError(f"{method} declares data_access={value!r}: choose one of {', '.join(DATA_ACCESS)}")
    return value


def access_label(value: str) -> str:
    """The words for a kind of access (``D_f only``, ``D_f + D_r``, ``retrains on D_r``)."""
    return DATA_ACCESS.get(value, value)


def is_retain_free(value: str) -> bool:
    """Whether a method with this access keeps to the paper's protocol (reads D_f only)."""
    return value == "forget"
