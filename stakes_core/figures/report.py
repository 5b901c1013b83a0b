"""Every figure of one or several saved runs, written to disk (``stakes figures RUN_DIR``).

Figures across runs (collapse curves, collapse against trade-off) use every run found under the
path; the per-model analyses (affinities, embedding, per-class accuracy and prediction matrices,
layer-wise CKA, Grad-CAM, retrieval, privacy, the loss attack), the anchors' agreement with the
original model and every figure registered with :func:`~stakes_core.figures.registry.register_figure`
run for each run whose unlearned models were saved. Timings and the numbers behind the bar charts
go to ``analysis.json`` beside each run's figures.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import plotly.graph_objects as go
from tqdm.auto import tqdm

from stakes_core.analysis import (
    AnalysisError,
    Instances,
    LoadedRun,
    affinity_view,
    collapse_curves,
    embedding_view,
    load_run,
    tradeoff_points,
)
from stakes_core.analysis.anchor_agreement import anchor_model_agreement
from stakes_core.analysis.changes import per_class_accuracy, prediction_matrices
from stakes_core.analysis.cka import layer_cka
from stakes_core.analysis.gradcam import gradcam_view
from stakes_core.analysis.membership import loss_attack_view
from stakes_core.analysis.privacy import privacy_view
from stakes_core.analysis.retrieval import retrieval_images, retrieval_view
from stakes_core.anchors.build import anchor_similarity
from stakes_core.figures.anchor_agreement import anchor_agreement_figure
from stakes_core.figures.changes import per_class_accuracy_figure, prediction_matrices_figure
from stakes_core.figures.cka import layer_cka_figure
from stakes_core.figures.curves import collapse_curves_figure, collapse_tradeoff_figure
from stakes_core.figures.embedding import embedding_figure
from stakes_core.figures.export import save_figures
from stakes_core.figures.grids import gradcam_grid_figure, retrieval_grid_figure
from stakes_core.figures.heatmaps import affinity_heatmaps_figure, anchor_similarity_figure
from stakes_core.figures.membership import loss_attack_figure
from stakes_core.figures.metrics import privacy_figure, retrieval_metrics_figure
from stakes_core.figures.registry import FIGURES
from stakes_core.infra.errors import ConfigError
from stakes_core.run.results import RunResult, RunResultError, find_runs

LAYOUT_PER_KIND = 300
"""Instances of each kind (forgotten, retained, test) in the embedding layouts."""


@dataclass
class Report:
    """What ``write_report`` wrote, how long each analysis took and what it had to skip."""

    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def write_report(
    path: str | Path, out: str | Path | None = None, format: str = "auto", methods: Sequence[str] | None = None,
    forget: Sequence[int] | None = None, retained: Sequence[int] | None = None, test: Sequence[int] | None = None,
    embedding: str = "umap", device: str = "cpu", per_kind: int = 4, progress: bool = True,
) -> Report:
    """Write every figure for the run(s) under ``path`` into ``out`` (default ``path/figures``).

    ``forget``/``retained``/``test`` choose the instances shown (dataset indices; one run
    only); by default ``per_kind`` of each kind. Every input is checked before anything is written.
    """
    path = Path(path)
    directories = find_runs(path)
    if not directories:
        raise AnalysisError(f"no run directory (with summary.json) under {path}")
    try:
        runs = [RunResult.load(d) for d in directories]
    except RunResultError as error:
        raise AnalysisError(str(error)) from None
    analysable = [d for d in directories if (d / "models").is_dir()]
    chosen_run, instances = None, None
    if forget or retained or test:
        if len(analysable) != 1:
            raise AnalysisError("chosen instances belong to one run: give a single run directory with saved models")
        chosen_run = load_run(analysable[0], device=device)
        instances = chosen_run.instances(forget, retained, test)
    out = Path(out) if out is not None else path / "figures"
    report = Report()
    timed = _timer(report.seconds)
    figures = {
        "collapse_curves": timed("collapse curves", lambda: collapse_curves_figure(collapse_curves(runs, methods))),
        "collapse_vs_tradeoff": timed(
            "collapse vs trade-off", lambda: collapse_tradeoff_figure(tradeoff_points(runs, methods))
        ),
    }
    projector = collapse_curves(runs, methods, view="projector")
    if projector:
        figures["collapse_curves_projector"] = collapse_curves_figure(projector, view="projector")
    _save(report, figures, out, format)
    report.notes += [
        f"{d}: no saved models (run without --no-models to analyse them)" for d in directories if d not in analysable
    ]
    for directory in tqdm(analysable, desc="figures", disable=not progress or len(analysable) < 2):
        run = chosen_run or load_run(directory, device=device)
        target = out if directory == path else out / directory.relative_to(path)
        _run_figures(run, report, target, format, run.check_methods(methods), instances, embedding, per_kind, progress)
    return report


def _run_figures(
    run: LoadedRun, report: Report, out: Path, format: str, methods: list[str], instances: Instances | None,
    embedding: str, per_kind: int, progress: bool,
) -> None:
    seconds: dict[str, float] = {}
    timed = _timer(seconds)
    seed = run.result.seed
    chosen = instances or run.default_instances(per_kind, seed=seed)
    layout_points = run.default_instances(LAYOUT_PER_KIND, seed=seed)
    figures: dict[str, go.Figure] = {
        "anchor_similarity": anchor_similarity_figure(
            anchor_similarity(run.context.anchors.cpu()), run.dataset.classes, run.result.config["encoder"]
        )
    }
    registered = FIGURES.names()
    bar = tqdm(
        total=3 * len(methods) + 7 + len(registered), desc=f"analyses of {run.directory.name}", disable=not progress
    )
    for method in methods:
        view = timed(f"affinity {method}", lambda: affinity_view(run, method, chosen))
        figures[f"affinity_{method}"] = affinity_heatmaps_figure(view)
        bar.update()
    for method in methods:
        view = timed(f"{embedding} {method}", lambda: embedding_view(run, method, layout_points, embedding, seed=seed))
        figures[f"embedding_{method}"] = embedding_figure(view)
        bar.update()
    figures["per_class_accuracy"] = per_class_accuracy_figure(
        timed("per-class accuracy", lambda: per_class_accuracy(run, methods))
    )
    bar.update()
    for method, matrices in timed("prediction matrices", lambda: prediction_matrices(run, methods)).items():
        figures[f"predictions_{method}"] = prediction_matrices_figure(matrices)
        bar.update()
    try:
        stages = timed("layer CKA", lambda: layer_cka(run, methods, seed=seed))
    except ConfigError as error:  # a plugin backbone without the ResNet stages: the other figures still come
        report.notes.append(f"{run.directory.name}: no layer CKA: {error}")
    else:
        figures["layer_cka"] = layer_cka_figure(stages)
    bar.update()
    figures["gradcam"] = gradcam_grid_figure(timed("gradcam", lambda: gradcam_view(run, chosen, methods)))
    bar.update()
    retrieval = timed("retrieval", lambda: retrieval_view(run, methods, seed=seed))
    figures["retrieval_metrics"] = retrieval_metrics_figure(retrieval)
    kinds = retrieval.query_kinds
    shown = [kinds.index(kind) for kind in ("forget", "retained", "test") if kind in kinds]
    figures["retrieval_topk"] = retrieval_grid_figure(
        retrieval, retrieval_images(run, retrieval, shown), shown, run.dataset.classes
    )
    bar.update()
    privacy = timed("privacy", lambda: privacy_view(run, methods, seed=seed))
    figures["privacy"] = privacy_figure(privacy)
    bar.update()
    attacks = timed("loss attack", lambda: loss_attack_view(run, methods, seed=seed))
    figures["loss_attack"] = loss_attack_figure(attacks)
    bar.update()
    agreement = timed("anchor agreement", lambda: anchor_model_agreement(
        run.context.anchors, run.context.original, run.dataset, run.device, seed=seed
    ))
    for view, result in agreement.items():
        figures[f"anchor_agreement_{view}"] = anchor_agreement_figure(
            result, run.dataset.classes, view, run.result.config["encoder"]
        )
    bar.update()
    for name in registered:
        figures[name] = timed(f"figure {name}", lambda: FIGURES.get(name)(run))
        bar.update()
    bar.close()
    _save(report, figures, out, format)
    summary = {
        "run": str(run.directory), "methods": methods, "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "retrieval": retrieval.table(),
        "privacy": {"mia_efficacy": privacy.mia_efficacy, "attack_acc": privacy.attack_acc},
        "loss_attack": {name: {"accuracy": attack.accuracy, "auc": attack.auc}
                        for name, attack in attacks.attacks.items()},
        "instances": {"kinds": list(chosen.kinds), "indices": list(chosen.indices)},
        "anchor_agreement": {view: {"rho": r.rho, "p_value": r.p_value, "permutations": r.permutations}
                             for view, r in agreement.items()},
    }
    (out / "analysis.json").write_text(json.dumps(summary, indent=2))
    report.files.append(out / "analysis.json")
    for label, value in seconds.items():
        report.seconds[label] = report.seconds.get(label, 0.0) + value


def _timer(seconds: dict[str, float]) -> Callable:
    """``timed(label, compute)``: run ``compute`` and add its wall time to ``seconds[label]``."""

    def timed(label: str, compute: Callable):
        start = time.perf_counter()
        value = compute()
        seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
        return value

    return timed


def _save(report: Report, figures: dict[str, go.Figure], out: Path, format: str) -> None:
    files, reason = save_figures(figures, out, format)
    report.files += files
    if reason and reason not in report.notes:
        report.notes.append(reason)
