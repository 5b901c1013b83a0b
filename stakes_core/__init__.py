"""stakes: structure-faithful instance unlearning (StructGuard, CVPR 2026) as a tested lab.

The public API, by registry (``list_*`` / ``create_*``) and by task::

    from stakes_core import experiment_config, run_experiment
    result = run_experiment(experiment_config("digits", k=16, seed=0))
    result.method("structguard").metrics   # retain_acc, forget_acc, test_acc, deletion_rate

Plugins (a module or ``.py`` file that registers a method, dataset, encoder, figure or dashboard
page) load with ``load_plugins(["relabel.py"])``, ``stakes --plugin``, the ``STAKES_PLUGINS``
variable or the ``stakes.plugins`` entry points; see ``docs/extending.md``.
"""

from stakes_core.anchors import (
    build_anchors,
    create_encoder,
    list_encoders,
    load_descriptions,
    register_encoder,
)
from stakes_core.data import create_dataset, list_datasets
from stakes_core.infra.plugins import load_plugins
from stakes_core.methods import (
    UnlearningMethod,
    create_method,
    list_methods,
    register_method,
)
from stakes_core.models import create_model, list_models, register_model
from stakes_core.run.config import ExperimentConfig, experiment_config
from stakes_core.run.context import prepare_context
from stakes_core.run.experiment import run_experiment, run_method
from stakes_core.run.presets import list_presets, load_preset
from stakes_core.run.results import MethodResult, RunResult

__version__ = "0.1.0"

__all__ = [
    "ExperimentConfig", "MethodResult", "RunResult", "UnlearningMethod", "build_anchors", "create_dataset",
    "create_encoder", "create_method", "create_model", "experiment_config", "list_datasets", "list_encoders",
    "list_methods", "list_models", "list_presets", "load_descriptions", "load_plugins", "load_preset",
    "prepare_context", "register_encoder", "register_method", "register_model", "run_experiment", "run_method",
]
