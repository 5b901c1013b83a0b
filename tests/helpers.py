"""The suite's tiny data, models and contexts, which live in :mod:`stakes_core.testing` (public, so
plugin authors test the same way); the tests import them from here or from there. Also the short
digits run that the analysis tests share."""

from __future__ import annotations

from pathlib import Path

from stakes_core.run.config import experiment_config
from stakes_core.run.experiment import run_experiment
from stakes_core.testing import tiny_context, tiny_dataset, tiny_model

__all__ = ["SHORT_RUN_METHODS", "save_short_digits_run", "tiny_context", "tiny_dataset", "tiny_model"]

SHORT_RUN_METHODS = ["neggrad", "structguard"]


def save_short_digits_run(root: Path) -> Path:
    """A short digits run (k=4, seed 0, NegGrad and StructGuard two epochs each) saved with its
    models under ``root/digits/k4/seed0``; returns that directory."""
    config = experiment_config(
        "digits", k=4, seed=0, methods=SHORT_RUN_METHODS, device="cpu",
        overrides=["neggrad.max_epochs=2", "structguard.max_epochs=2", "structguard.stop_from_epoch=0"],
    )
    directory = root / "digits" / "k4" / "seed0"
    run_experiment(config, progress=False).save(directory)
    return directory
