"""Backbones (shapes, feature/classifier split, normalisation inside) and the checkpoint cache."""

from __future__ import annotations

import pytest
import torch

from stakes_core.infra.cache import CorruptCacheError, CorruptCacheWarning, TensorCache, config_key
from stakes_core.infra.errors import ConfigError
from stakes_core.infra.registry import UnknownNameError
from stakes_core.models import create_model, list_models, register_model
from stakes_core.models.pretrain import PretrainConfig, load_or_pretrain
from stakes_core.models.protocol import Backbone, is_backbone
from stakes_core.testing import scratch_registries
from tests.helpers import tiny_dataset


@pytest.mark.parametrize(
    ("name", "channels", "size", "feature_dim"),
    [("resnet18_cifar", 3, 32, 512), ("resnet50_cifar", 3, 32, 2048), ("resnet18_narrow", 1, 16, 64)],
)
def test_backbones_split_features_and_head(name: str, channels: int, size: int, feature_dim: int) -> None:
    model = create_model(name, 10, channels, [0.5] * channels, [0.25] * channels).eval()
    x = torch.rand(2, channels, size, size)
    features = model.features(x)
    assert features.shape == (2, feature_dim) == (2, model.feature_dim)
    assert torch.allclose(model(x), model.classifier(features))
    assert model.classifier.out_features == 10


def test_builtin_models_are_backbones_with_a_gradcam_layer() -> None:
    model = create_model("resnet18_narrow", 10, 1, [0.5], [0.25])
    assert is_backbone(model) and isinstance(model, Backbone)
    assert model.gradcam_layer() is model.layer4[-1] and model.gradcam_layer("layer3") is model.layer3[-1]
    with pytest.raises(ConfigError, match="no stage 'fc' for Grad-CAM"):
        model.gradcam_layer("fc")


class SubmoduleHead(torch.nn.Module):
    """A user's backbone whose head is a submodule (kept in ``_modules``, not a property)."""

    def __init__(self, num_classes: int, in_channels: int, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
        self.classifier = torch.nn.Linear(4, num_classes)
        self.feature_dim = 4

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def gradcam_layer(self, stage: str | None = None) -> torch.nn.Module:
        return self.body[0]


def test_create_model_checks_a_factory_builds_a_backbone() -> None:
    with scratch_registries():
        register_model("submodule_head", SubmoduleHead)
        register_model("bare_linear", lambda num_classes, in_channels, mean, std: torch.nn.Linear(4, num_classes))
        register_model("not_a_module", lambda **kwargs: object())
        assert create_model("submodule_head", 3, 1, [0.5], [0.25]).feature_dim == 4
        lacks = "lacks features, classifier, feature_dim, gradcam_layer$"
        with pytest.raises(TypeError, match=f"'bare_linear' returned a Linear .* {lacks}"):
            create_model("bare_linear", 3, 1, [0.5], [0.25])
        with pytest.raises(TypeError, match="'not_a_module' returned a object .* lacks features, classifier"):
            create_model("not_a_module", 3, 1, [0.5], [0.25])


def test_paper_resnet18_has_a_stem_maxpool_and_resnet50_does_not() -> None:
    r18 = create_model("resnet18_cifar", 10, 3, [0.5] * 3, [0.25] * 3)
    r50 = create_model("resnet50_cifar", 100, 3, [0.5] * 3, [0.25] * 3)
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in r18.stem)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in r50.stem)


def test_narrow_resnet_takes_a_stem_maxpool_that_halves_the_maps() -> None:
    plain = create_model("resnet18_narrow", 12, 3, [0.5] * 3, [0.25] * 3, width=4)
    pooled = create_model("resnet18_narrow", 12, 3, [0.5] * 3, [0.25] * 3, width=4, stem_maxpool=True)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in plain.stem)
    assert any(isinstance(m, torch.nn.MaxPool2d) for m in pooled.stem)
    x = torch.rand(2, 3, 32, 32)
    assert pooled.layer1(pooled.stem(pooled.normalize(x))).shape[-1] == 16
    assert plain.layer1(plain.stem(plain.normalize(x))).shape[-1] == 32
    assert pooled.features(x).shape == plain.features(x).shape == (2, 32)


