"""Cached calls into ``stakes_core`` for the analysis pages.

A run is loaded once per server (``st.cache_resource``) and each view once per run and
parameters, so switching pages or widgets that only change the layout costs no computing.
Stored runs never change once written, so their directory names are safe cache keys.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st
import torch

from stakes_core.analysis import AffinityView, EmbeddingView, LoadedRun, affinity_view, embedding_view, load_run
from stakes_core.analysis.changes import PerClassAccuracy, PredictionMatrices, per_class_accuracy, prediction_matrices
from stakes_core.analysis.cka import LayerCKA, layer_cka
from stakes_core.analysis.continual import RoundEmbedding
from stakes_core.analysis.continual import round_embedding as continual_embedding
from stakes_core.analysis.embedding import warm_up_umap
from stakes_core.analysis.field import FieldEvaluation, field_evaluation
from stakes_core.analysis.gradcam import GradCAMView, gradcam_view
from stakes_core.analysis.retrieval import RetrievalView, retrieval_view
from stakes_core.anchors import build_anchors, load_descriptions, match_classes
from stakes_core.figures import export
from stakes_core.infra.errors import StakesError
from stakes_core.lab.side_by_side import StoredRuns
from stakes_core.lab.side_by_side import stored_runs as list_stored_runs
from stakes_core.methods import list_methods
from stakes_core.run.config import ExperimentConfig
from stakes_core.run.continual_store import ContinualRun
from stakes_core.run.results import RunResult
from stakes_core.run.runstore import Siblings, find_siblings, store_root
from stakes_core.run.sweep import Cell, Sweep, build_sweep, stored_cells, stored_results
from stakes_core.run.sweep_spec import load_spec


@st.cache_resource(show_spinner=False)
def umap_warm_up() -> threading.Thread:
    """Compile UMAP's numba code once per server, in the background, while the visitor sets up
    and runs (it would otherwise hold up the first Embedding page by about 20 s)."""
    thread = threading.Thread(target=warm_up_umap, name="umap-warm-up", daemon=True)
    thread.start()
    return thread


@st.cache_resource(show_spinner=False)
def static_export_warm_up() -> threading.Thread:
    """Find out once per server, in the background, whether kaleido can draw PNG/SVG here (a
    real render, a few seconds), so the first page with download buttons does not wait for it."""
    thread = threading.Thread(target=export.static_export_reason, name="export-check", daemon=True)
    thread.start()
    return thread


# What each analysis page shows before the visitor changes anything (the first choice of each list is
# the default); the pages and the warm-up share them.
RETAINED_SHOWN = 8  # Structure: retained instances in the affinity heatmaps
EMBEDDING_PER_KIND = 150  # Embedding and Side by side: instances of each kind
LAYOUTS = ("umap", "pca")
GRADCAM_PER_KIND = 2  # Grad-CAM: images of each kind
GRADCAM_TARGETS = ("label", "predicted")
GRADCAM_STAGES = ("layer4", "layer3")
RETRIEVAL_FEATURES = ("backbone", "deployed")


def warm_views(directory: str) -> None:
    """Compute every analysis page's default view of a finished run in the background, so the
    first visit to each page after a run only draws (a page asking for a view still being made
    waits for it rather than making it twice: Streamlit locks each cached value). Once per session
    and run: later calls return at once."""
    warmed = st.session_state.setdefault("warmed_views", set())
    if directory in warmed:
        return
    warmed.add(directory)
    # not a daemon (a thread started from Streamlit's script thread would inherit its daemon flag): a
    # process that ends while a view is being made waits for it (seconds) instead of killing PyTorch
    # mid-operation, which aborts the process
    threading.Thread(target=_views_of, args=(directory,), name=f"views-{Path(directory).name}", daemon=False).start()


@st.cache_resource(show_spinner=False, max_entries=8)
def _views_of(directory: str) -> str:
    """The default views of ``directory``, made once per server. Called inside this cached
    function, the views show no spinner (Streamlit only shows the outermost one). A view that
    fails is left to its page, which says why."""
    log = logging.getLogger(__name__)
    try:
        views = _default_views(directory)
    except Exception as error:  # a run that cannot be loaded: every page says why
        log.info("warm-up of %s skipped: %s", directory, error)
        return directory
    for name, make in views:
        try:
            make()
        except Exception as error:  # the page computes it again and shows the error there
            log.info("warm-up of the %s view of %s failed: %s", name, directory, error)
    return directory


def _default_views(directory: str) -> list[tuple[str, Any]]:
    """(name, call) for each page's default view, in the order of the pages in the sidebar; the
    calls are the pages' own, with their defaults."""
    run = _loaded_run(directory)
    method = next(iter(run.result.methods))
    shown = run.default_instances(GRADCAM_PER_KIND)
    return [
        ("affinity", lambda: affinities(directory, method, tuple(run.retained_indices[:RETAINED_SHOWN]), "backbone")),
        ("per-class accuracy", lambda: class_accuracy(directory)),
        ("prediction matrix", lambda: predictions(directory)),
        ("layer CKA", lambda: _cka(directory)),
        ("embedding", lambda: embedding(directory, method, EMBEDDING_PER_KIND, LAYOUTS[0])),
        ("Grad-CAM", lambda: gradcam(directory, tuple(zip(shown.kinds, shown.indices)), tuple(run.result.methods),
                                     GRADCAM_TARGETS[0], GRADCAM_STAGES[0])),
        ("retrieval", lambda: retrieval(directory, RETRIEVAL_FEATURES[0])),
    ]


