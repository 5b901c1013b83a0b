"""Run one unlearning experiment end to end: data, pretrained model, anchors, methods, metrics.

``experiment_config`` turns a preset plus the user's choices into an :class:`ExperimentConfig`;
``run_experiment`` executes it and returns a :class:`~stakes_core.results.RunResult`. Every
method starts from the same pretrained model, forget set, anchors, projection and probe set,
so their structural-collapse curves are comparable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from stakes_core.accel import Acceleration
from stakes_core.anchors import build_anchors, load_descriptions, match_classes
from stakes_core.anchors.variants import check_anchor_source, prototype_anchors, rotated_anchors
from stakes_core.cache import state_sha256
from stakes_core.data import (
    ImageDataset,
    choose_forget_indices,
    choose_probe_indices,
    create_dataset,
)
from stakes_core.methods import (
    METHODS,
    PAPER_METHODS,
    StepRecord,
    UnlearnContext,
    create_method,
)
from stakes_core.metrics import evaluate
from stakes_core.models.pretrain import PretrainConfig, Pretrained, load_or_pretrain
from stakes_core.presets import load_preset
from stakes_core.results import MethodResult, RunResult
from stakes_core.structure import StructureProbe, projection_for


@dataclass
class ExperimentConfig:
    """Everything that determines one run (and nothing that does not)."""

    dataset: dict[str, Any]
    pretrain: dict[str, Any]
    encoder: str
    descriptions: str
    k: int
    seed: int
    methods: list[str]
    method_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    probe_size: int = 300
    record_every: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = False
    anchor_source: str = "text"


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; other names are checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = device
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device '{device}' (choose auto, cpu, cuda, cuda:N or mps)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device '{device}' was asked for but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was asked for but Apple MPS is not available here")
    return device


def order_methods(names: list[str]) -> list[str]:
    """Known methods in the paper's order (l2ul before structguard), then the user's own; each
    name checked against the registry."""
    for name in names:
        METHODS.get(name)
    unique = list(dict.fromkeys(names))
    canonical = [m for m in (*PAPER_METHODS, "oracle") if m in unique]
    return canonical + [m for m in unique if m not in canonical]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"structguard.lr=0.01"`` → ``("structguard", "lr", 0.01)``; values are read as JSON
    when they parse (numbers, booleans), otherwise kept as strings."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ValueError(f"override '{text}' is not of the form method.key=value")
    target, raw = text.split("=", 1)
    method, key = target.split(".", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return method, key, value


def experiment_config(
    preset: str = "digits",
    k: int | None = None,
    seed: int = 0,
    methods: list[str] | None = None,
    overrides: list[str] | None = None,
    encoder: str | None = None,
    descriptions: str | None = None,
    dataset_options: dict[str, Any] | None = None,
    pretrain_epochs: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
    channels_last: bool = False,
    anchor_source: str = "text",
) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a preset and the user's choices (the CLI's path).
    ``precision="bf16"`` and ``channels_last`` are opt-in accelerator settings
    (:class:`~stakes_core.accel.Acceleration`); the defaults keep fp32 results unchanged.
    ``anchor_source`` picks the paper's text anchors or an ablation control
    (:mod:`stakes_core.anchors.variants`)."""
    Acceleration(precision, channels_last)  # fail now on an unknown precision
    check_anchor_source(anchor_source)
    spec = load_preset(preset)
    names = order_methods(methods or list(PAPER_METHODS))
    configs = {name: dict(spec["methods"].get(name, {})) for name in names}
    for text in overrides or []:
        method, key, value = parse_override(text)
        if method not in configs:
            raise ValueError(f"override '{text}' names method '{method}', which is not being run")
        configs[method][key] = value
    for name, values in configs.items():  # fail now on a misspelt hyperparameter, not mid-run
        create_method(name, **values)
    pretrain = dict(spec["pretrain"])
    if pretrain_epochs is not None:
        pretrain["epochs"] = pretrain_epochs
    return ExperimentConfig(
        dataset={**spec["dataset"], **(dataset_options or {})},
        pretrain=pretrain,
        encoder=encoder or spec["anchors"]["encoder"],
        descriptions=descriptions or spec["anchors"]["descriptions"],
        k=k if k is not None else spec["k"][-1],
        seed=seed,
        methods=names,
        method_configs=configs,
        probe_size=spec.get("probe_size", 300),
        device=resolve_device(device),
        precision=precision,
        channels_last=channels_last,
        anchor_source=anchor_source,
    )


