"""The loss attack of the NeurIPS 2023 machine unlearning challenge's starting kit (also
DeepUnlearn's): can a logistic regression on the per-sample cross-entropy loss tell the
forgotten images (label 1) from unseen test images (label 0)?

As the kit does: the two groups are balanced (a seeded sample of the larger one), a
``StratifiedShuffleSplit`` draws 10 splits with the kit's held-out share (sklearn's default,
10 %), and the attack's accuracy is the mean held-out accuracy over the splits. 0.5 (chance) is
the ideal: the forgotten images look like images the model never saw. Two departures, both
needed for the tiny forget sets of this project: each split holds out at least one image per
group (k = 4 gives 8 images, and 10 % of 8 rounds to one), and the loss is standardised on each
split's fitting part before the regression (the kit feeds raw losses; with the default L2
penalty, losses of order 1e-3, those of a model that fits its training images, would leave the
attack at chance even when the groups are perfectly apart).

``auc`` is threshold-free and has a direction: the ROC AUC of −loss as a member score over the
balanced sample. Above 0.5 the forgotten images still have lower loss than test images (they
look like training data); below 0.5 they have *higher* loss than images never seen, the mark of
over-forgetting (driving forget accuracy to 0 where a retrained model keeps about its test
accuracy), which the accuracy alone cannot tell from remembering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from stakes_core.analysis.runs import AnalysisError, LoadedRun
from stakes_core.metrics.accuracy import logits

KIT_SPLITS = 10
"""Splits of the kit's ``StratifiedShuffleSplit``."""
KIT_TEST_SHARE = 0.1
"""The kit's held-out share (sklearn's default ``test_size``)."""
MIN_PER_GROUP = 2
"""Fewest images per group: one to fit on and one to judge, in every split."""


def per_sample_loss(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, device: str = "cpu"
) -> np.ndarray:
    """Cross-entropy of each image under ``model`` (eval mode), as float64."""
    model.eval()
    outputs = logits(model, images, device=device).double()
    return torch.nn.functional.cross_entropy(outputs, labels.cpu(), reduction="none").numpy()


@dataclass(frozen=True)
class LossAttack:
    """The loss attack on one model: mean held-out ``accuracy`` over ``splits`` (0.5 = chance,
    the ideal), the directional ``auc`` (above 0.5: the forgotten images have lower loss than
    test images; below: higher), ``n_per_class`` images per group and ``held_out`` images
    judged per split."""

    accuracy: float
    auc: float
    split_accuracies: tuple[float, ...]
    n_per_class: int
    held_out: int

    @property
    def splits(self) -> int:
        return len(self.split_accuracies)


def fit_loss_attack(forget_losses: np.ndarray, test_losses: np.ndarray, seed: int = 0) -> LossAttack:
    """The kit's attack on two arrays of losses (members: ``forget_losses``), balanced by a
    seeded sample of the larger one."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    size = min(len(forget_losses), len(test_losses))
    if size < MIN_PER_GROUP:
        raise AnalysisError(
            f"the loss attack needs ≥ {MIN_PER_GROUP} forgotten and ≥ {MIN_PER_GROUP} test images, got "
            f"{len(forget_losses)} and {len(test_losses)}"
        )
    rng = np.random.default_rng(seed)
    members = np.asarray(forget_losses, dtype=np.float64)[rng.permutation(len(forget_losses))[:size]]
    nonmembers = np.asarray(test_losses, dtype=np.float64)[rng.permutation(len(test_losses))[:size]]
    features = np.concatenate([members, nonmembers])[:, None]
    groups = np.concatenate([np.ones(size), np.zeros(size)])
    held_out = max(math.ceil(KIT_TEST_SHARE * 2 * size), 2)
    splitter = StratifiedShuffleSplit(n_splits=KIT_SPLITS, test_size=held_out, random_state=seed)
    accuracies = []
    for fit_rows, judged_rows in splitter.split(features, groups):
        attack = make_pipeline(StandardScaler(), LogisticRegression())
        attack.fit(features[fit_rows], groups[fit_rows])
        accuracies.append(float((attack.predict(features[judged_rows]) == groups[judged_rows]).mean()))
    auc = float(roc_auc_score(groups, -features[:, 0]))
    return LossAttack(float(np.mean(accuracies)), auc, tuple(accuracies), size, held_out)


def loss_attack(
    model: torch.nn.Module,
    forget_images: torch.Tensor,
    forget_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    seed: int = 0,
    device: str = "cpu",
) -> LossAttack:
    """The kit's loss attack on ``model``: forgotten images (members) against test images,
    uint8 or float; the larger group is subsampled (seeded) to the size of the smaller."""
    forget_losses = per_sample_loss(model, forget_images, forget_labels, device)
    test_losses = per_sample_loss(model, test_images, test_labels, device)
    return fit_loss_attack(forget_losses, test_losses, seed)


@dataclass
class LossAttackView:
    """The loss attack on the original model and every method of a run, with the same test
    sample (``test_indices``) for all of them."""

    attacks: dict[str, LossAttack]
    test_indices: list[int]
    seed: int


def loss_attack_view(run: LoadedRun, methods: Sequence[str] | None = None, seed: int = 0) -> LossAttackView:
    """The loss attack on the run's forget set for the original model and each method (all the
    run's analysable ones when ``methods`` is ``None``), against a seeded sample of as many test
    images as there are forgotten images."""
    dataset = run.dataset
    forget = torch.tensor(run.forget_indices)
    num_test = int(dataset.test_labels.numel())
    chosen = torch.randperm(num_test, generator=torch.Generator().manual_seed(seed))[: forget.numel()]
    groups = (dataset.train_images[forget], dataset.train_labels[forget],
              dataset.test_images[chosen], dataset.test_labels[chosen])
    attacks = {name: loss_attack(run.model(name), *groups, seed=seed, device=run.device)
               for name in ["original", *run.check_methods(methods)]}
    return LossAttackView(attacks, chosen.tolist(), seed)