def stop_with(error: StakesError) -> NoReturn:
    """Say ``error`` in the page and end this page run (a stored run that cannot be read or analysed)."""
    st.error(str(error), icon=":material/error:")
    st.stop()


def loaded_run(directory: str) -> LoadedRun:
    """The run with its models for the analysis pages, or what is wrong with it in the page."""
    try:
        return _loaded_run(directory)
    except StakesError as error:  # a damaged file, another dataset or pretrained model
        stop_with(error)


def run_result(directory: str) -> RunResult:
    """The run's metrics and step records, or which of its files is damaged in the page."""
    try:
        return _run_result(directory)
    except StakesError as error:
        stop_with(error)


@st.cache_resource(show_spinner="Loading the run and its models…", max_entries=6)
def _loaded_run(directory: str) -> LoadedRun:
    return load_run(directory, device="auto")


@st.cache_data(show_spinner=False, max_entries=64)
def _run_result(directory: str) -> RunResult:
    return RunResult.load(directory)


def siblings(config: ExperimentConfig) -> Siblings:
    """The stored seeds and k of the current setting, and the stored runs left out because their
    method is not registered here; read again only when the store or the methods change."""
    root = store_root()
    stored = tuple(sorted(p.name for p in root.iterdir())) if root.is_dir() else ()
    return _siblings(json.dumps(asdict(config)), stored, tuple(list_methods()))


@st.cache_data(show_spinner=False, max_entries=16)
def _siblings(config_json: str, stored: tuple[str, ...], methods: tuple[str, ...]) -> Siblings:
    """``stored`` (the store's folder names) and ``methods`` (the registered ones) are only part
    of the key: a new run or a newly registered method invalidates it."""
    return find_siblings(ExperimentConfig(**json.loads(config_json)))


def stored_runs() -> StoredRuns:
    """Every stored run with its label (Side by side page); read again only when the store or
    the methods change."""
    root = store_root()
    stored = tuple(sorted(p.name for p in root.iterdir())) if root.is_dir() else ()
    return _stored_runs(str(root), stored, tuple(list_methods()))


@st.cache_data(show_spinner=False, max_entries=4)
def _stored_runs(root: str, stored: tuple[str, ...], methods: tuple[str, ...]) -> StoredRuns:
    """``stored`` (the store's folder names) and ``methods`` (the registered ones) are only part
    of the key: a new run or a newly registered method invalidates it."""
    return list_stored_runs(root)


@st.cache_resource(show_spinner="Laying out the embedding (the first UMAP also compiles it)…", max_entries=16)
def embedding(directory: str, method: str, per_kind: int, algorithm: str) -> EmbeddingView:
    run = _loaded_run(directory)
    return embedding_view(run, method, run.default_instances(per_kind), algorithm)


