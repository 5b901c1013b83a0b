"""Membership inference on the forget set, as the unlearning literature reports it (SalUn's
confidence-based attack): do the forgotten instances still look like training data?

For each model separately: an SVM (RBF kernel, C = 3, as SalUn) learns to tell retained
training images (members) from test images (non-members) by the model's softmax confidence
in the true class; it is fitted on a balanced seeded sample of each and judged on a held-out
fifth of them. Applied to the forgotten images, it gives ``mia_efficacy``: the percentage of
forgotten images predicted non-member (higher means they look less like training data). The
held-out balanced ``attack_acc`` says how much to trust that number: near 50 % the model
gives the attack nothing to work with, whatever the efficacy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from stakes_core.analysis.runs import AnalysisError, LoadedRun
from stakes_core.data import retain_indices
from stakes_core.metrics.accuracy import logits

if TYPE_CHECKING:
    from sklearn.svm import SVC

MIA_FEATURES = ("confidence", "entropy")


def attack_features(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, feature: str = "confidence",
    batch_size: int = 512, device: str = "cpu",
) -> np.ndarray:
    """One attack feature per image: softmax probability of the true class, or the entropy of
    the softmax (``N × 1``)."""
    if feature not in MIA_FEATURES:
        raise AnalysisError(f"attack feature '{feature}' is not one of {', '.join(MIA_FEATURES)}")
    model.eval()
    probs = logits(model, images, batch_size, device).softmax(1)
    if feature == "confidence":
        values = probs.gather(1, labels[:, None].cpu()).flatten()
    else:
        values = -(probs * probs.clamp_min(1e-12).log()).sum(1)
    return values.double().numpy()[:, None]


def fit_attack(members: np.ndarray, nonmembers: np.ndarray, seed: int = 0) -> tuple[SVC, float]:
    """An RBF-SVM member/non-member attack on balanced inputs and its held-out balanced accuracy (%)."""
    from sklearn.svm import SVC

    size = min(len(members), len(nonmembers))
    if size < 10:
        raise AnalysisError(f"membership inference needs ≥ 10 members and non-members, got {size}")
    rng = np.random.default_rng(seed)
    members = members[rng.permutation(len(members))[:size]]
    nonmembers = nonmembers[rng.permutation(len(nonmembers))[:size]]
    held = max(1, size // 5)
    x_fit = np.concatenate([members[held:], nonmembers[held:]])
    y_fit = np.concatenate([np.ones(size - held), np.zeros(size - held)])
    attack = SVC(C=3.0, gamma="auto", kernel="rbf").fit(x_fit, y_fit)
    accuracy = 50.0 * ((attack.predict(members[:held]) == 1).mean() + (attack.predict(nonmembers[:held]) == 0).mean())
    return attack, float(accuracy)


@dataclass
class PrivacyView:
    """Per model: MIA efficacy on the forget set and the attack's own held-out accuracy (%)."""

    feature: str
    mia_efficacy: dict[str, float]
    attack_acc: dict[str, float]
    shadow_size: int
    seconds: float


def privacy_view(
    run: LoadedRun, methods: Sequence[str] | None = None, feature: str = "confidence", shadow_size: int = 1000,
    seed: int = 0,
) -> PrivacyView:
    """SalUn-style membership inference on the forget set for the original model and each method."""
    start = time.perf_counter()
    dataset = run.dataset
    generator = torch.Generator().manual_seed(seed)
    retained = retain_indices(dataset.num_train, torch.tensor(run.forget_indices))
    size = min(shadow_size, retained.numel(), int(dataset.test_labels.numel()))
    members = retained[torch.randperm(retained.numel(), generator=generator)[:size]]
    nonmembers = torch.randperm(int(dataset.test_labels.numel()), generator=generator)[:size]
    forget = torch.tensor(run.forget_indices)
    groups = {
        "members": (dataset.train_images[members], dataset.train_labels[members]),
        "nonmembers": (dataset.test_images[nonmembers], dataset.test_labels[nonmembers]),
        "forget": (dataset.train_images[forget], dataset.train_labels[forget]),
    }
    efficacy, attack_acc = {}, {}
    for name in ["original", *run.check_methods(methods)]:
        model = run.model(name)
        scores = {group: attack_features(model, *data, feature, device=run.device) for group, data in groups.items()}
        attack, attack_acc[name] = fit_attack(scores["members"], scores["nonmembers"], seed)
        efficacy[name] = 100.0 * float((attack.predict(scores["forget"]) == 0).mean())
    return PrivacyView(feature, efficacy, attack_acc, size, time.perf_counter() - start)
