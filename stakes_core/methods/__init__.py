"""Unlearning methods by name: ``create_method``, ``list_methods``, ``register_method``,
``hyperparameters``.

Each method lives in its own file over :class:`~stakes_core.methods.base.UnlearningMethod`;
a user's own method is a subclass registered from outside the package, built from the pieces
this package exports::

    @register_method
    class MyMethod(UnlearningMethod[ProxyConfig]):
        name = "mine"
        config_class = ProxyConfig
        ...
"""

from __future__ import annotations

from typing import Any

from stakes_core.infra.modules import eval_mode
from stakes_core.infra.registry import Registry
from stakes_core.methods.adv import Adv
from stakes_core.methods.base import LOOP_VERSION, MethodOutcome, StepCallback, UnlearningMethod
from stakes_core.methods.boundary_shrink import BoundaryShrink
from stakes_core.methods.config import (
    Hyperparameter,
    MethodConfig,
    ProxyConfig,
    SGDMethodConfig,
    describe,
    hyperparameter,
    new_default,
)
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.finetune import Finetune
from stakes_core.methods.l1_sparse import L1Sparse, L1SparseRetain
from stakes_core.methods.l2ul import L2UL, L2ULConfig
from stakes_core.methods.neggrad import NegGrad
from stakes_core.methods.oracle import Oracle
from stakes_core.methods.projector import ProjectedClassifier, Projector
from stakes_core.methods.proxy import build_proxy_set
from stakes_core.methods.random_label import RandomLabel, RandomLabelDR
from stakes_core.methods.retrain import Retrain
from stakes_core.methods.salun import SalUn, SalUnDR
from stakes_core.methods.scrub import SCRUB
from stakes_core.methods.ssd import SSD, SSDRetain
from stakes_core.methods.structguard import StructGuard, StructGuardConfig
from stakes_core.methods.timing import Timer
from stakes_core.methods.training import (
    distance_penalty,
    forget_and_proxy_loss,
    forget_batches,
    paired_with_forget,
    sgd_for,
    trainable_copy,
)
from stakes_core.metrics.records import StepRecord

METHODS: Registry[type[UnlearningMethod]] = Registry("method")

#: The paper's methods in the order they are run and tabulated (l2ul before structguard, whose
#: ``proxy_source="l2ul"`` option needs it).
PAPER_METHODS = ("neggrad", "adv", "l2ul", "structguard")


def register_method(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Register a method class under its ``name`` (usable as a decorator)."""
    METHODS.register(cls.name, cls)
    return cls


for _cls in (NegGrad, Adv, L2UL, StructGuard, Oracle, Retrain, Finetune, RandomLabel, RandomLabelDR, SalUn, SalUnDR,
             BoundaryShrink, SCRUB, L1Sparse, L1SparseRetain, SSD, SSDRetain):
    register_method(_cls)


def create_method(name: str, **overrides: Any) -> UnlearningMethod:
    """A method with its default hyperparameters, changed by ``overrides``."""
    return METHODS.get(name)(**overrides)


def list_methods() -> list[str]:
    """The names of all registered methods, sorted."""
    return METHODS.names()


def hyperparameters(method_name: str) -> list[Hyperparameter]:
    """Every hyperparameter of a registered method, in its config's field order, with its
    default, type, one-line help, dashboard flag and choices."""
    return describe(METHODS.get(method_name).config_class)


__all__ = [
    "BoundaryShrink", "Finetune", "RandomLabel", "RandomLabelDR", "SalUn", "SalUnDR",
    "L1Sparse", "L1SparseRetain", "SCRUB", "SSD", "SSDRetain",
    "Adv", "Hyperparameter", "L2UL", "L2ULConfig", "LOOP_VERSION", "METHODS", "MethodConfig", "MethodOutcome",
    "NegGrad", "Oracle", "PAPER_METHODS",
    "Retrain", "ProjectedClassifier", "Projector", "ProxyConfig", "SGDMethodConfig",
    "StepCallback", "StepRecord", "StructGuard", "StructGuardConfig", "Timer", "UnlearnContext", "UnlearningMethod",
    "build_proxy_set", "create_method", "distance_penalty", "eval_mode", "forget_and_proxy_loss", "forget_batches",
    "hyperparameter", "hyperparameters", "list_methods", "new_default", "paired_with_forget", "register_method",
    "sgd_for", "trainable_copy",
]
