"""Shapes: a synthetic, procedurally drawn image set whose classes are nameable attributes.

Nothing here is real data: every image is drawn from a seeded random generator. A class is one
combination of three attributes, so its meaning is known exactly and text anchors can state it:

- colour: ``red`` or ``blue``;
- fill: ``filled`` (a solid shape) or ``outline`` (only a band along the border, the background
  showing inside);
- shape: ``circle``, ``square`` or ``triangle`` (equilateral).

That makes 12 classes named ``<colour>_<fill>_<shape>`` (``red_filled_circle`` …
``blue_outline_triangle``). What varies within a class and does not define it: the position,
the size (radius 18-28 % of the image side), the rotation (up to ±30°), the outline's
thickness (20-30 % of the radius, at least 1 px), the exact shade (each channel jittered), the
background (a greyish level with a slight tint and a linear gradient, overlaid with three
rectangular patches of other neutral tones), two small distractor shapes of a random kind in
green, yellow or white (each present with probability 3/4, drawn beneath the class's shape),
per-pixel noise, and in half of the images a thin straight line of a random colour drawn across
the picture. The patches and distractors give every image content of its own, as a photograph
has: without them the images of a class were so alike that forgetting a few dozen of them to
accuracy 0 forgot their classes (docs/shapes.md). A small rotated square is close to a circle and
a distractor line or shape can cut a shape or cross its hole, so a model does not get every image
right.

Only elementwise arithmetic (``+ - * /``, square roots, comparisons) and NumPy's bit-generator
draws go into a pixel, no trigonometry or other transcendental functions, whose last bits may differ
between maths libraries: the same seed is meant to give the same bytes on other machines too,
because a checkpoint is keyed by the training images' SHA-256 (checked on this project's machine
only). The tensors are cached like the digits (the cache's ``datasets`` part, keyed by the options).
"""

from __future__ import annotations

import numpy as np
import torch

from stakes_core.data.base import DATASETS, Augmentation, ImageDataset
from stakes_core.data.batches import channel_mean_std
from stakes_core.infra.cache import TensorCache, config_key
from stakes_core.infra.errors import ConfigError

COLOURS = ("red", "blue")
FILLS = ("filled", "outline")
SHAPES = ("circle", "square", "triangle")
CLASSES = [f"{colour}_{fill}_{shape}" for colour in COLOURS for fill in FILLS for shape in SHAPES]
"""Class names in label order: label = (colour · 2 + fill) · 3 + shape."""

MIN_IMAGE_SIZE = 16
"""Below this side an outline and a small shape no longer fit in distinguishable pixels."""

RENDER_VERSION = 2
"""Part of the cache key: bump it whenever the drawing changes, so old tensors are not reused."""

_CHUNK = 1024
"""Images drawn at once: bounds the float32 work arrays (4 MB per N×S×S array at 32×32)."""

_COLOUR_RANGES = np.array([
    [(0.65, 1.0), (0.0, 0.3), (0.0, 0.3)],  # red
    [(0.0, 0.3), (0.1, 0.45), (0.65, 1.0)],  # blue
])
"""Per colour (in :data:`COLOURS` order), the (R, G, B) uniform ranges of a shape's shade: red and blue
stay apart, the exact shade varies."""

_DISTRACTOR_COLOURS = np.array([
    [(0.0, 0.3), (0.55, 0.9), (0.0, 0.3)],  # green
    [(0.75, 1.0), (0.75, 1.0), (0.0, 0.3)],  # yellow
    [(0.8, 1.0), (0.8, 1.0), (0.8, 1.0)],  # white
])
"""The (R, G, B) ranges of a distractor shape's shade: none is red or blue, so the class's colour stays
the only red or blue object."""

_PATCHES = 3
_DISTRACTORS = 2
"""Background patches and distractor shapes drawn per image (a distractor is shown with probability 3/4)."""

_SQUARE_HALF_SIDE = 0.9
_TRIANGLE_INRADIUS = 0.725
"""Square half-side and triangle inradius per unit of the size radius: the three shapes of one size
cover similar areas (3.24 r², 3.14 r² for the circle, 2.73 r²); the triangle reaches 1.45 r from its centre."""

_EXTENT = 2 * _TRIANGLE_INRADIUS
"""How far any shape of radius r reaches from its centre, in units of r (the triangle's corners)."""


