"""Analyses of saved runs: each checked on a hand-built case or a property that a wrong
implementation would break."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers import SHORT_RUN_METHODS, save_short_digits_run, tiny_context, tiny_dataset

from stakes_core.analysis import (
    AnalysisError,
    affinity_view,
    collapse_curves,
    embed_images,
    embedding_view,
    layout_pair,
    load_run,
    tradeoff_points,
)
from stakes_core.analysis.gradcam import gradcam_maps, gradcam_view, target_block
from stakes_core.analysis.privacy import attack_features, fit_attack, privacy_view
from stakes_core.analysis.retrieval import rank_gallery, retrieval_metrics, retrieval_view
from stakes_core.run.results import RunResult

METHODS = SHORT_RUN_METHODS


pytestmark = pytest.mark.slow  # the module fixture runs and saves a digits experiment


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A short digits run (k=4, two epochs per method) saved with its models."""
    return save_short_digits_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def loaded(saved_run):
    return load_run(saved_run)


# --- retrieval ---------------------------------------------------------------------------------
def test_retrieval_metrics_on_a_hand_built_ranking() -> None:
    ranked = torch.tensor([[1, 0, 0, 1], [0, 1, 1, 1]])
    metrics = retrieval_metrics(ranked, torch.tensor([0, 0]), recall_at=(1, 2))
    assert metrics["R@1"] == pytest.approx(50.0) and metrics["R@2"] == pytest.approx(100.0)
    # AP: query 0 hits at ranks 2 and 3 → (1/2 + 2/3)/2; query 1 hits at rank 1 → 1
    assert metrics["mAP"] == pytest.approx(100 * ((1 / 2 + 2 / 3) / 2 + 1) / 2)


def test_retrieval_metrics_ignore_masked_positions() -> None:
    ranked = torch.tensor([[0, 1, 0]])
    valid = torch.tensor([[0.0, 1.0, 1.0]])  # the first hit is the query itself
    metrics = retrieval_metrics(ranked, torch.tensor([0]), valid, recall_at=(1, 3))
    assert metrics["R@1"] == 0.0 and metrics["R@3"] == 100.0 and metrics["mAP"] == pytest.approx(100 / 3)


def test_rank_gallery_sorts_by_cosine_and_puts_excluded_last() -> None:
    gallery = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    order, scores = rank_gallery(torch.tensor([[2.0, 0.1], [2.0, 0.1]]), gallery, torch.tensor([-1, 0]))
    assert order[0].tolist() == [0, 2, 1]
    assert order[1].tolist() == [2, 1, 0] and scores[1, -1] == float("-inf")


def test_retrieval_view_on_a_run(loaded) -> None:
    view = retrieval_view(loaded, test_queries=100)
    assert set(view.metrics) == {"original", *METHODS}
    assert view.metrics["original"]["test"]["R@1"] > 90.0  # a 99.7 % classifier retrieves its classes
    retained = [q for q, kind in enumerate(view.query_kinds) if kind == "retained"]
    for q in retained:  # a retained query never retrieves itself
        assert view.query_indices[q] not in view.top["original"][q]
    assert not set(loaded.forget_indices) & set(view.gallery_indices)
    assert len(view.table()) == 3 * 3
    tests = [q for q, kind in enumerate(view.query_kinds) if kind == "test"]
    right = sum(view.query_predictions["original"][q] == view.query_labels[q] for q in tests)
    assert right >= 0.9 * len(tests)  # the original model's predictions, as its test accuracy says
    label_of = dict(zip(view.gallery_indices, view.gallery_labels))
    tops = [label_of[g] for row in view.top["original"] for g in row]
    predicted = [p for row in view.top_predictions["original"] for p in row]
    assert len(predicted) == len(tops) and sum(map(int.__eq__, predicted, tops)) >= 0.9 * len(tops)


# --- affinity drift ------------------------------------------------------------------------------
def test_collapse_is_zero_for_an_unchanged_model(loaded) -> None:
    instances = loaded.default_instances(4)
    view = affinity_view(loaded, "original", instances)
    assert torch.equal(view.difference, torch.zeros_like(view.difference))
    assert view.row_collapse.abs().max() < 1e-6


