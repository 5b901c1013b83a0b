"""What one run is: :class:`ExperimentConfig` and ``experiment_config``, which turns a preset
plus the user's choices into one, checking every name and hyperparameter before anything runs."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from stakes_core.anchors import ENCODERS, load_descriptions
from stakes_core.anchors.variants import check_anchor_source
from stakes_core.data import DATASETS
from stakes_core.data.forget import check_seed
from stakes_core.infra.accel import Acceleration
from stakes_core.infra.errors import ConfigError
from stakes_core.methods import METHODS, PAPER_METHODS, create_method
from stakes_core.methods.access import RetainAccessError, access_label
from stakes_core.models import MODELS
from stakes_core.run.presets import load_preset


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
    from_scratch: bool = False
    """Start from a model pretrained on this machine instead of the shipped checkpoint (a
    separate run key: the two models differ)."""
    stop_at: str = "zero"
    """The stopping target (:data:`STOP_TARGETS`): forget accuracy 0 (the paper) or the retrained
    model's forget accuracy on the same forget set (the field's retrain-referenced standard)."""


STOP_TARGETS: dict[str, str] = {
    "zero": "stop once forget accuracy is 0 (the paper's target)",
    "retrain": "stop once forget accuracy is at or below the retrained model's on the same forget set "
               "(the retrain-referenced standard, under which 0 counts as over-forgetting)",
}


def check_stop_at(stop_at: str) -> str:
    """``stop_at`` if it is one of :data:`STOP_TARGETS`, else a one-line error."""
    if stop_at not in STOP_TARGETS:
        raise ConfigError(f"unknown stopping target '{stop_at}' (choose {' or '.join(STOP_TARGETS)})")
    return stop_at


METHOD_GROUPS: dict[str, str] = {
    "paper": "the paper's four methods (neggrad, adv, l2ul, structguard)",
    "all": "every registered method, the retrain reference and the oracle included",
    "retain-free": "every registered method that reads only the forget set (the paper's protocol)",
}


def expand_methods(names: list[str]) -> list[str]:
    """Method names with the groups of :data:`METHOD_GROUPS` spelled out (in registry order); a
    group adds only the methods not named before it, and a name given twice stays twice (refused
    by :func:`order_methods`)."""
    groups = {
        "paper": list(PAPER_METHODS),
        "all": METHODS.names(),
        "retain-free": [m for m in METHODS.names() if METHODS.get(m).data_access == "forget"],
    }
    expanded: list[str] = []
    for name in names:
        expanded += [m for m in groups[name] if m not in expanded] if name in groups else [name]
    return expanded


def check_retain_free(names: list[str]) -> None:
    """Refuse, in one line, the methods of ``names`` that read more than the forget set (the
    "retain-free only" filter: the paper's protocol)."""
    readers = [f"{name} ({access_label(METHODS.get(name).data_access)})" for name in names
               if METHODS.get(name).data_access != "forget"]
    if readers:
        raise RetainAccessError(
            f"retain-free only was asked for, but {', '.join(readers)} read more than the forget set: "
            "drop them or lift the filter"
        )


def check_device_name(device: str) -> str:
    """A device name torch understands (``auto``, cpu, cuda, cuda:N, mps), without asking whether
    this machine has it (a sweep's cells may run on another machine; :func:`resolve_device` asks)."""
    if device == "auto":
        return device
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = device
    if kind not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device '{device}' (choose auto, cpu, cuda, cuda:N or mps)")
    return device


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; other names are checked."""
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    check_device_name(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for but CUDA is not available here")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for but Apple MPS is not available here")
    return device


def order_methods(names: list[str]) -> list[str]:
    """The retrain reference, the known methods in the paper's order (l2ul before structguard), the
    oracle, then the others in the order given; each
    name checked against the registry, and a name given twice refused (a run has each method once)."""
    for name in names:
        METHODS.get(name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        verb = "is" if len(repeated) == 1 else "are"
        raise ConfigError(
            f"method {', '.join(repr(name) for name in repeated)} {verb} named more than once: a run has each "
            "method once, so name it once"
        )
    unique = list(dict.fromkeys(names))
    canonical = [m for m in ("retrain", *PAPER_METHODS, "oracle") if m in unique]
    return canonical + [m for m in unique if m not in canonical]


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"structguard.lr=0.01"`` → ``("structguard", "lr", 0.01)``; values are read as JSON
    when they parse (numbers, booleans), otherwise kept as strings."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override '{text}' is not of the form method.key=value")
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
    from_scratch: bool = False,
    stop_at: str = "zero",
    retain_free_only: bool = False,
) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a preset and the user's choices (the CLI's path).
    ``precision="bf16"`` and ``channels_last`` are opt-in accelerator settings
    (:class:`~stakes_core.infra.accel.Acceleration`); the defaults keep fp32 results unchanged.
    ``anchor_source`` picks the paper's text anchors or an ablation control
    (:mod:`stakes_core.anchors.variants`). ``from_scratch`` pretrains here instead of loading the
    shipped checkpoint (:mod:`stakes_core.models.shipped`). ``stop_at`` picks the stopping target
    (:data:`STOP_TARGETS`); ``retain_free_only`` refuses methods that read D_r or retrain."""
    Acceleration(precision, channels_last)  # fail now on an unknown precision
    check_stop_at(stop_at)
    check_anchor_source(anchor_source)
    seed = check_seed(seed)
    spec = load_preset(preset)
    names = order_methods(expand_methods(methods or list(PAPER_METHODS)))
    if retain_free_only:
        check_retain_free(names)
    configs = {name: dict(spec["methods"].get(name, {})) for name in names}
    for text in overrides or []:
        method, key, value = parse_override(text)
        if method not in configs:
            raise ConfigError(f"override '{text}' names method '{method}', which is not being run")
        configs[method][key] = value
    for name, values in configs.items():  # fail now on a misspelt hyperparameter, not mid-run
        create_method(name, **values)
    pretrain = dict(spec["pretrain"])
    if pretrain_epochs is not None:
        pretrain["epochs"] = pretrain_epochs
    check_seed(pretrain.get("seed", 0), "pretrain.seed")
    dataset = {**spec["dataset"], **(dataset_options or {})}
    encoder = encoder or spec["anchors"]["encoder"]
    descriptions = descriptions or spec["anchors"]["descriptions"]
    DATASETS.get(dataset.get("name", ""))  # fail now on a misspelt name or a missing file, not after pretraining
    MODELS.get(pretrain["model"])
    ENCODERS.get(encoder.partition(":")[0])
    load_descriptions(descriptions)
    return ExperimentConfig(
        dataset=dataset,
        pretrain=pretrain,
        encoder=encoder,
        descriptions=descriptions,
        k=k if k is not None else spec["k"][-1],
        seed=seed,
        methods=names,
        method_configs=configs,
        probe_size=spec.get("probe_size", 300),
        device=resolve_device(device),
        precision=precision,
        channels_last=channels_last,
        anchor_source=anchor_source,
        from_scratch=from_scratch,
        stop_at=stop_at,
    )


def method_hyperparameters(preset: str | Path, method: str) -> dict[str, Any]:
    """Every hyperparameter of ``method`` as ``preset`` sets it, the method's defaults elsewhere."""
    return asdict(create_method(method, **load_preset(preset)["methods"].get(method, {})).config)
