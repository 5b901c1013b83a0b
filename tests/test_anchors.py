"""Tests of stakes_core.anchors: descriptions, text encoders and the anchor cache (CPU, offline)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import open_clip
import pytest
import torch
import torch.nn.functional as F

from stakes_core.anchors import (
    ENCODERS,
    ClassMismatchWarning,
    DescriptionsError,
    EncoderUnavailableError,
    TextEncoder,
    anchor_similarity,
    build_anchors,
    class_prompt,
    create_encoder,
    descriptions_hash,
    load_descriptions,
    match_classes,
    parse_attributes,
    register_encoder,
    shipped_descriptions,
)
from stakes_core.anchors.build import mean_off_diagonal
from stakes_core.infra.registry import UnknownNameError

AUTHORS_CIFAR100 = Path("/work/shared/reference/structguard_descriptions/CIFAR100_Description.json")

# torchvision.datasets.CIFAR10(...).classes and CIFAR100(...).classes
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

SAMPLE = {
    "zebra": ["black and white stripes", "four legs"],
    "airplane": ["wings extending from the sides", "jet engines"],
    "cat": ["pointed ears", "whiskers"],
}

TINY_CLIP = "stakes-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


pytestmark = pytest.mark.usefixtures("isolated_cache")  # every test gets its own cache (conftest)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register a ~1 M parameter open_clip architecture (name = the config file's stem)."""
    path = tmp_path_factory.mktemp("clip_configs") / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_CLIP


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- descriptions -------------------------------------------------------------------------------


def test_load_from_path_and_dict_preserves_key_order(tmp_path: Path) -> None:
    path = write_json(tmp_path / "d.json", json.dumps(SAMPLE))
    from_file = load_descriptions(path)
    assert from_file == SAMPLE
    assert list(from_file) == ["zebra", "airplane", "cat"]
    assert list(load_descriptions(str(path))) == ["zebra", "airplane", "cat"]
    assert load_descriptions(SAMPLE) == SAMPLE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"cat": ["ears",]}', "line 1, column"),
        ('["cat", "dog"]', "expected a JSON object"),
        ("{}", "no classes"),
        ('{"cat": []}', "class 'cat'"),
        ('{"cat": "pointed ears"}', "class 'cat'"),
        ('{"cat": ["ears", 3]}', "class 'cat'"),
        ('{"cat": ["ears", "  "]}', "class 'cat'"),
        ('{"cat": ["ears"], "cat": ["tail"]}', "appears twice"),
    ],
)
def test_malformed_descriptions_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    path = write_json(tmp_path / "bad.json", text)
    with pytest.raises(DescriptionsError, match=message) as caught:
        load_descriptions(path)
    assert "\n" not in str(caught.value)


def test_bad_json_error_names_line_and_column(tmp_path: Path) -> None:
    path = write_json(tmp_path / "bad.json", '{\n  "cat": ["ears"]\n  "dog": ["tail"]\n}')
    with pytest.raises(DescriptionsError, match="line 3, column 3"):
        load_descriptions(path)


def test_missing_file_and_bad_dict_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DescriptionsError, match="not found"):
        load_descriptions(tmp_path / "absent.json")
    with pytest.raises(DescriptionsError, match="class 'cat'"):
        load_descriptions({"cat": [""]})


@pytest.mark.parametrize(
    ("name", "classes"),
    [("digits", [str(digit) for digit in range(10)]), ("cifar10", CIFAR10_CLASSES), ("cifar100", CIFAR100_CLASSES)],
)
def test_shipped_set_matches_its_dataset(name: str, classes: list[str]) -> None:
    if name not in shipped_descriptions():
        pytest.skip(f"shipped descriptions '{name}' are not installed")
    descriptions = load_descriptions(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClassMismatchWarning)
        assert list(match_classes(descriptions, classes)) == classes


def test_hash_and_prompt() -> None:
    changed = {**SAMPLE, "cat": ["pointed ears", "long whiskers"]}
    reordered = dict(reversed(SAMPLE.items()))
    assert descriptions_hash(SAMPLE) == descriptions_hash(json.loads(json.dumps(SAMPLE)))
    assert descriptions_hash(changed) != descriptions_hash(SAMPLE)
    assert descriptions_hash(reordered) != descriptions_hash(SAMPLE)
    assert class_prompt(["a", "b c"]) == "a; b c"


def test_parse_attributes_inverts_class_prompt() -> None:
    attributes = ["a closed loop", "no straight strokes"]
    assert parse_attributes(class_prompt(attributes)) == attributes
    assert parse_attributes(" one ;\n two;; ") == ["one", "two"]
    assert parse_attributes(" ; \n ") == []


def test_match_classes_reorders_by_normalised_name() -> None:
    descriptions = {"Pickup Truck": ["bed"], "cat": ["ears"], "aquarium-fish": ["fins"]}
    matched = match_classes(descriptions, ["aquarium_fish", "cat", "pickup_truck"])
    assert list(matched) == ["aquarium-fish", "cat", "Pickup Truck"]
    assert matched["cat"] == ["ears"]


