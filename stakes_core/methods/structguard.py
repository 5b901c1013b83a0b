"""StructGuard (Hong, Shin, Kim, CVPR 2026): unlearning that keeps instances staked to anchors.

Per step, on a forget batch (x_f, y_f) and a proxy batch (x̃, t) of targeted L2-PGD examples:

- ``L_del = −CE(h(g(x_f)), y_f) · n_f/(n_f+n_a)``   (bypasses the projector)
- ``L_ret = CE(h(p(g(x̃))), t) · n_a/(n_f+n_a)``      (through the projector p)
- ``L_align = 1 − mean_i cos(S^ori_i, S^unl_i)``, ``S^ori = norm(g₀(x̃)[·R])·Aᵀ`` from the frozen
  original model, ``S^unl = norm(view(p(g(x̃))))·Aᵀ``
- ``L_reg = ½ Σ_j I_j (ψ_j − ψ⁰_j)²`` with ``I_j = E|∂L_align/∂ψ_j|`` estimated once, after the
  first update, over the proxy set
- ``L_CR = ρ‖W_h‖₁ + ½(1−ρ)‖W_h‖²_F`` (elastic net on the classifier weights, ρ = 0.99)

``L = L_del + L_ret + w_align·L_align + λ·L_reg + w_cr·L_CR``, plain SGD with one learning
rate for backbone and head and another for the projector. The deployed classifier is h∘p∘g.

The projector is ``Linear(d, a) → BN → ReLU → Linear(a, d)`` for feature width d and anchor
width a. When d = a (ResNet-18 with CLIP) the structure uses its output and the original
features directly; otherwise it uses the a-wide hidden layer and ``g₀(x̃)·R`` (ResNet-50).

Quirks of the official code (method.md §9) are options whose defaults follow the paper:

- ``proxy_source``: ``"original"`` (default) attacks the original model; ``"l2ul"`` attacks the
  L2UL-unlearned model of the same experiment, as the released script does (Q1).
- ``reg_schedule``: ``"every_step"`` (default) regularises every step once importance exists;
  ``"authors"`` skips batch indices 0 and 1 of every epoch and computes importance only at
  batch index 1 of epoch 0, so proxy sets of ≤ 2 batches are never regularised (Q3).
- ``stop_from_epoch``: 1 (default, as released, Q4). Here the released behaviour *is* the
  paper's intent: the deployed path h∘p∘g starts with a random projector, so its forget
  accuracy is near chance — often already 0 for small k — before anything was unlearned;
  checking from step 1 would stop on an untrained projector. Set 0 to see that happen.
- ``target_rule``: ``"uniform_other"`` (default) or ``"authors"`` (Q5).
- ``importance``: ``"one_pass"`` (default) averages |∂L_align/∂ψ| over one pass of the proxy
  set in train mode and restores the batch-norm statistics afterwards. ``"authors_cycling"``
  is the released procedure, literally: it cycles the proxy set until |D_r| samples were seen
  and keeps the batch-norm statistics it updated (Q6). ``"authors"`` computes the same thing
  in one pass: the parameters do not change during the estimate and train-mode batch norm
  normalises with batch statistics, so every visit of a batch yields the same gradient and
  the same batch statistics; each batch's gradient is weighted by its number of visits and
  the running-statistics updates of the later visits are replayed from the recorded batch
  statistics. The three agree up to the weighting of the last partial cycle (``one_pass``)
  or to floating-point rounding (``authors`` vs ``authors_cycling``).

``structure_space`` (default ``"paper"``) says where ``S`` is measured: the paper's space, or
``conse`` / ``text_map``, where the anchors' meaning enters the loss
(:mod:`stakes_core.methods.structure_space` gives their formulas). The collapse metric is always
measured in the paper's space, so runs of every space are compared on one scale.

``bn_stats="frozen"`` (an option of every method, off by default) freezes the batch norm of
the backbone g only. The projector's batch norm stays in train mode: the projector starts
random, and its running statistics start at mean 0 and variance 1, not those of g(x), so it
has to learn them from the proxy batches before the deployed path h∘p∘g can normalise with
them. The importance estimate then runs with the backbone's batch norm in eval mode too, so its
gradients are those of the function the steps change, no procedure updates the backbone's
running statistics (``authors`` and ``authors_cycling`` keep no updates, as there are none to
keep), and the three procedures differ only in how they weight the proxy batches.
"""

from __future__ import annotations

