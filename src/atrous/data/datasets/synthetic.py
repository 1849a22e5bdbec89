"""Procedural shapes on textured backgrounds: a segmentation task with no files.

For tests, demos and smoke-training. Each class is a shape (circle, ring, cross, square,
triangle, star); every shape gets a random colour, size, position and a tilt of up to ±20°,
so only its outline tells its class. Backgrounds are a colour gradient plus smooth noise
and faint stripes, shapes may overlap (later ones on top), and the whole image gets
Gaussian noise. Shapes span 20–40 % of the shorter image side.

The order of :data:`SHAPES` puts the shapes a network tells apart soonest first: a solid
disc, a thin ring and thin bars differ in every small neighbourhood, whereas the interiors
of solid shapes (square, triangle) look alike and only their corners separate them. So the
default 4-class task (background, circle, ring, cross) is the quickest to learn from
scratch. Tilts stay small and colours contrast with what lies underneath for the same
reason.

Sample ``i`` is drawn from its own ``numpy`` generator seeded by ``(seed, i)``: the same
sample in any worker, in any order, on any machine.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import SegmentationDataset, Transforms

SHAPES = ("circle", "ring", "cross", "square", "triangle", "star")
SYNTHETIC_CLASSES = ["background", *SHAPES]
SYNTHETIC_PALETTE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
]  # fmt: skip

_SIZE_RANGE = (0.20, 0.40)  # shape extent (about its diameter) as a fraction of the shorter side
_MIN_CONTRAST = 100.0  # RGB distance between a shape's colour and what lies under its centre
_BLOTCH_STD = 12.0  # smooth background noise, per channel
_STRIPE_MAX = 8.0  # amplitude of the faint stripes
_PIXEL_NOISE_STD = (2.0, 8.0)  # additive Gaussian noise over the whole image
_MAX_TILT = math.radians(20)  # shapes are rotated by up to ± this


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a small ``(h, w, C)`` grid to ``(height, width, C)``."""

    def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.linspace(0.0, n_in - 1.0, n_out)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo)

    y0, y1, wy = axis_weights(grid.shape[0], height)
    rows = grid[y0] * (1 - wy)[:, None, None] + grid[y1] * wy[:, None, None]  # (height, w, C)
    x0, x1, wx = axis_weights(grid.shape[1], width)
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A float ``(H, W, 3)`` background: a two-colour gradient, smooth noise and a faint texture."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)  # 0..1 along a random direction
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    image = start + ramp[..., None] * (end - start)
    grid = rng.normal(0.0, _BLOTCH_STD, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3))
    image += _upsample(grid, height, width)
    period = rng.uniform(6, 20)
    wave_angle = rng.uniform(0, math.pi)
    wave = np.sin((xx * math.cos(wave_angle) + yy * math.sin(wave_angle)) * 2 * math.pi / period)
    image += rng.uniform(0, _STRIPE_MAX) * wave[..., None]
    return image


