"""Unlearning methods by name: ``create_method``, ``list_methods``, ``register_method``.

Each method lives in its own file over :class:`~stakes_core.methods.base.UnlearningMethod`;
a user's own method is a subclass registered from outside the package::

    @register_method
    class MyMethod(UnlearningMethod):
        name = "mine"
        ...
"""

from __future__ import annotations

from typing import Any

from stakes_core.infra.registry import Registry
from stakes_core.methods.adv import Adv, ProxyConfig
from stakes_core.methods.base import (
    MethodConfig,
    MethodOutcome,
    StepRecord,
    UnlearnContext,
    UnlearningMethod,
    build_proxy_set,
)
from stakes_core.methods.l2ul import L2UL, L2ULConfig
from stakes_core.methods.neggrad import NegGrad, SGDMethodConfig
from stakes_core.methods.oracle import Oracle
from stakes_core.methods.structguard import (
    ProjectedClassifier,
    Projector,
    StructGuard,
    StructGuardConfig,
)

METHODS: Registry[type[UnlearningMethod]] = Registry("method")

#: The paper's methods in the order they are run and tabulated (l2ul before structguard, whose
#: ``proxy_source="l2ul"`` option needs it).
PAPER_METHODS = ("neggrad", "adv", "l2ul", "structguard")


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Register a method class under its ``name`` (usable as a decorator)."""
    METHODS.register(cls.name, cls)
    return cls


for _cls in (NegGrad, Adv, L2UL, StructGuard, Oracle):
    register_method(_cls)


def create_method(name: str, **overrides: Any) -> UnlearningMethod:
    """A method with its default hyperparameters, changed by ``overrides``."""
    return METHODS.get(name)(**overrides)


def list_methods() -> list[str]:
    return METHODS.names()


__all__ = [
    "Adv", "L2UL", "L2ULConfig", "METHODS", "MethodConfig", "MethodOutcome", "NegGrad", "Oracle",
    "PAPER_METHODS", "ProjectedClassifier", "Projector", "ProxyConfig", "SGDMethodConfig", "StepRecord",
    "StructGuard", "StructGuardConfig", "UnlearnContext", "UnlearningMethod", "build_proxy_set",
    "create_method", "list_methods", "register_method",
]