def test_match_classes_rejects_count_mismatch() -> None:
    with pytest.raises(DescriptionsError, match="descriptions have 3 classes but the dataset has 2"):
        match_classes(SAMPLE, ["zebra", "cat"])


def test_match_classes_warns_on_name_mismatch_and_keeps_order() -> None:
    with pytest.warns(ClassMismatchWarning, match="dataset only: dog.*descriptions only: zebra"):
        matched = match_classes(SAMPLE, ["airplane", "cat", "dog"])
    assert list(matched) == list(SAMPLE)


@pytest.mark.skipif(not AUTHORS_CIFAR100.exists(), reason="the authors' CIFAR-100 descriptions are not available")
def test_authors_cifar100_file_has_cabbage_instead_of_worm() -> None:
    assert len(CIFAR100_CLASSES) == 100 and CIFAR100_CLASSES == sorted(CIFAR100_CLASSES)
    descriptions = load_descriptions(AUTHORS_CIFAR100)
    assert len(descriptions) == 100
    with pytest.warns(ClassMismatchWarning, match="dataset only: worm; descriptions only: cabbage"):
        matched = match_classes(descriptions, CIFAR100_CLASSES)
    assert list(matched) == list(descriptions)


# --- encoders -----------------------------------------------------------------------------------


def test_encoder_spec_errors() -> None:
    with pytest.raises(UnknownNameError, match="unknown encoder 'bert'"):
        create_encoder("bert:base")
    for spec in ["clip:ViT-B-32", "clip:/openai", "random:abc", "random:0", "minilm:large"]:
        with pytest.raises(ValueError, match="expected|takes no argument"):
            create_encoder(spec)
    with pytest.raises(ValueError, match="unknown open_clip architecture"):
        create_encoder("clip:no-such-arch/none")


def test_random_encoder_is_deterministic_per_text() -> None:
    encoder = create_encoder("random:16")
    vectors = encoder.encode(["cat", "dog", "cat"])
    assert vectors.shape == (3, 16) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3))
    assert torch.equal(vectors[0], vectors[2])
    assert not torch.allclose(vectors[0], vectors[1])
    assert torch.equal(create_encoder("random:16").encode(["dog"])[0], vectors[1])
    assert encoder.spec == "random:16" and encoder.dim == 16


def test_tiny_clip_encoder_shape_norm_determinism_and_truncation(tiny_clip: str) -> None:
    encoder = create_encoder(f"clip:{tiny_clip}/none")
    texts = ["pointed ears; whiskers", "wings; jet engines", "; ".join(["a very long attribute"] * 60)]
    vectors = encoder.encode(texts)
    assert encoder.dim == 32
    assert vectors.shape == (3, 32) and vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=1), torch.ones(3))
    assert torch.equal(encoder.encode(texts), vectors)
    assert not vectors.requires_grad


def test_tiny_clip_loads_local_weights(tiny_clip: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = open_clip.create_model(tiny_clip).eval()
    weights = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), weights)
    texts = ["pointed ears; whiskers", "wings; jet engines"]
    with torch.no_grad():
        expected = F.normalize(source.encode_text(open_clip.get_tokenizer(tiny_clip)(texts)), dim=1)

    torch.manual_seed(1)  # a different initialisation: equality below proves the file was loaded
    loaded = create_encoder(f"clip:{tiny_clip}/{weights}").encode(texts)
    torch.manual_seed(1)
    random_init = create_encoder(f"clip:{tiny_clip}/none").encode(texts)
    assert torch.allclose(loaded, expected, atol=1e-6)
    assert not torch.allclose(random_init, expected, atol=1e-3)

    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG}))
    with pytest.raises(EncoderUnavailableError, match="no CLIP weights"):
        create_encoder(f"clip:{tiny_clip}/local-dir:{folder}")
    torch.save(source.state_dict(), folder / "open_clip_pytorch_model.bin")
    from_folder = create_encoder(f"clip:{tiny_clip}/local-dir:{folder}").encode(texts)
    assert torch.allclose(from_folder, expected, atol=1e-6)


def test_unobtainable_clip_weights_give_one_line_error(tiny_clip: str, tmp_path: Path) -> None:
    with pytest.raises(EncoderUnavailableError, match="neither a pretrained tag") as caught:
        create_encoder(f"clip:{tiny_clip}/openai")
    assert "\n" not in str(caught.value)

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderUnavailableError, match="cannot load CLIP weights from") as caught:
        create_encoder(f"clip:{tiny_clip}/{broken}")
    assert "\n" not in str(caught.value)


def test_failed_download_gives_one_line_hint(tiny_clip: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -2] Name or service not known\n  a long hub traceback")

    fake_tag = {"hf_hub": "example/tiny-clip/"}
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda model, tag: fake_tag)
    monkeypatch.setattr(open_clip.factory, "get_pretrained_cfg", lambda model, tag: fake_tag)
    monkeypatch.setattr(open_clip.factory, "download_pretrained", offline)
    with pytest.raises(EncoderUnavailableError) as caught:
        create_encoder(f"clip:{tiny_clip}/openai")
    message = str(caught.value)
    assert "\n" not in message
    assert "no internet?" in message and f"clip:{tiny_clip}//path/to/" in message and "minilm" in message


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return create_encoder("minilm")