def test_affinities_match_the_collapse_recorded_during_the_run(loaded) -> None:
    """The probe set's affinity view reproduces the collapse the run recorded at its last step."""
    probe = loaded.instances(retained=loaded.retained_indices)
    for method in METHODS:
        view = affinity_view(loaded, method, probe)
        recorded = loaded.result.method(method).final_collapse
        assert view.row_collapse.mean().item() == pytest.approx(recorded, abs=1e-5)
    projector = affinity_view(loaded, "structguard", probe, view="projector")
    assert projector.unlearned.shape == projector.original.shape


def test_projector_view_needs_a_projector(loaded) -> None:
    with pytest.raises(AnalysisError, match="no projector"):
        affinity_view(loaded, "neggrad", loaded.default_instances(2), view="projector")


def test_curves_and_tradeoff_points_from_saved_runs(saved_run) -> None:
    run = RunResult.load(saved_run)
    curves = collapse_curves([run, run])
    assert [c.method for c in curves] == METHODS * 2 and curves[0].collapse[0] == 0.0
    assert collapse_curves([run], view="projector")[0].method == "structguard"
    points = tradeoff_points([run], ["structguard"])
    assert len(points) == 1 and points[0].tradeoff_acc == pytest.approx(run.method("structguard").tradeoff_acc)
    with pytest.raises(AnalysisError, match="l2ul"):
        tradeoff_points([run], ["l2ul"])


# --- embedding --------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["pca", "umap"])
def test_layouts_do_not_move_points_of_an_unchanged_model(algorithm: str) -> None:
    features = torch.randn(60, 16, generator=torch.Generator().manual_seed(0))
    before, after = layout_pair(features, features.clone(), algorithm, n_neighbors=10)
    assert before.shape == (60, 2) and np.array_equal(before, after)


def test_layout_errors() -> None:
    with pytest.raises(AnalysisError, match="tsne"):
        layout_pair(torch.zeros(5, 2), torch.zeros(5, 2), "tsne")
    with pytest.raises(AnalysisError, match="more than"):
        layout_pair(torch.randn(5, 2), torch.randn(5, 2), "umap")


def test_embedding_view_is_cached(loaded) -> None:
    instances = loaded.default_instances(20)
    first = embedding_view(loaded, "neggrad", instances, "pca")
    second = embedding_view(loaded, "neggrad", instances, "pca")
    assert not first.from_cache and second.from_cache
    assert np.allclose(first.before, second.before) and np.allclose(first.after, second.after)
    assert first.displacement.max() > 0  # the unlearned model moved something


def test_deployed_features_are_the_heads_input(loaded) -> None:
    model = loaded.model("structguard")
    images = loaded.images(loaded.default_instances(3))
    deployed = embed_images(model, images, "deployed")
    expected = model.projector(model.features(images))
    assert torch.allclose(deployed, expected, atol=1e-6)
    assert torch.allclose(embed_images(model, images), model.features(images), atol=1e-6)


# --- Grad-CAM ---------------------------------------------------------------------------------
def test_gradcam_releases_hooks_and_restores_gradients() -> None:
    ctx = tiny_context()
    model = ctx.original
    block = target_block(model)
    images = ctx.forget_images
    maps, predictions = gradcam_maps(model, images, ctx.forget_labels.tolist())
    assert maps.shape == (len(images), 8, 8) and maps.min() >= 0 and maps.max() <= 1
    assert len(predictions) == len(images)
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks
    assert not any(p.requires_grad for p in model.parameters())  # the context's frozen original stays frozen
    assert block is model.layer4[-1]