@st.cache_resource(show_spinner="Computing affinities…", max_entries=32)
def affinities(directory: str, method: str, retained: tuple[int, ...], view: str) -> AffinityView:
    run = _loaded_run(directory)
    return affinity_view(run, method, run.instances(retained=list(retained)), view)


@st.cache_resource(show_spinner="Counting predictions per class…", max_entries=8)
def class_accuracy(directory: str) -> PerClassAccuracy:
    return per_class_accuracy(_loaded_run(directory))


@st.cache_resource(show_spinner="Counting predictions per class…", max_entries=8)
def predictions(directory: str) -> dict[str, list[PredictionMatrices]]:
    return prediction_matrices(_loaded_run(directory))


def cka(directory: str) -> LayerCKA:
    """Layer-wise CKA of every method against the original, or why the models have no stages in the page."""
    try:
        return _cka(directory)
    except StakesError as error:  # a model without the ResNet stages
        stop_with(error)


@st.cache_resource(show_spinner="Comparing every stage's activations with the original's…", max_entries=8)
def _cka(directory: str) -> LayerCKA:
    run = _loaded_run(directory)
    return layer_cka(run, seed=run.result.seed)


@st.cache_resource(show_spinner="Measuring the loss attack and the relearn time…", max_entries=8)
def field(directory: str, ulira: bool) -> FieldEvaluation:
    """The field's evaluation of a run (U-LiRA's shadows trained first, and cached, when asked)."""
    return field_evaluation(_loaded_run(directory), ulira=ulira, progress=False)


@st.cache_resource(show_spinner="Computing Grad-CAM maps…", max_entries=32)
def gradcam(
    directory: str, chosen: tuple[tuple[str, int], ...], methods: tuple[str, ...], target: str, stage: str
) -> GradCAMView:
    run = _loaded_run(directory)
    groups = {kind: [i for k, i in chosen if k == kind] for kind in ("forget", "retained", "test")}
    return gradcam_view(run, run.instances(**groups), list(methods), target=target, stage=stage)


@st.cache_resource(show_spinner="Ranking the gallery for every model…", max_entries=8)
def retrieval(directory: str, feature: str) -> RetrievalView:
    return retrieval_view(_loaded_run(directory), feature=feature)


@st.cache_resource(show_spinner="Encoding the descriptions…", max_entries=32)
def anchors(descriptions_json: str, encoder: str, classes: tuple[str, ...]) -> torch.Tensor:
    descriptions = match_classes(load_descriptions(json.loads(descriptions_json)), list(classes))
    return build_anchors(descriptions, encoder)



@st.cache_resource(show_spinner="Laying out the retained instances…", max_entries=8)
def round_embedding(entries_json: str, settings_json: str, arm: str, seed: int, algorithm: str) -> RoundEmbedding:
    """The retained instances after round 1 and round T of a stored request sequence (Requests page)."""
    entries = json.loads(entries_json)
    loaded = ContinualRun(json.loads(settings_json), list(entries), [seed], [], entries)
    return continual_embedding(loaded, arm, seed, algorithm)


def sweep_cells(spec_file: str) -> tuple[Sweep, list[tuple[dict[str, Any], RunResult]], list[Cell]]:
    """A sweep's stored cells with their runs, and its missing cells (Compare page). A rerun of
    the page reads the spec and checks the entries; the runs are loaded again only when the spec
    or the set of stored cells has changed."""
    sweep = build_sweep(load_spec(spec_file))
    found, missing = _stored_sweep_results(spec_file, Path(spec_file).stat().st_mtime, tuple(stored_cells(sweep)))
    return sweep, found, missing


@st.cache_resource(show_spinner="Loading the sweep's stored cells…", max_entries=4)
def _stored_sweep_results(
    spec_file: str, modified: float, stored: tuple[bool, ...]
) -> tuple[list[tuple[dict[str, Any], RunResult]], list[Cell]]:
    return stored_results(build_sweep(load_spec(spec_file)))