def test_minilm_is_384d_unit_and_sensible(minilm: TextEncoder) -> None:
    cat, dog, truck = minilm.encode(["a photo of a cat", "a photo of a dog", "a truck"])
    assert minilm.dim == 384 and cat.shape == (384,)
    assert torch.allclose(torch.stack([cat, dog, truck]).norm(dim=1), torch.ones(3), atol=1e-5)
    assert cat @ dog > cat @ truck


def test_minilm_output_is_usable_in_autograd(minilm: TextEncoder) -> None:
    anchors = minilm.encode(["wings", "wheels"])  # not an inference tensor: losses may use it
    features = torch.randn(4, 384, requires_grad=True)
    (features @ anchors.T).sum().backward()
    assert features.grad is not None


# --- build_anchors ------------------------------------------------------------------------------


class CountingEncoder(TextEncoder):
    """A cheap deterministic encoder that records how often it is constructed."""

    built = 0
    dim = 8

    def __init__(self, argument: str, device: str) -> None:
        CountingEncoder.built += 1

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        return torch.stack([torch.arange(1.0, 9.0) * (len(text) % 7 + 1) + len(text) for text in texts])


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> type[CountingEncoder]:
    monkeypatch.setattr(ENCODERS, "_entries", dict(ENCODERS._entries))  # undo the registration afterwards
    monkeypatch.setattr(CountingEncoder, "built", 0)
    register_encoder("counting", CountingEncoder)
    return CountingEncoder


def test_build_anchors_shape_order_and_cache_hit(counting: type[CountingEncoder], isolated_cache: Path) -> None:
    anchors = build_anchors(SAMPLE, "counting")
    assert anchors.shape == (3, 8) and anchors.dtype == torch.float32
    assert torch.allclose(anchors.norm(dim=1), torch.ones(3))
    expected = create_encoder("counting").encode([class_prompt(a) for a in SAMPLE.values()])
    assert torch.equal(anchors, expected)
    counting.built = 0
    assert torch.equal(build_anchors(SAMPLE, "counting"), anchors)
    assert counting.built == 0
    assert len(list((isolated_cache / "anchors").glob("*.pt"))) == 1


def test_different_descriptions_or_encoders_use_different_keys(
    counting: type[CountingEncoder], isolated_cache: Path
) -> None:
    build_anchors(SAMPLE, "counting")
    build_anchors({**SAMPLE, "cat": ["pointed ears"]}, "counting")
    build_anchors(SAMPLE, "random:8")
    assert counting.built == 2
    assert len(list((isolated_cache / "anchors").glob("*.pt"))) == 3


def test_use_cache_false_neither_reads_nor_writes(counting: type[CountingEncoder], isolated_cache: Path) -> None:
    build_anchors(SAMPLE, "counting", use_cache=False)
    build_anchors(SAMPLE, "counting", use_cache=False)
    assert counting.built == 2
    assert not (isolated_cache / "anchors").exists()


def test_corrupt_cache_entry_is_rebuilt(
    counting: type[CountingEncoder], isolated_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anchors = build_anchors(SAMPLE, "counting")
    (entry,) = (isolated_cache / "anchors").glob("*.pt")
    entry.write_bytes(b"truncated")
    with caplog.at_level("WARNING", logger="stakes_core.anchors.build"):
        rebuilt = build_anchors(SAMPLE, "counting")
    assert torch.equal(rebuilt, anchors)
    assert counting.built == 2
    assert "rebuilding" in caplog.text
    counting.built = 0
    assert torch.equal(build_anchors(SAMPLE, "counting"), anchors)
    assert counting.built == 0  # the rebuilt entry was written back


def test_local_weights_change_invalidates_cache(tiny_clip: str, tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    torch.save(open_clip.create_model(tiny_clip).state_dict(), weights)
    first = build_anchors(SAMPLE, f"clip:{tiny_clip}/{weights}")
    first_mtime = weights.stat().st_mtime_ns
    torch.manual_seed(1)
    torch.save(open_clip.create_model(tiny_clip).state_dict(), weights)
    os.utime(weights, ns=(first_mtime + 10**9, first_mtime + 10**9))  # same size; a later file
    second = build_anchors(SAMPLE, f"clip:{tiny_clip}/{weights}")
    assert not torch.allclose(first, second)


def test_mean_off_diagonal_ignores_self_similarity() -> None:
    similarity = torch.tensor([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    assert mean_off_diagonal(similarity) == pytest.approx(0.4)
    with pytest.raises(ValueError):
        mean_off_diagonal(torch.ones(1, 1))


def test_anchor_similarity_is_a_cosine_matrix() -> None:
    anchors = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, -3.0]])
    similarity = anchor_similarity(anchors)
    assert similarity.shape == (3, 3)
    assert torch.allclose(similarity.diagonal(), torch.ones(3))
    assert torch.allclose(similarity, similarity.T)
    assert similarity[0, 1] == pytest.approx(2**-0.5)
