"""The per-step record of an unlearning run, as kept in memory and written to ``steps.csv``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class StepRecord:
    """What was measured right after one unlearning step (step 0 is the original model).

    ``views`` holds the structural collapse per structure view the method records: ``"backbone"``
    (the shared ``g(x)``, every method) and any of the method's own (StructGuard's
    ``"projector"``); NaN on a step whose collapse was not measured."""

    step: int
    epoch: int
    forget_acc: float
    views: dict[str, float]
    loss: float
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)

    @property
    def collapse(self) -> float:
        """Collapse of the backbone view, the one every method has."""
        return self.views.get("backbone", math.nan)
