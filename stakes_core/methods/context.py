"""``UnlearnContext``: what every method of one run starts from, and the proxy sets they share."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import torch

from stakes_core.anchors.build import anchor_similarity
from stakes_core.data import ImageDataset, retain_indices, to_float
from stakes_core.infra.accel import DEFAULT, Acceleration
from stakes_core.methods.access import RetainAccessError
from stakes_core.methods.attacks import PGDConfig
from stakes_core.methods.proxy import build_proxy_set
from stakes_core.methods.proxy_store import proxy_key, stored_proxy_set

if TYPE_CHECKING:
    from stakes_core.models.protocol import BackboneModule
    from stakes_core.models.retrain import RetrainReference
from stakes_core.methods.timing import Timer
from stakes_core.metrics.structure import StructureProbe

_LOCKS_GUARD = threading.Lock()


@dataclass
class UnlearnContext:
    """What every method of one run starts from. The full ``dataset`` is here for evaluation;
    the instance-wise methods use only the forget set (and the count ``num_retained``), and a
    reference that reads the retained images asks :meth:`retained` for them. ``accel`` holds the
    opt-in bf16 autocast and channels_last settings (off by default). ``stop_target`` is the
    forget accuracy (%) at or below which the methods stop: 0 (the paper) or the retrained
    model's forget accuracy (``stop_at="retrain"``)."""

    original: BackboneModule
    dataset: ImageDataset
    forget_idx: torch.Tensor
    anchors: torch.Tensor
    probe: StructureProbe
    projection: torch.Tensor | None
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    record_every: int = 1
    probe_idx: torch.Tensor | None = None
    proxy_cache: dict[Any, tuple[torch.Tensor, torch.Tensor, float]] = field(default_factory=dict)
    proxy_locks: dict[Any, threading.Lock] = field(default_factory=dict, repr=False)
    """One lock per proxy-set key: methods running in threads build a shared set once."""
    unlearned: dict[str, torch.nn.Module] = field(default_factory=dict)
    accel: Acceleration = DEFAULT
    stop_target: float = 0.0
    retrain: RetrainReference | None = None
    """The run's retrain reference (a model trained without the forget set), built on first use."""

    @cached_property
    def forget_images(self) -> torch.Tensor:
        return to_float(self.dataset.train_images[self.forget_idx]).to(self.device)

    @cached_property
    def forget_labels(self) -> torch.Tensor:
        return self.dataset.train_labels[self.forget_idx].to(self.device)

    @property
    def num_retained(self) -> int:
        return self.dataset.num_train - self.forget_idx.numel()

    def retained(self, method: Any) -> torch.Tensor:
        """The training indices of D_r, for a method that declares it reads them
        (``data_access`` ``"retain"`` or ``"retrain"``); a retain-free method is refused."""
        if getattr(method, "data_access", "forget") == "forget":
            raise RetainAccessError(
                f"method '{getattr(method, 'name', method)}' is declared retain-free (data_access='forget') but asked "
                "for the retained images: declare data_access='retain' if it needs them"
            )
        return retain_indices(self.dataset.num_train, self.forget_idx)

    def proxy_set(
        self,
        n_adv: int,
        pgd: PGDConfig,
        target_rule: str,
        timer: Timer,
        attacked: torch.nn.Module | None = None,
        target_tau: float = 0.1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Targeted L2-PGD examples of the forget set, ``n_adv`` per instance, labelled with their
        targets (the retain-set stand-in). Cached per settings, so methods sharing them share
        one set; a method served from the cache is still charged the generation time in its
        ``"proxy"`` phase, so its seconds are those of a request that ran alone. Sets are also
        kept on disk by content (:mod:`~stakes_core.methods.proxy_store`), so other runs on the
        same model, forget set and attack settings load this one. ``attacked``
        defaults to the original model; ``target_tau`` is the temperature of the ``"semantic"``
        target rule, which draws targets by the similarity of this run's anchors."""
        attacked = attacked if attacked is not None else self.original
        key = (n_adv, pgd, target_rule, target_tau if target_rule == "semantic" else None, id(attacked), self.accel)
        with _LOCKS_GUARD:
            lock = self.proxy_locks.setdefault(key, threading.Lock())
        with lock:
            return self._proxy_set(key, attacked, n_adv, pgd, (target_rule, target_tau), timer)

    def _proxy_set(
        self, key: Any, attacked: torch.nn.Module, n_adv: int, pgd: PGDConfig, rule: tuple[str, float], timer: Timer
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if key in self.proxy_cache:
            images, targets, seconds = self.proxy_cache[key]
            timer.seconds["proxy"] += seconds
            return images, targets
        similarity = anchor_similarity(self.anchors) if rule[0] == "semantic" else None

        def build() -> tuple[torch.Tensor, torch.Tensor]:
            with timer.phase("proxy"):
                return build_proxy_set(
                    attacked,
                    self.forget_images,
                    self.forget_labels,
                    n_adv,
                    self.dataset.num_classes,
                    pgd,
                    rule[0],
                    torch.Generator().manual_seed(self.seed),
                    target_similarity=similarity,
                    target_tau=rule[1],
                    progress=self.progress,
                    accel=self.accel,
                )

        # hashing the inputs and reading or writing the store is its own phase, so "proxy" is the
        # build's seconds for every run that uses the set, whether it built, loaded or shared it
        with timer.phase("proxy_store"):
            store_key, description = proxy_key(
                attacked, self.forget_images, self.forget_labels, n_adv, pgd, rule[0], rule[1], similarity, self.seed,
                self.device, self.accel,
            )
            images, targets, seconds, built = stored_proxy_set(store_key, description, build, self.device)
        if not built:
            timer.seconds["proxy"] += seconds
        self.proxy_cache[key] = (images, targets, seconds)
        return images, targets