import contextlib
import copy
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from stakes_core.infra.errors import ConfigError
from stakes_core.methods.base import UnlearningMethod
from stakes_core.methods.config import ProxyConfig, hyperparameter, new_default
from stakes_core.methods.context import UnlearnContext
from stakes_core.methods.importance import BatchStatsRecorder, cycle_visits
from stakes_core.methods.projector import ProjectedClassifier, Projector
from stakes_core.methods.sgd import SGD
from stakes_core.methods.structure_space import (
    STRUCTURE_SPACES,
    Embed,
    fit_text_map,
    fitting_targets,
    space_embedder,
)
from stakes_core.methods.training import (
    LossAndTerms,
    ProxyBatch,
    distance_penalty,
    forget_and_proxy_loss,
    paired_with_forget,
    trainable_copy,
)
from stakes_core.metrics.structure import Embedder, affinities, structure_discrepancy

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule


@dataclass
class StructGuardConfig(ProxyConfig):
    """StructGuard's hyperparameters: the proxy set's, other defaults for the shared ones, the
    projector's learning rate, the loss weights and the options for the released code's quirks."""

    lr: float = new_default(ProxyConfig, "lr", 0.005)
    projector_lr: float = hyperparameter(
        0.009, "SGD learning rate of the projector p; higher moves the deployed path h∘p∘g faster; unit: none (a "
        "step-size multiplier)", key=True
    )
    momentum: float = new_default(ProxyConfig, "momentum", 0.0)
    weight_decay: float = new_default(ProxyConfig, "weight_decay", 0.0)
    pgd_eps: float = new_default(ProxyConfig, "pgd_eps", 3.0)
    stop_from_epoch: int = new_default(ProxyConfig, "stop_from_epoch", 1)
    reg_lambda: float = hyperparameter(
        1.0,
        "weight λ of L_reg, the importance-weighted distance to the original weights; higher holds the model closer; "
        "unit: none (a loss weight)",
        key=True,
    )
    align_weight: float = hyperparameter(
        1.0,
        "weight of L_align, the proxy images' anchor affinities against the original's; higher keeps structure closer; "
        "unit: none (a loss weight)",
        key=True,
    )
    cr_weight: float = hyperparameter(
        0.001, "weight of the elastic-net term on the classifier weights; higher shrinks the head's weights more; "
        "unit: none (a loss weight)",
        key=True,
    )
    cr_l1_ratio: float = hyperparameter(
        0.99, "share ρ of L1 in the elastic-net term (0: squared L2 only, 1: L1 only); higher is sparser; unit: "
        "fraction, 0 to 1"
    )
    proxy_source: str = hyperparameter(
        "original",
        "model the proxy set attacks: original (the paper) or l2ul (the L2UL-unlearned model, as released, Q1); "
        "unit: a choice",
        choices=("original", "l2ul"),
    )
    reg_schedule: str = hyperparameter(
        "every_step",
        "when L_reg applies: every_step once importance exists, or authors (skips batches 0-1 of each epoch, Q3); "
        "unit: a choice",
        choices=("every_step", "authors"),
    )
    importance: str = hyperparameter(
        "one_pass",
        "estimate of I = E|dL_align/dψ|: one_pass over the proxy set, authors (the released estimate in one pass) "
        "or authors_cycling (its literal loop, slow), Q6; unit: a choice",
        choices=("one_pass", "authors", "authors_cycling"),
    )
    structure_space: str = hyperparameter(
        "paper",
        "where L_align measures structure: paper (S = norm(V)·Aᵀ, the anchors enter only through AᵀA), conse (the "
        "predicted class mixture of the anchors) or text_map (a fitted linear map into the anchor space); unit: a "
        "choice",
        key=True,
        choices=STRUCTURE_SPACES,
        added=True,
    )
    conse_top: int = hyperparameter(
        3, "classes T of the predicted mixture in the conse space; higher mixes in less likely classes; unit: "
        "classes, 1 to C", added=True
    )
    text_map_tau: float = hyperparameter(
        0.1, "temperature of the text map's cosine classifier; higher fits softer predictions; unit: cosine units",
        added=True,
    )
    text_map_steps: int = hyperparameter(
        300, "full-batch Adam steps that fit the text map before unlearning; more fits it closer; unit: steps",
        added=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.conse_top < 1:
            raise ConfigError(f"conse_top must be ≥ 1 (a number of classes), got {self.conse_top}")
        if self.text_map_tau <= 0:
            raise ConfigError(f"text_map_tau must be > 0 (a temperature), got {self.text_map_tau}")
        if self.text_map_steps < 1:
            raise ConfigError(f"text_map_steps must be ≥ 1, got {self.text_map_steps}")

    @classmethod
    def as_released(cls, **overrides: Any) -> "StructGuardConfig":
        """The official script's behaviour: quirks Q1, Q3, Q5 and Q6 switched on (Q4 is the default)."""
        quirks = dict(
            proxy_source="l2ul", reg_schedule="authors", target_rule="authors", importance="authors"
        )
        return cls(**{**quirks, **overrides})


class StructGuard(UnlearningMethod[StructGuardConfig]):
    name = "structguard"
    config_class = StructGuardConfig
    uses_global_rng = False  # the projector draws from its own generator, seeded with the run's seed

    def setup(self, ctx: UnlearnContext) -> None:
        cfg = self.config
        attacked = None
        if cfg.proxy_source == "l2ul":
            if "l2ul" not in ctx.unlearned:
                raise ConfigError(
                    "proxy_source='l2ul' needs the l2ul method to run before structguard in the same experiment"
                )
            attacked = ctx.unlearned["l2ul"]
        self.proxy_images, self.proxy_targets = ctx.proxy_set(
            cfg.n_adv, cfg.pgd, cfg.target_rule, self.timer, attacked=attacked, target_tau=cfg.target_tau
        )
        self.embed = self.structure_embedder(ctx)
        self.model = trainable_copy(ctx.original)
        generator = torch.Generator().manual_seed(ctx.seed)
        self.projector = Projector(self.model.feature_dim, ctx.anchors.shape[1], generator).to(ctx.device).train()
        self.classifier_model = ProjectedClassifier(self.model, self.projector)
        self.optimizer = SGD(
            [
                {"params": self.model.parameters(), "lr": cfg.lr},
                {"params": self.projector.parameters(), "lr": cfg.projector_lr},
            ],
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.reference = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        self.importance: dict[str, torch.Tensor] | None = None

    def needs(self) -> tuple[str, ...]:
        return ("l2ul",) if self.config.proxy_source == "l2ul" else ()

    def deployed(self) -> nn.Module:
        return self.classifier_model

    @classmethod
    def deployed_architecture(cls, original: BackboneModule, anchor_dim: int) -> nn.Module:
        return ProjectedClassifier(copy.deepcopy(original), Projector(original.feature_dim, anchor_dim))

    def train_mode(self) -> None:
        """Backbone and projector in train mode (under ``bn_stats="frozen"`` the loop then freezes
        the backbone's batch norm only; the projector's must learn its statistics)."""
        self.model.train()
        self.projector.train()

    def structure_views(self, ctx: UnlearnContext) -> dict[str, Embedder]:
        views = super().structure_views(ctx)
        views["projector"] = lambda x: self.projector.outputs_and_view(self.model.features(x))[1]
        return views

    def epoch_batches(self, ctx: UnlearnContext, epoch: int) -> Iterator[ProxyBatch]:
        return paired_with_forget(ctx, self.proxy_images, self.proxy_targets, self.config.batch_size)

    def structure_reference(self, ctx: UnlearnContext) -> BackboneModule:
        """The frozen model whose structure ``S^ori`` the steps keep: the original."""
        return ctx.original

    def structure_embedder(self, ctx: UnlearnContext) -> Embed:
        """The embedding of ``structure_space``; ``text_map`` fits its map here, on the forget and
        proxy images with the reference model's predictions as targets."""
        cfg = self.config
        text_map = None
        if cfg.structure_space == "text_map":
            with self.timer.phase("text_map"):
                reference = self.structure_reference(ctx)
                features, probabilities = fitting_targets(reference, torch.cat([ctx.forget_images, self.proxy_images]))
                generator = torch.Generator().manual_seed(ctx.seed)
                text_map = fit_text_map(
                    features, probabilities, ctx.anchors, cfg.text_map_tau, cfg.text_map_steps, generator
                )
        return space_embedder(cfg.structure_space, ctx.anchors, ctx.dataset.num_classes, cfg.conse_top, text_map)

    def original_structure(self, ctx: UnlearnContext, x: torch.Tensor) -> torch.Tensor:
        """``S^ori`` of a proxy batch under the frozen reference model (eval mode)."""
        with torch.no_grad():
            reference = self.structure_reference(ctx).eval()
            features = reference.features(x)
            view = features @ ctx.projection.to(features.device) if ctx.projection is not None else features
            return affinities(self.embed(features, view, reference.classifier), ctx.anchors)

    def alignment_loss(
        self, ctx: UnlearnContext, x: torch.Tensor, projector: Projector
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``L_align`` of a proxy batch, and the projected features (for ``L_ret``)."""
        out, view = projector.outputs_and_view(self.model.features(x))
        current = affinities(self.embed(out, view, self.model.classifier), ctx.anchors)
        return structure_discrepancy(self.original_structure(ctx, x), current), out

    def loss(self, ctx: UnlearnContext, batch: ProxyBatch, epoch: int, index: int, step: int) -> LossAndTerms:
        cfg = self.config
        xa, ta, xf, yf = batch
        if self.importance is None and self._importance_due(epoch, index, step):
            # before this step's forward passes: the estimate touches batch-norm buffers
            with self.timer.phase("importance"):
                self.importance = self.estimate_importance(ctx)
        forget_ce = F.cross_entropy(self.model(xf), yf)
        align, projected = self.alignment_loss(ctx, xa, self.projector)
        proxy_ce = F.cross_entropy(self.model.classifier(projected), ta)
        weight = self.model.classifier.weight
        elastic = cfg.cr_l1_ratio * weight.abs().sum() + 0.5 * (1 - cfg.cr_l1_ratio) * weight.pow(2).sum()
        total = forget_and_proxy_loss(forget_ce, proxy_ce, xf.shape[0], xa.shape[0])
        total = total + cfg.align_weight * align + cfg.cr_weight * elastic
        terms = {
            "forget_ce": forget_ce.detach(), "proxy_ce": proxy_ce.detach(), "align": align.detach(),
            "classifier_reg": elastic.detach(),
        }
        if self.importance is not None and self._regularised(index):
            penalty = distance_penalty(self.model, self.reference, self.importance)
            total = total + cfg.reg_lambda * penalty
            terms["reg"] = penalty.detach()
        return total, terms

    def _importance_due(self, epoch: int, index: int, step: int) -> bool:
        if self.config.reg_schedule == "authors":
            return epoch == 0 and index == 1
        return step >= 1

    def _regularised(self, index: int) -> bool:
        return index > 1 if self.config.reg_schedule == "authors" else True

    def estimate_importance(self, ctx: UnlearnContext) -> dict[str, torch.Tensor]:
        """``I_j = E|∂L_align/∂ψ_j|`` over the proxy set, on the current model and a copy of the
        projector, in the modes of an update step (see the module docstring for the three
        procedures and for ``bn_stats``)."""
        projector = copy.deepcopy(self.projector).train()
        mode = self.config.importance
        saved_buffers = {n: b.clone() for n, b in self.model.named_buffers()} if mode == "one_pass" else {}
        self.step_mode()
        size = self.config.batch_size
        sizes = [min(size, self.proxy_images.shape[0] - start) for start in range(0, self.proxy_images.shape[0], size)]
        visits = list(range(len(sizes))) if mode == "one_pass" else cycle_visits(sizes, ctx.num_retained)
        counts = Counter(visits)
        passes = visits if mode == "authors_cycling" else visits[: len(sizes)]
        revisits = visits[len(passes) :] if mode == "authors" else []
        revisited = set(revisits)
        recorder = BatchStatsRecorder(self.model)
        totals = {name: torch.zeros_like(p) for name, p in self.model.named_parameters()}
        for index in passes:
            x = self.proxy_images[index * size : index * size + sizes[index]]
            weight = sizes[index] * (1 if mode == "authors_cycling" else counts[index])
            self.model.zero_grad(set_to_none=True)
            with recorder.recording(index) if index in revisited else contextlib.nullcontext():
                loss, _ = self.alignment_loss(ctx, x, projector)
            loss.backward()
            for name, parameter in self.model.named_parameters():
                if parameter.grad is not None:
                    totals[name] += parameter.grad.abs() * weight
        self.model.zero_grad(set_to_none=True)
        with torch.no_grad():
            recorder.replay([recorder.batches[v] for v in revisits])
            for name, buffer in self.model.named_buffers():
                if name in saved_buffers:
                    buffer.copy_(saved_buffers[name])
        seen = sum(sizes[v] for v in visits)
        return {name: total / seen for name, total in totals.items()}
