"""Run one unlearning experiment end to end: ``run_experiment`` builds the shared context of an
:class:`~stakes_core.run.config.ExperimentConfig`, runs every method on it and returns a
:class:`~stakes_core.run.results.RunResult`. Every method starts from the same pretrained model,
forget set, anchors, projection and probe set, so their structural-collapse curves are
comparable. The summary records where the pretrained model came from and the environment
(:mod:`stakes_core.run.environment`) that, with the config, determines the numbers.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable

from stakes_core.infra.cache import state_sha256
from stakes_core.methods import StepRecord, UnlearnContext, create_method
from stakes_core.metrics.accuracy import accuracy, evaluate
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.context import dataset_with_fingerprint, prepare_context
from stakes_core.run.environment import environment_record
from stakes_core.run.parallel import ResultCallback, check_workers, run_methods
from stakes_core.run.results import MethodResult, RunResult


def stopping_target(
    config: ExperimentConfig, context: UnlearnContext, progress: bool = True,
    on_notice: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Set ``context.stop_target`` from ``config.stop_at`` and say what it is: 0, or the retrained
    model's forget accuracy (retraining first, after ``on_notice`` has heard the cost, unless cached)."""
    needs_retrain = config.stop_at == "retrain" or "retrain" in config.methods
    if needs_retrain and context.retrain is not None and not context.retrain.cached() and on_notice is not None:
        on_notice(context.retrain.cost_line())
    if config.stop_at == "zero":
        return {"at": "zero", "target": 0.0}
    assert context.retrain is not None
    model = context.retrain.model(progress).model.to(context.device)
    context.stop_target = accuracy(model.eval(), context.forget_images, context.forget_labels, device=context.device)
    return {"at": "retrain", "target": context.stop_target}


def run_method(
    context: UnlearnContext,
    name: str,
    hyperparameters: dict[str, Any] | None = None,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> MethodResult:
    """Run one method on a prepared context and measure the model it leaves."""
    method = create_method(name, **(hyperparameters or {}))
    outcome = method.run(context, on_step)
    metrics = evaluate(outcome.model, context.dataset, context.forget_idx, device=context.device)
    return MethodResult(
        name, outcome.config, metrics, outcome.steps, outcome.epochs, outcome.timings, outcome.reached_zero,
        outcome.records, stop_target=context.stop_target, data_access=method.data_access,
    )


def run_experiment(
    config: ExperimentConfig,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
    workers: int | None = None,
    on_result: ResultCallback | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> RunResult:
    """Unlearn ``config.k`` seeded training instances with every method of ``config``;
    ``workers`` methods at once (default: one per CPU thread, :mod:`stakes_core.run.parallel`;
    1 runs them one after another). ``on_step`` sees every step record and ``on_result`` each
    method's result as it finishes, both in the caller's thread; ``on_notice`` hears, before it
    starts, what a retrain this run needs will cost."""
    context, pretrained = prepare_context(config, progress)
    stop = stopping_target(config, context, progress, on_notice)
    methods = {name: config.method_configs.get(name, {}) for name in config.methods}
    workers = check_workers(workers, len(methods), context.device)
    results = run_methods(context, methods, run_method, on_step, on_result, workers)
    dataset, fingerprint = dataset_with_fingerprint(config)
    return RunResult(
        config=asdict(config),
        dataset={"name": dataset.name, "classes": dataset.classes, "num_train": dataset.num_train,
                 "num_test": int(dataset.test_labels.numel()), "image_shape": list(dataset.image_shape),
                 "train_sha256": fingerprint["train_sha256"]},
        original=evaluate(context.original, dataset, context.forget_idx, device=context.device),
        pretrained={"test_acc": pretrained.test_acc, "seconds": pretrained.seconds, "source": pretrained.source,
                    "state_sha256": state_sha256(pretrained.model.state_dict())},
        forget_indices=context.forget_idx.tolist(),
        probe_indices=[] if context.probe_idx is None else context.probe_idx.tolist(),
        methods=results,
        environment=environment_record(context.device, config.methods, pretrained.source, workers),
        stop=stop,
        models={name: model.cpu() for name, model in context.unlearned.items()},
    )