def dataset_fingerprint(dataset: ImageDataset) -> dict[str, Any]:
    """What a checkpoint's dataset is, by content: two folders with equal options but other
    images get other checkpoints, and moving a dataset on disk keeps its checkpoint."""
    digest = hashlib.sha256()
    for tensor in (dataset.train_images, dataset.train_labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return {"name": dataset.name, "shape": list(dataset.image_shape), "train_sha256": digest.hexdigest()}


@functools.lru_cache(maxsize=2)
def _load_dataset(options_json: str) -> tuple[ImageDataset, dict[str, Any]]:
    """A dataset and its fingerprint, loaded once per process for a grid of (k, seed) runs."""
    options = json.loads(options_json)
    dataset = create_dataset(options.pop("name"), **options)
    return dataset, dataset_fingerprint(dataset)


def load_dataset(config: ExperimentConfig) -> ImageDataset:
    """The dataset of ``config`` (loaded once per process)."""
    return _load_dataset(json.dumps(config.dataset, sort_keys=True))[0]


def pretrained_model(
    config: ExperimentConfig, progress: bool = True, on_epoch: Callable[[int, int, float], None] | None = None
) -> Pretrained:
    """The cached pretrained model of ``config``, trained first when there is none;
    ``on_epoch(done, total, loss)`` reports training progress."""
    dataset, fingerprint = _load_dataset(json.dumps(config.dataset, sort_keys=True))
    return load_or_pretrain(
        PretrainConfig(**config.pretrain), dataset, fingerprint, config.device, progress, on_epoch=on_epoch
    )


def prepare_context(config: ExperimentConfig, progress: bool = True) -> tuple[UnlearnContext, Pretrained]:
    """Load the dataset, pretrained model (cached) and anchors (cached) of ``config`` and build
    the shared context every method of the run starts from."""
    dataset = load_dataset(config)
    if not 0 < config.k < dataset.num_train:
        raise ValueError(f"k={config.k} is invalid: choose 1 ≤ k < {dataset.num_train} (the number of training images)")
    pretrained = pretrained_model(config, progress)
    descriptions = match_classes(load_descriptions(config.descriptions), dataset.classes)
    device = config.device
    original = pretrained.model.to(device).eval()
    for parameter in original.parameters():
        parameter.requires_grad_(False)
    anchors = source_anchors(config, descriptions, original, dataset).to(device)
    forget_idx = choose_forget_indices(dataset.num_train, config.k, config.seed)
    probe_idx = choose_probe_indices(dataset.num_train, forget_idx, config.probe_size, config.seed)
    projection = projection_for(original.feature_dim, anchors.shape[1], seed=config.seed)
    if projection is not None:
        projection = projection.to(device)
    probe = StructureProbe(dataset.train_images[probe_idx], anchors, original, projection, device)
    context = UnlearnContext(
        original, dataset, forget_idx, anchors, probe, projection, config.seed, device, progress, config.record_every,
        probe_idx, accel=Acceleration(config.precision, config.channels_last),
    )
    return context, pretrained


def source_anchors(
    config: ExperimentConfig, descriptions: dict[str, list[str]], original: torch.nn.Module, dataset: ImageDataset
) -> torch.Tensor:
    """The anchors of ``config.anchor_source``: text anchors, rotated text anchors or prototypes."""
    source = check_anchor_source(config.anchor_source)
    if source == "prototypes":
        return prototype_anchors(original, dataset.train_images, dataset.train_labels, dataset.num_classes, config.device)
    anchors = build_anchors(descriptions, config.encoder)
    return rotated_anchors(anchors, config.seed) if source == "rotated" else anchors


def run_method(
    context: UnlearnContext,
    name: str,
    hyperparameters: dict[str, Any] | None = None,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> MethodResult:
    """Run one method on a prepared context and measure the model it leaves."""
    outcome = create_method(name, **(hyperparameters or {})).run(context, on_step)
    metrics = evaluate(outcome.model, context.dataset, context.forget_idx, device=context.device)
    return MethodResult(
        name, outcome.config, metrics, outcome.steps, outcome.epochs, outcome.timings, outcome.reached_zero,
        outcome.records,
    )


def run_experiment(
    config: ExperimentConfig,
    progress: bool = True,
    on_step: Callable[[str, StepRecord], None] | None = None,
) -> RunResult:
    """Unlearn ``config.k`` seeded training instances with every method of ``config``."""
    context, pretrained = prepare_context(config, progress)
    results = {name: run_method(context, name, config.method_configs.get(name), on_step) for name in config.methods}
    dataset, fingerprint = _load_dataset(json.dumps(config.dataset, sort_keys=True))
    return RunResult(
        config=asdict(config),
        dataset={"name": dataset.name, "classes": dataset.classes, "num_train": dataset.num_train,
                 "num_test": int(dataset.test_labels.numel()), "image_shape": list(dataset.image_shape),
                 "train_sha256": fingerprint["train_sha256"]},
        original=evaluate(context.original, dataset, context.forget_idx, device=context.device),
        pretrained={"test_acc": pretrained.test_acc, "seconds": pretrained.seconds, "from_cache": pretrained.from_cache,
                    "state_sha256": state_sha256(pretrained.model.state_dict())},
        forget_indices=context.forget_idx.tolist(),
        probe_indices=context.probe_idx.tolist(),
        methods=results,
        environment={"torch": torch.__version__, "python": platform.python_version(), "device": context.device,
                     "threads": torch.get_num_threads()},
        models={name: model.cpu() for name, model in context.unlearned.items()},
    )
