"""Per-class attribute descriptions: the text the anchors ("stakes") are encoded from.

A descriptions file is a JSON object mapping each class name to a list of short visual
attribute strings, in the format of the StructGuard authors' ``CIFAR10_Description.json``.
Key order matters: it is the row order of the anchor matrix.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from pathlib import Path

from stakes_core.infra.assets import asset_path, list_assets
from stakes_core.infra.errors import StakesError

Descriptions = dict[str, list[str]]


class DescriptionsError(StakesError, ValueError):
    """A descriptions file or mapping is missing, malformed or does not fit the dataset."""


class ClassMismatchWarning(UserWarning):
    """Descriptions and dataset have as many classes, but some names differ."""


def shipped_descriptions() -> list[str]:
    """Names of the description sets shipped with stakes (empty when assets are not installed)."""
    try:
        return list_assets("descriptions")
    except ModuleNotFoundError:
        return []


def load_descriptions(source: str | Path | Descriptions) -> Descriptions:
    """Load and validate descriptions from a mapping, a shipped set name or a JSON file.

    A string naming a shipped set (``digits``, ``shapes``, ``cifar10``, ``cifar100``) loads that set; any
    other string or path is read as a JSON file. Key order is preserved.
    """
    if isinstance(source, dict):
        return _validate(source, "descriptions")
    shipped = shipped_descriptions()
    if isinstance(source, str) and source in shipped:
        path = asset_path("descriptions", f"{source}.json")
    else:
        path = Path(source)
    if not path.is_file():
        known = ", ".join(shipped) or "none installed"
        raise DescriptionsError(f"descriptions file '{path}' not found (shipped sets: {known})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as error:
        raise DescriptionsError(
            f"{path}: invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError as error:
        raise DescriptionsError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except DescriptionsError as error:
        raise DescriptionsError(f"{path}: {error}") from None
    return _validate(data, str(path))


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """``json`` hook: a class listed twice would silently lose one of its descriptions."""
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise DescriptionsError(f"class '{key}' appears twice")
        result[key] = value
    return result


def _validate(data: object, origin: str) -> Descriptions:
    """Check the descriptions structure and return a fresh copy with plain lists."""
    if not isinstance(data, dict):
        raise DescriptionsError(f"{origin}: expected a JSON object of class -> attributes, got {type(data).__name__}")
    if not data:
        raise DescriptionsError(f"{origin}: no classes")
    result: Descriptions = {}
    for name, attributes in data.items():
        if not isinstance(name, str) or not name.strip():
            raise DescriptionsError(f"{origin}: class names must be non-empty strings, got {name!r}")
        if not isinstance(attributes, (list, tuple)) or not attributes:
            raise DescriptionsError(f"{origin}: class '{name}' needs a non-empty list of attribute strings")
        for attribute in attributes:
            if not isinstance(attribute, str) or not attribute.strip():
                raise DescriptionsError(
                    f"{origin}: class '{name}' has an attribute that is not a non-empty string: {attribute!r}"
                )
        result[name] = list(attributes)
    return result


def descriptions_hash(descriptions: Descriptions) -> str:
    """SHA-256 of the descriptions as canonical JSON; key order counts (it is the anchor order)."""
    text = json.dumps(descriptions, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def class_prompt(attributes: list[str]) -> str:
    """The text encoded for one class, joined as in the official StructGuard code."""
    return "; ".join(attributes)


def parse_attributes(text: str) -> list[str]:
    """The inverse of :func:`class_prompt` for edited text: attributes split at ``;`` or line
    breaks, trimmed, empty pieces dropped (an all-empty text gives ``[]``, which validation refuses)."""
    return [piece.strip() for piece in re.split(r"[;\n]", text) if piece.strip()]


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name).strip().lower()


def match_classes(descriptions: Descriptions, classes: list[str]) -> Descriptions:
    """Fit the descriptions to a dataset's classes.

    The class counts must agree. When every dataset class is named (ignoring case, spaces,
    underscores and hyphens), the descriptions are reordered to the dataset's class order.
    Otherwise the file's order is kept and a :class:`ClassMismatchWarning` names the
    differences: StructGuard's losses never pair anchor c with class c, so this is allowed.
    """
    if len(descriptions) != len(classes):
        raise DescriptionsError(
            f"descriptions have {len(descriptions)} classes but the dataset has {len(classes)}: "
            f"{_preview(list(descriptions))} vs {_preview(classes)}"
        )
    by_name = {_normalise_name(name): name for name in descriptions}
    missing = [name for name in classes if _normalise_name(name) not in by_name]
    if not missing and len(by_name) == len(descriptions):
        return {by_name[_normalise_name(name)]: descriptions[by_name[_normalise_name(name)]] for name in classes}
    wanted = {_normalise_name(name) for name in classes}
    extra = [name for name in descriptions if _normalise_name(name) not in wanted]
    warnings.warn(
        f"descriptions do not match the dataset's class names (dataset only: {', '.join(missing) or '-'}; "
        f"descriptions only: {', '.join(extra) or '-'}); keeping the descriptions' order",
        ClassMismatchWarning,
        stacklevel=2,
    )
    return dict(descriptions)


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}, ...]" if len(names) > limit else f"[{shown}]"