def _in_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: which points ``(x, y)`` lie inside the polygon ``vertices`` ``(N, 2)``."""
    inside = np.zeros(x.shape, dtype=bool)
    vx, vy = vertices[:, 0], vertices[:, 1]
    j = len(vertices) - 1
    with np.errstate(divide="ignore", invalid="ignore"):  # horizontal edges never cross, so 0/0 is masked
        for i in range(len(vertices)):
            crosses = (vy[i] > y) != (vy[j] > y)
            x_cross = (vx[j] - vx[i]) * (y - vy[i]) / (vy[j] - vy[i]) + vx[i]
            inside ^= crosses & (x < x_cross)
            j = i
    return inside


def _regular(radius: float, count: int, phase: float) -> np.ndarray:
    angles = phase + np.arange(count) * 2 * math.pi / count
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    """Pixels inside ``shape`` of about ``radius``, in coordinates ``(u, v)`` already rotated."""
    r = radius
    if shape == "circle":
        return u**2 + v**2 <= r**2
    if shape == "square":
        return (np.abs(u) <= 0.8 * r) & (np.abs(v) <= 0.8 * r)
    if shape == "triangle":
        return _in_polygon(u, v, _regular(1.15 * r, 3, -math.pi / 2))
    if shape == "cross":
        arm = 0.25 * r
        return ((np.abs(u) <= arm) & (np.abs(v) <= r)) | ((np.abs(v) <= arm) & (np.abs(u) <= r))
    if shape == "ring":
        d2 = u**2 + v**2
        return (d2 <= r**2) & (d2 >= (0.6 * r) ** 2)
    if shape == "star":
        outer, inner = _regular(1.1 * r, 5, -math.pi / 2), _regular(0.45 * r, 5, -math.pi / 2 + math.pi / 5)
        return _in_polygon(u, v, np.stack([outer, inner], axis=1).reshape(10, 2))
    raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class SyntheticShapes(SegmentationDataset):
    """Images of coloured shapes on noisy, textured backgrounds, with their class masks.

    Class 0 is background and classes ``1..num_classes-1`` are the first shapes of
    :data:`SHAPES` (circle, ring, cross, square, triangle, star). Each image holds
    ``shapes_per_image`` shapes; the first ones have distinct classes, so every class
    appears within a few samples.

    Args:
        num_samples: length of the dataset.
        size: ``(H, W)`` or one side of a square image.
        num_classes: 2..7, background included.
        seed: samples are a pure function of ``(seed, index)``; use another seed for a
            validation set.
        shapes_per_image: ``(min, max)`` shapes per image, inclusive.
        transforms: ``(image, mask) -> (image, mask)``.
    """

    def __init__(
        self,
        num_samples: int,
        *,
        size: int | tuple[int, int] = 128,
        num_classes: int = 4,
        seed: int = 0,
        shapes_per_image: tuple[int, int] = (2, 4),
        transforms: Transforms | None = None,
    ) -> None:
        # These arrive from a config's data.options as YAML: a typo is text, named here.
        for name, value in (("num_samples", num_samples), ("num_classes", num_classes), ("seed", seed)):
            if not _is_int(value):
                raise ValueError(f"SyntheticShapes' {name} must be an integer, got {value!r}")
        if _is_int(size):
            height, width = size, size
        elif isinstance(size, list | tuple) and len(size) == 2 and all(_is_int(v) for v in size):
            height, width = size
        else:
            raise ValueError(f"SyntheticShapes' size must be an integer or [height, width], got {size!r}")
        if not (isinstance(shapes_per_image, list | tuple) and len(shapes_per_image) == 2) or not all(
            _is_int(v) for v in shapes_per_image
        ):
            raise ValueError(f"shapes_per_image must be (min, max) integers; got {shapes_per_image!r}")
        if num_samples < 1:
            raise ValueError(f"SyntheticShapes needs num_samples >= 1; got {num_samples}")
        if min(height, width) < 16:
            raise ValueError(f"SyntheticShapes images must be at least 16×16; got size {size}")
        if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise ValueError(
                f"SyntheticShapes has 2..{len(SYNTHETIC_CLASSES)} classes (background + shapes); got {num_classes}"
            )
        low, high = shapes_per_image
        if not 1 <= low <= high:
            raise ValueError(f"shapes_per_image must be (min, max) with 1 <= min <= max; got {shapes_per_image}")
        self.num_samples = num_samples
        self.size = (height, width)
        self.num_classes = num_classes
        self.class_names = SYNTHETIC_CLASSES[:num_classes]
        self.palette = SYNTHETIC_PALETTE[:num_classes]
        self.seed = seed
        self.shapes_per_image = (low, high)
        self.transforms = transforms

    def __len__(self) -> int:
        return self.num_samples

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index`` as numpy arrays: image ``uint8 (H, W, 3)``, mask ``int64 (H, W)``."""
        rng = np.random.default_rng([self.seed, index])
        height, width = self.size
        side = min(height, width)
        image = _background(rng, height, width)
        mask = np.zeros((height, width), dtype=np.int64)
        count = int(rng.integers(self.shapes_per_image[0], self.shapes_per_image[1] + 1))
        shape_classes = rng.permutation(np.arange(1, self.num_classes))[:count]
        labels = np.concatenate([shape_classes, rng.integers(1, self.num_classes, count - len(shape_classes))])
        placed: list[tuple[float, float, float]] = []
        for label in labels:
            radius = rng.uniform(*_SIZE_RANGE) * side / 2
            for _ in range(10):  # prefer a spot that does not bury an earlier shape; overlap stays possible
                cy = rng.uniform(radius * 0.8, height - radius * 0.8)
                cx = rng.uniform(radius * 0.8, width - radius * 0.8)
                if all(math.hypot(cy - py, cx - px) >= 0.6 * (radius + pr) for py, px, pr in placed):
                    break
            placed.append((cy, cx, radius))
            angle = rng.uniform(-_MAX_TILT, _MAX_TILT)
            reach = 1.2 * radius + 1  # every shape fits in this box around its centre
            y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, height)
            x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, width)
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            dy, dx = yy - cy, xx - cx
            u = dx * math.cos(angle) + dy * math.sin(angle)
            v = -dx * math.sin(angle) + dy * math.cos(angle)
            inside = _shape_mask(SHAPES[int(label) - 1], u, v, radius)
            under = image[min(int(cy), height - 1), min(int(cx), width - 1)]
            color = rng.uniform(0, 255, 3)
            for _ in range(20):
                if np.linalg.norm(color - under) >= _MIN_CONTRAST:
                    break
                color = rng.uniform(0, 255, 3)
            shading = rng.uniform(-20, 20) * (u / radius)  # a soft light gradient across the shape
            window = image[y0:y1, x0:x1]
            window[inside] = color + shading[inside][:, None]
            mask[y0:y1, x0:x1][inside] = label
        image += rng.normal(0.0, rng.uniform(*_PIXEL_NOISE_STD), image.shape)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` before ``transforms``: image ``uint8 (3, H, W)``, mask ``int64 (H, W)``."""
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for SyntheticShapes of {self.num_samples} samples")
        image, mask = self.render(index % self.num_samples)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))), torch.from_numpy(mask)

    def __repr__(self) -> str:
        return (
            f"SyntheticShapes(num_samples={self.num_samples}, size={self.size}, "
            f"num_classes={self.num_classes}, seed={self.seed})"
        )