@DATASETS.register("shapes")
def load_shapes_dataset(
    image_size: int = 32, train_per_class: int = 1000, test_per_class: int = 200, seed: int = 0, **_
) -> ImageDataset:
    """Draw (or load from the cache) the shapes set: 12 classes, ``train_per_class`` training and
    ``test_per_class`` test images of each, RGB ``image_size``×``image_size`` uint8.

    ``seed`` fixes every image; the training and test images come from separate streams of it.
    Unknown keyword arguments (``root``, ``download``) are ignored, as by every loader. Flips are
    on: a mirrored shape is a shape of the same class.
    """
    if not isinstance(image_size, int) or image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size={image_size} is too small to draw shapes: it must be ≥ {MIN_IMAGE_SIZE} pixels")
    for name, count in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if not isinstance(count, int) or count < 1:
            raise ConfigError(f"{name}={count} is invalid: it must be a whole number ≥ 1")
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed} is invalid: it must be a whole number ≥ 0")
    options = {
        "image_size": image_size, "train_per_class": train_per_class, "test_per_class": test_per_class,
        "seed": seed, "render_version": RENDER_VERSION,
    }
    cache, key = TensorCache("datasets"), "shapes-" + config_key(options)
    with cache.lock(key):
        tensors = cache.load_or_none(key)
        if tensors is None:
            tensors = draw_splits(image_size, train_per_class, test_per_class, seed)
            cache.save(key, tensors, options)
    mean, std = channel_mean_std(tensors["train_images"])
    return ImageDataset(
        name="shapes", classes=list(CLASSES), **tensors, mean=mean, std=std,
        augmentation=Augmentation(pad=2, flip=True),
    )


def draw_splits(image_size: int, train_per_class: int, test_per_class: int, seed: int) -> dict[str, torch.Tensor]:
    """The train and test tensors, each split drawn from its own child stream of ``seed``."""
    tensors = {}
    for split, per_class, stream in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        rng = np.random.default_rng([seed, stream])
        labels = rng.permutation(np.repeat(np.arange(len(CLASSES)), per_class))
        tensors[f"{split}_images"] = torch.from_numpy(draw_images(labels, image_size, rng))
        tensors[f"{split}_labels"] = torch.from_numpy(labels.astype(np.int64))
    return tensors


def draw_images(labels: np.ndarray, image_size: int, rng: np.random.Generator) -> np.ndarray:
    """Images ``N×3×S×S`` uint8 of the classes ``labels``, every nuisance drawn from ``rng``."""
    n, size = len(labels), float(image_size)
    colour, fill, shape = labels // 6, (labels // 3) % 2, labels % 3
    # the per-image parameters, all drawn before any pixel, in a fixed order
    radius = size * rng.uniform(0.18, 0.28, n)
    reach = _EXTENT * radius + 1.0
    centre_x = reach + rng.random(n) * (size - 2 * reach)
    centre_y = reach + rng.random(n) * (size - 2 * reach)
    half_angle_tan = rng.uniform(-0.27, 0.27, n)  # tan(θ/2) for |θ| ≤ 30°: a rotation without trigonometry
    cos = (1 - half_angle_tan**2) / (1 + half_angle_tan**2)
    sin = 2 * half_angle_tan / (1 + half_angle_tan**2)
    thickness = np.maximum(1.0, radius * rng.uniform(0.2, 0.3, n))
    low, high = _COLOUR_RANGES[colour, :, 0], _COLOUR_RANGES[colour, :, 1]
    shade = low + rng.random((n, 3)) * (high - low)
    grey = rng.uniform(0.25, 0.65, n)[:, None] + rng.uniform(-0.06, 0.06, (n, 3))
    slope = rng.uniform(-0.2, 0.2, (n, 2))
    line_on = rng.random(n) < 0.5
    line_ends = rng.random((n, 4)) * size
    line_colour = rng.random((n, 3))
    patch_corners = np.sort(rng.random((n, _PATCHES, 2, 2)) * size, axis=2)  # per patch: (x0, x1), (y0, y1)
    patch_tone = rng.uniform(0.15, 0.85, (n, _PATCHES))[:, :, None] + rng.uniform(-0.08, 0.08, (n, _PATCHES, 3))
    distractor_on = rng.random((n, _DISTRACTORS)) < 0.75
    distractor_kind = rng.integers(0, len(SHAPES), (n, _DISTRACTORS))
    distractor_radius = size * rng.uniform(0.08, 0.14, (n, _DISTRACTORS))
    distractor_centre = rng.random((n, _DISTRACTORS, 2)) * size
    distractor_tan = rng.uniform(-1.0, 1.0, (n, _DISTRACTORS))  # tan(θ/2) for |θ| ≤ 90°
    palette = _DISTRACTOR_COLOURS[rng.integers(0, len(_DISTRACTOR_COLOURS), (n, _DISTRACTORS))]
    distractor_shade = palette[..., 0] + rng.random((n, _DISTRACTORS, 3)) * (palette[..., 1] - palette[..., 0])

    images = np.empty((n, 3, image_size, image_size), dtype=np.uint8)
    coords = (np.arange(image_size, dtype=np.float32) + 0.5)
    for begin in range(0, n, _CHUNK):
        part = slice(begin, min(begin + _CHUNK, n))
        f32 = {name: value[part].astype(np.float32) for name, value in (
            ("cx", centre_x), ("cy", centre_y), ("cos", cos), ("sin", sin), ("r", radius), ("t", thickness),
        )}
        dx = coords[None, None, :] - f32["cx"][:, None, None]
        dy = coords[None, :, None] - f32["cy"][:, None, None]
        u = f32["cos"][:, None, None] * dx + f32["sin"][:, None, None] * dy
        v = f32["cos"][:, None, None] * dy - f32["sin"][:, None, None] * dx
        extent, border = _shape_norm(u, v, shape[part], f32["r"])
        inside = extent <= border
        inside &= (fill[part] == 0)[:, None, None] | (extent > border - f32["t"][:, None, None])
        picture = _background(grey[part], slope[part], coords, size)
        for index in range(_PATCHES):
            patch = _rectangle_mask(patch_corners[part, index], coords)
            picture = np.where(patch[:, None], patch_tone[part, index].astype(np.float32)[:, :, None, None], picture)
        for index in range(_DISTRACTORS):
            shown = _solid_shape_mask(
                distractor_kind[part, index], distractor_centre[part, index], distractor_radius[part, index],
                distractor_tan[part, index], coords,
            ) & distractor_on[part, index][:, None, None]
            shade_here = distractor_shade[part, index].astype(np.float32)[:, :, None, None]
            picture = np.where(shown[:, None], shade_here, picture)
        picture = np.where(inside[:, None], shade[part].astype(np.float32)[:, :, None, None], picture)
        on_line = _segment_mask(line_ends[part], coords) & line_on[part][:, None, None]
        picture = np.where(on_line[:, None], line_colour[part].astype(np.float32)[:, :, None, None], picture)
        picture += rng.uniform(-0.08, 0.08, picture.shape).astype(np.float32)
        images[part] = np.round(np.clip(picture, 0.0, 1.0) * 255.0).astype(np.uint8)
    return images


