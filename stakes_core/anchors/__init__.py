"""Anchors ("stakes"): class descriptions encoded by a frozen text encoder into unit vectors."""

from stakes_core.anchors.build import anchor_similarity, build_anchors
from stakes_core.anchors.descriptions import (
    ClassMismatchWarning,
    Descriptions,
    DescriptionsError,
    class_prompt,
    descriptions_hash,
    load_descriptions,
    match_classes,
    parse_attributes,
    shipped_descriptions,
)
from stakes_core.anchors.encoders import (
    ENCODERS,
    EncoderUnavailableError,
    TextEncoder,
    create_encoder,
    list_encoders,
    register_encoder,
)

__all__ = [
    "ENCODERS",
    "ClassMismatchWarning",
    "Descriptions",
    "DescriptionsError",
    "EncoderUnavailableError",
    "TextEncoder",
    "anchor_similarity",
    "build_anchors",
    "class_prompt",
    "create_encoder",
    "descriptions_hash",
    "list_encoders",
    "load_descriptions",
    "match_classes",
    "parse_attributes",
    "register_encoder",
    "shipped_descriptions",
]