def test_normalisation_lives_inside_the_model() -> None:
    model = create_model("resnet18_narrow", 3, 1, [0.5], [0.25]).eval()
    x = torch.rand(2, 1, 8, 8)
    stem_input = model.normalize(x)
    assert torch.allclose(stem_input, (x - 0.5) / 0.25)
    with pytest.raises(ValueError, match="mean/std need 3 values"):
        create_model("resnet18_narrow", 3, 3, [0.5], [0.25])


def test_model_registry_accepts_user_models_and_rejects_unknown_names() -> None:
    assert {"resnet18_cifar", "resnet50_cifar", "resnet18_narrow"} <= set(list_models())
    with pytest.raises(UnknownNameError, match="unknown model 'vgg'"):
        create_model("vgg", 10, 3, [0.5] * 3, [0.25] * 3)
    register_model("test_wide_narrow", lambda **kw: create_model("resnet18_narrow", width=4, **kw))
    assert create_model("test_wide_narrow", 5, 1, [0.5], [0.2]).feature_dim == 32


def test_tensor_cache_round_trip_and_corruption(isolated_cache) -> None:
    cache = TensorCache("things")
    key = config_key({"a": 1, "b": [1, 2]})
    assert key == config_key({"b": [1, 2], "a": 1})
    cache.save(key, {"x": torch.arange(3)}, {"a": 1})
    assert torch.equal(cache.load(key)["x"], torch.arange(3))
    payload, _ = cache.paths(key)
    payload.write_bytes(payload.read_bytes()[:-5])
    with pytest.raises(CorruptCacheError, match="checksum mismatch"):
        cache.load(key)


def test_pretraining_is_cached_by_config_and_a_corrupt_checkpoint_is_retrained(isolated_cache) -> None:
    dataset = tiny_dataset()
    config = PretrainConfig(model="resnet18_narrow", model_kwargs={"width": 2}, epochs=2, batch_size=32)
    identity = {"name": "tiny"}
    epochs, cached_epochs = [], []
    first = load_or_pretrain(config, dataset, identity, progress=False, on_epoch=lambda *e: epochs.append(e))
    second = load_or_pretrain(config, dataset, identity, progress=False, on_epoch=lambda *e: cached_epochs.append(e))
    assert (first.source, second.source) == ("trained", "cache")
    assert [(done, total) for done, total, _ in epochs] == [(1, 2), (2, 2)] and cached_epochs == []
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    other = load_or_pretrain(PretrainConfig(**{**config.__dict__, "seed": 1}), dataset, identity, progress=False)
    assert other.source == "trained"
    checkpoints = sorted((isolated_cache / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 2
    good = checkpoints[0].read_bytes()
    checkpoints[0].write_bytes(good[: len(good) // 2])
    with pytest.warns(CorruptCacheWarning, match=f"checksum mismatch for .*{checkpoints[0].name}.*rebuilding"):
        again = [load_or_pretrain(PretrainConfig(**{**config.__dict__, "seed": seed}), dataset, identity,
                                  progress=False) for seed in (0, 1)]
    assert sorted(run.source for run in again) == ["cache", "trained"]  # the damaged one retrained, never used
    assert [load_or_pretrain(PretrainConfig(**{**config.__dict__, "seed": seed}), dataset, identity,
                             progress=False).source for seed in (0, 1)] == ["cache", "cache"]  # whole again


def test_pretraining_rejects_zero_epochs() -> None:
    with pytest.raises(ValueError, match="epochs must be"):
        load_or_pretrain(PretrainConfig(model="resnet18_narrow", epochs=0), tiny_dataset(), {}, use_cache=False)