def _shape_norm(u: np.ndarray, v: np.ndarray, shape: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's distance measure from the shape's centre in its rotated frame (``u`` right,
    ``v`` down) and the border value of that measure: a pixel is inside when measure ≤ border.

    Circle: Euclidean distance vs r. Square: the larger of |u|, |v| vs its half-side. Triangle
    (apex up): the largest projection on its three outward edge normals vs its inradius, so an
    outline band of width t is ``border - t < measure`` for every shape."""
    circle = np.sqrt(u * u + v * v)
    square = np.maximum(np.abs(u), np.abs(v))
    half_root3 = np.float32(np.sqrt(3.0) / 2)
    triangle = np.maximum(v, np.maximum(half_root3 * u - 0.5 * v, -half_root3 * u - 0.5 * v))
    kind = shape[:, None, None]
    measure = np.where(kind == 0, circle, np.where(kind == 1, square, triangle))
    scale = np.array([1.0, _SQUARE_HALF_SIDE, _TRIANGLE_INRADIUS], dtype=np.float32)[shape]
    return measure, (scale * radius)[:, None, None]


def _rectangle_mask(corners: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Pixels inside each image's axis-aligned rectangle ``((x0, x1), (y0, y1))``, ``N×S×S`` bool."""
    x0, x1, y0, y1 = (corners[:, axis, end, None, None].astype(np.float32) for axis in (0, 1) for end in (0, 1))
    inside_x = (coords[None, None, :] >= x0) & (coords[None, None, :] <= x1)
    inside_y = (coords[None, :, None] >= y0) & (coords[None, :, None] <= y1)
    return inside_x & inside_y


def _solid_shape_mask(
    kind: np.ndarray, centre: np.ndarray, radius: np.ndarray, half_angle_tan: np.ndarray, coords: np.ndarray
) -> np.ndarray:
    """Pixels inside each image's solid shape of ``kind`` (an index into :data:`SHAPES`), rotated by
    the angle whose half has tangent ``half_angle_tan``, ``N×S×S`` bool."""
    cos = ((1 - half_angle_tan**2) / (1 + half_angle_tan**2)).astype(np.float32)[:, None, None]
    sin = (2 * half_angle_tan / (1 + half_angle_tan**2)).astype(np.float32)[:, None, None]
    dx = coords[None, None, :] - centre[:, 0, None, None].astype(np.float32)
    dy = coords[None, :, None] - centre[:, 1, None, None].astype(np.float32)
    extent, border = _shape_norm(cos * dx + sin * dy, cos * dy - sin * dx, kind, radius.astype(np.float32))
    return extent <= border


def _background(grey: np.ndarray, slope: np.ndarray, coords: np.ndarray, size: float) -> np.ndarray:
    """A tinted grey level per image plus a linear gradient across it, ``N×3×S×S`` float32."""
    ramp = coords / np.float32(size) - np.float32(0.5)
    gradient = slope[:, 0, None, None] * ramp[None, None, :] + slope[:, 1, None, None] * ramp[None, :, None]
    return (grey[:, :, None, None] + gradient[:, None]).astype(np.float32)


def _segment_mask(ends: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Pixels within 0.6 px of each image's segment from (x0, y0) to (x1, y1), ``N×S×S`` bool."""
    x0, y0, x1, y1 = (ends[:, i, None, None].astype(np.float32) for i in range(4))
    ax, ay = coords[None, None, :] - x0, coords[None, :, None] - y0
    bx, by = x1 - x0, y1 - y0
    along = np.clip((ax * bx + ay * by) / np.maximum(bx * bx + by * by, np.float32(1e-6)), 0.0, 1.0)
    off_x, off_y = ax - along * bx, ay - along * by
    return off_x * off_x + off_y * off_y <= np.float32(0.36)
