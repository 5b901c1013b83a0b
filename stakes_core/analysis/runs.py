"""A saved run brought back to life for analysis: its dataset, the original and unlearned
models, the anchors and the instances it concerns, each checked against what the run recorded.

Every analysis takes a :class:`LoadedRun`, so the checks live here once: a dataset whose
content differs from the run's, a pretrained checkpoint that is not the one the run started
from, a method the run did not include and an instance the run does not contain all end in
an :class:`AnalysisError` that says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import torch

from stakes_core.data import ImageDataset, to_float
from stakes_core.infra.cache import state_sha256
from stakes_core.infra.errors import StakesError
from stakes_core.methods import METHODS, UnlearnContext
from stakes_core.run.config import ExperimentConfig, resolve_device
from stakes_core.run.context import dataset_fingerprint, dataset_with_fingerprint, prepare_context
from stakes_core.run.results import RunResult, RunResultError

INSTANCE_KINDS = ("forget", "retained", "test")
"""Forgotten training instances, retained training instances and held-out test instances."""


class AnalysisError(StakesError, ValueError):
    """An analysis was asked for something the run cannot give."""


@dataclass(frozen=True)
class Instances:
    """Images an analysis looks at: ``kinds[i]`` says which split ``indices[i]`` indexes
    (``forget`` and ``retained`` index the training set, ``test`` the test set)."""

    kinds: tuple[str, ...]
    indices: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.indices)

    def of_kind(self, kind: str) -> list[int]:
        """Positions (not dataset indices) of the instances of one kind."""
        return [i for i, k in enumerate(self.kinds) if k == kind]


@dataclass
class LoadedRun:
    """A run directory with everything needed to recompute what its models do."""

    directory: Path
    result: RunResult
    context: UnlearnContext
    original_sha256: str
    _models: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)

    @property
    def dataset(self) -> ImageDataset:
        return self.context.dataset

    @property
    def device(self) -> str:
        return self.context.device

    @property
    def methods(self) -> list[str]:
        """The methods of the run whose unlearned weights were saved, in the order they ran."""
        return [m for m in self.result.methods if (self.directory / "models" / f"{m}.pt").is_file()]

    @property
    def forget_indices(self) -> list[int]:
        return list(self.result.forget_indices)

    @property
    def retained_indices(self) -> list[int]:
        """The run's probe set: retained training instances whose structure was tracked."""
        return list(self.result.probe_indices)

    def model(self, method: str) -> torch.nn.Module:
        """The deployed model of ``method`` (``"original"`` is the pretrained model), eval mode."""
        if method == "original":
            return self.context.original
        if method not in self._models:
            if method not in self.result.methods:
                raise AnalysisError(
                    f"method '{method}' was not run in {self.directory} (it has: {', '.join(self.result.methods)})"
                )
            try:
                state = RunResult.model_state(self.directory, method)
            except RunResultError as error:  # no saved model, or a damaged one
                saved = (self.directory / "models" / f"{method}.pt").is_file()
                hint = "rerun it" if saved else "rerun without --no-models"
                raise AnalysisError(f"{error}; {hint} to analyse its model") from None
            model = METHODS.get(method).deployed_architecture(self.context.original, self.context.anchors.shape[1])
            model.load_state_dict(state)
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            self._models[method] = model.to(self.device).eval()
        return self._models[method]

    def check_methods(self, methods: Sequence[str] | None) -> list[str]:
        """``methods`` checked against the run (all analysable ones when ``None``)."""
        if methods is None:
            return self.methods
        for method in methods:
            self.model(method)
        return list(methods)

    def instances(
        self,
        forget: Sequence[int] | None = None,
        retained: Sequence[int] | None = None,
        test: Sequence[int] | None = None,
    ) -> Instances:
        """Instances by dataset index, each checked to belong to the run's group it is named in."""
        forget_set = set(self.forget_indices)
        limits = {"retained": self.dataset.num_train, "test": int(self.dataset.test_labels.numel())}
        kinds: list[str] = []
        indices: list[int] = []
        for kind, chosen in (("forget", forget), ("retained", retained), ("test", test)):
            for index in chosen or ():
                index = int(index)
                if kind == "forget" and index not in forget_set:
                    raise AnalysisError(
                        f"training instance {index} is not in this run's forget set "
                        f"(k={len(forget_set)}: {sorted(forget_set)[:8]}{' …' if len(forget_set) > 8 else ''})"
                    )
                if kind != "forget" and not 0 <= index < limits[kind]:
                    split = "training" if kind == "retained" else "test"
                    raise AnalysisError(f"{split} instance {index} does not exist (0 ≤ index < {limits[kind]})")
                if kind == "retained" and index in forget_set:
                    raise AnalysisError(f"training instance {index} was forgotten in this run, not retained")
                kinds.append(kind)
                indices.append(index)
        if not indices:
            raise AnalysisError("no instances chosen")
        return Instances(tuple(kinds), tuple(indices))

    def default_instances(self, per_kind: int, seed: int = 0) -> Instances:
        """Up to ``per_kind`` forgotten, retained (from the probe set) and seeded test instances."""
        generator = torch.Generator().manual_seed(seed)
        num_test = int(self.dataset.test_labels.numel())
        test = torch.randperm(num_test, generator=generator)[:per_kind].tolist()
        return self.instances(self.forget_indices[:per_kind], self.retained_indices[:per_kind], test)

    def images(self, instances: Instances) -> torch.Tensor:
        """Float images in [0, 1] of ``instances`` (on the CPU)."""
        return to_float(torch.stack([self._split(kind)[0][i] for kind, i in zip(instances.kinds, instances.indices)]))

    def labels(self, instances: Instances) -> torch.Tensor:
        return torch.stack([self._split(kind)[1][i] for kind, i in zip(instances.kinds, instances.indices)])

    def _split(self, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        if kind == "test":
            return self.dataset.test_images, self.dataset.test_labels
        return self.dataset.train_images, self.dataset.train_labels


def load_run(
    directory: str | Path, device: str = "cpu", dataset: ImageDataset | None = None, progress: bool = False
) -> LoadedRun:
    """Load a run directory for analysis, checking that the data and the pretrained model on
    this machine are the ones it used. Pass ``dataset`` to check a dataset already in memory
    (the dashboard's) against the run."""
    directory = Path(directory)
    try:
        result = RunResult.load(directory)
    except RunResultError as error:
        raise AnalysisError(str(error)) from None
    known = {f.name for f in fields(ExperimentConfig)}
    config = ExperimentConfig(**{k: v for k, v in result.config.items() if k in known})
    config.device = resolve_device(device)
    # a run saved before checkpoints were shipped records no model source: its model was trained where it ran
    config.from_scratch = bool(result.config.get("from_scratch", "source" not in result.pretrained))
    if dataset is not None:
        _check_dataset(result, dataset_fingerprint(dataset), directory)
    _, fingerprint = dataset_with_fingerprint(config)
    _check_dataset(result, fingerprint, directory)
    context, pretrained = prepare_context(config, progress=progress)
    original_sha256 = state_sha256(pretrained.model.state_dict())
    expected = result.pretrained.get("state_sha256")
    if expected and original_sha256 != expected:
        raise AnalysisError(
            f"the pretrained model loaded here ({pretrained.source}) is not the one {directory} started from "
            "(it was trained elsewhere or retrained); analyse the run where it was made, or rerun it here"
        )
    if context.forget_idx.tolist() != result.forget_indices:
        raise AnalysisError(f"{directory}: the forget set drawn for seed {config.seed} differs from the saved one")
    return LoadedRun(directory, result, context, original_sha256)


def _check_dataset(result: RunResult, fingerprint: dict, directory: Path) -> None:
    saved = result.dataset
    same = fingerprint["name"] == saved["name"] and list(fingerprint["shape"]) == list(saved["image_shape"])
    if same and "train_sha256" in saved:
        same = fingerprint["train_sha256"] == saved["train_sha256"]
    if not same:
        raise AnalysisError(
            f"{directory} was made on dataset '{saved['name']}' {tuple(saved['image_shape'])}, which is not the "
            f"dataset '{fingerprint['name']}' {tuple(fingerprint['shape'])} loaded here (or its images differ)"
        )