def test_gradcam_restricted_gradients_give_the_same_maps() -> None:
    """Only the target block needs weight gradients: maps equal the plain library call's."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ctx = tiny_context()
    model = ctx.original
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    labels = ctx.forget_labels.tolist()
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        expected = cam(input_tensor=ctx.forget_images, targets=[ClassifierOutputTarget(c) for c in labels])
    maps, _ = gradcam_maps(model, ctx.forget_images, labels, batch_size=2)
    assert np.allclose(maps, expected, atol=1e-5)


def test_gradcam_view_covers_original_and_methods(loaded) -> None:
    instances = loaded.default_instances(2)
    view = gradcam_view(loaded, instances, target="predicted", stage="layer3")
    assert list(view.maps) == ["original", *METHODS]
    assert view.maps["structguard"].shape == (len(instances), 16, 16)
    with pytest.raises(AnalysisError, match="target"):
        gradcam_view(loaded, instances, target="everything")


# --- privacy ----------------------------------------------------------------------------------
def test_attack_features_are_true_class_confidences() -> None:
    ctx = tiny_context()
    values = attack_features(ctx.original, ctx.forget_images, ctx.forget_labels)
    probs = ctx.original(ctx.forget_images).softmax(1)
    expected = probs[torch.arange(len(values)), ctx.forget_labels]
    assert values.shape == (len(values), 1) and np.allclose(values[:, 0], expected.detach().numpy(), atol=1e-6)


def test_attack_separates_separable_and_not_identical_distributions() -> None:
    rng = np.random.default_rng(0)
    _, separable = fit_attack(rng.normal(0.95, 0.01, (200, 1)), rng.normal(0.5, 0.05, (200, 1)))
    _, identical = fit_attack(rng.normal(0.9, 0.05, (200, 1)), rng.normal(0.9, 0.05, (200, 1)))
    assert separable > 95.0 and 30.0 < identical < 70.0
    with pytest.raises(AnalysisError, match="≥ 10"):
        fit_attack(np.zeros((5, 1)), np.zeros((5, 1)))


def test_privacy_view_reports_every_model(loaded) -> None:
    view = privacy_view(loaded, shadow_size=200)
    assert set(view.mia_efficacy) == {"original", *METHODS} and view.shadow_size == 200
    assert all(0.0 <= v <= 100.0 for v in [*view.mia_efficacy.values(), *view.attack_acc.values()])


# --- bad input --------------------------------------------------------------------------------
def test_instances_must_belong_to_the_run(loaded) -> None:
    forgotten = loaded.forget_indices[0]
    not_forgotten = next(i for i in range(100) if i not in loaded.forget_indices)
    with pytest.raises(AnalysisError, match="not in this run's forget set"):
        loaded.instances(forget=[not_forgotten])
    with pytest.raises(AnalysisError, match="was forgotten"):
        loaded.instances(retained=[forgotten])
    with pytest.raises(AnalysisError, match="does not exist"):
        loaded.instances(test=[10_000])
    with pytest.raises(AnalysisError, match="no instances"):
        loaded.instances()
    chosen = loaded.instances(forget=[forgotten], test=[3])
    assert chosen.kinds == ("forget", "test") and chosen.of_kind("test") == [1]


def test_a_method_that_was_not_run_is_refused(loaded) -> None:
    with pytest.raises(AnalysisError, match="'l2ul' was not run"):
        loaded.model("l2ul")
    with pytest.raises(AnalysisError, match="'adv' was not run"):
        retrieval_view(loaded, methods=["adv"])


def test_a_run_from_another_dataset_is_refused(saved_run, tmp_path) -> None:
    with pytest.raises(AnalysisError, match="dataset 'tiny'"):
        load_run(saved_run, dataset=tiny_dataset())
    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    summary["dataset"]["train_sha256"] = "0" * 64  # the run was made on other images
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(AnalysisError, match="images differ"):
        load_run(copy)


def test_a_run_without_models_or_with_other_weights_is_refused(saved_run, tmp_path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    shutil.rmtree(copy / "models")
    run = load_run(copy)
    assert run.methods == []
    with pytest.raises(AnalysisError, match="without --no-models"):
        run.model("neggrad")
    summary = json.loads((copy / "summary.json").read_text())
    summary["pretrained"]["state_sha256"] = "0" * 64
    (copy / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(AnalysisError, match="not the one"):
        load_run(copy)
