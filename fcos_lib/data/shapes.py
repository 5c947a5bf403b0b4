"""A detection dataset drawn on the fly: coloured shapes on cluttered backgrounds.

Nothing is downloaded or written: image ``i`` of a split is drawn from a random generator
seeded with ``(seed, split, i)``, so it is the same on every machine and every call, and the
two splits, seeded apart, never share an image. Each class has its own shape *and* colour,
so a small network learns it in minutes on a CPU; the textured background, grey clutter,
random sizes (about 0.08 to 0.8 of the image side), aspect ratios, rotations and partial
overlaps keep it a real detection task, with objects for every FPN level.

A box is the tight extent of the shape's pixels as drawn (before later shapes cover part of
it), in pixel edges: a shape whose leftmost pixel column is 3 and rightmost is 9 has
``x1 = 3, x2 = 10``.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from fcos_lib.data.transforms import Target, finish_sample

SHAPE_CLASSES: list[str] = ["circle", "square", "triangle", "star", "ring", "cross"]
# One saturated colour per class; the backgrounds and clutter stay near grey.
SHAPE_COLORS: list[tuple[int, int, int]] = [
    (220, 40, 40),    # circle: red
    (40, 180, 60),    # square: green
    (40, 80, 230),    # triangle: blue
    (235, 205, 30),   # star: yellow
    (200, 50, 200),   # ring: magenta
    (30, 195, 205),   # cross: cyan
]
_SPLIT_IDS = {"train": 0, "val": 1}
DEFAULT_LENGTHS = {"train": 5000, "val": 500}


class ShapesDataset(torch.utils.data.Dataset):
    """Generated shapes, deterministic from ``(seed, split, index)``.

    Args:
        split: ``"train"`` (random horizontal flips in :meth:`finish`) or ``"val"``.
        image_size: side of the square images, pixels.
        length: number of images (default 5000 for train, 500 for val).
        seed: changes every image of both splits.
        min_objects, max_objects: objects per image, drawn uniformly (fewer when large
            objects leave no room).
        size_range: smallest and largest object side as fractions of ``image_size``; sides are
            drawn log-uniformly, so small, medium and large objects are all common.
        max_overlap: largest intersection of two boxes, as a fraction of the smaller one.

    A sample is ``(image float32 (3, S, S) normalized, target)`` with ``boxes`` (N, 4) float32
    xyxy pixels, ``labels`` (N,) int64 in ``[0, 6)`` and ``image_id`` (the index).
    """

    def __init__(self, split: str = "train", image_size: int = 224, length: int | None = None,
                 seed: int = 0, min_objects: int = 1, max_objects: int = 8,
                 size_range: tuple[float, float] = (0.08, 0.8), max_overlap: float = 0.4):
        if split not in _SPLIT_IDS:
            raise ValueError(f"unknown split {split!r} for ShapesDataset: use 'train' or 'val'")
        if image_size < 48:
            raise ValueError(f"image_size={image_size} is too small to draw shapes: use >= 48")
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, "
                             f"{max_objects}")
        lo, hi = size_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"size_range={size_range} must satisfy 0 < lo <= hi <= 1 "
                             "(fractions of image_size)")
        self.split, self.image_size, self.seed = split, int(image_size), int(seed)
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        self.min_objects, self.max_objects = min_objects, max_objects
        self.size_range, self.max_overlap = (float(lo), float(hi)), float(max_overlap)
        self.class_names = list(SHAPE_CLASSES)
        self.train = split == "train"
        self.cache_key = (f"shapes-{split}-{self.image_size}px-n{self.length}-seed{seed}-"
                          f"obj{min_objects}to{max_objects}-size{lo:g}to{hi:g}-ov{max_overlap:g}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        return self.finish(*self.load(index))

    def load(self, index: int) -> tuple[Tensor, Target]:
        """Draw image ``index``: ``(uint8 (3, S, S), target)``, the same on every call."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        rng = np.random.default_rng([self.seed, _SPLIT_IDS[self.split], index])
        canvas = _background(rng, self.image_size)
        boxes, labels = _draw_objects(canvas, rng, self)
        image = torch.from_numpy(np.array(canvas)).permute(2, 0, 1).contiguous()
        target = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  "labels": torch.tensor(labels, dtype=torch.int64), "image_id": index}
        return image, target

    def finish(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        """Random horizontal flip (train split only), then normalize."""
        return finish_sample(image, target, flip=self.train)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    """A near-grey textured canvas: smooth blotches, stripes or checks, fine noise, clutter."""
    # Smooth blotches: a coarse random grid, upsampled (bilinear) to the image size.
    grid = (int(rng.integers(3, 9)), int(rng.integers(3, 9)))
    coarse = rng.uniform(-35, 35, size=(*grid, 1)) + rng.uniform(-6, 6, size=(*grid, 3))
    coarse += rng.uniform(70, 190) + rng.uniform(-15, 15, size=3)   # brightness, faint tint
    blotches = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
    pixels = np.asarray(blotches.resize((size, size), Image.BILINEAR), dtype=np.int16)
    # One grey layer on top: stripes at a random angle and period, checks, or nothing.
    xx, yy = _grid(size)
    kind = rng.integers(3)
    layer = rng.integers(-10, 11, size=(size, size), dtype=np.int16)   # fine noise
    if kind == 1:
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) * np.float32(2 * math.pi / period)
        layer += (np.float32(rng.uniform(8, 22)) * np.sin(phase)).astype(np.int16)
    elif kind == 2:
        cell = int(rng.integers(6, 20))
        checks = ((xx.astype(np.int16) // cell + yy.astype(np.int16) // cell) % 2) * 2 - 1
        layer += (checks * int(rng.integers(8, 23))).astype(np.int16)
    canvas = Image.fromarray(np.clip(pixels + layer[..., None], 0, 255).astype(np.uint8))
    _clutter(ImageDraw.Draw(canvas), rng, size)
    return canvas


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel column and row indices, (size, size) float32 each (shared, read-only)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    xx.flags.writeable = yy.flags.writeable = False
    return xx, yy


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """Grey lines, arcs and specks: edges and blobs that are not objects."""
    for _ in range(rng.integers(3, 10)):
        grey = int(rng.integers(30, 230))
        x0, y0, x1, y1 = (rng.uniform(0, size, 4)).tolist()
        if rng.random() < 0.6:
            draw.line((x0, y0, x1, y1), fill=(grey,) * 3, width=int(rng.integers(1, 3)))
        else:
            r = rng.uniform(2, max(2.5, size * 0.05))
            draw.ellipse((x0 - r, y0 - r, x0 + r, y0 + r), fill=(grey,) * 3)


def _draw_objects(canvas: Image.Image, rng: np.random.Generator,
                  spec: ShapesDataset) -> tuple[list[list[float]], list[int]]:
    """Place and draw up to ``n`` objects, the largest first; return their boxes and labels."""
    size = spec.image_size
    n = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    lo, hi = spec.size_range
    sides = np.sort(np.exp(rng.uniform(math.log(lo), math.log(hi), n)))[::-1] * size
    boxes: list[list[float]] = []
    labels: list[int] = []
    for side in sides:
        label = int(rng.integers(len(SHAPE_CLASSES)))
        for _ in range(10):  # a few tries to find a spot that overlaps little
            aspect = math.exp(rng.uniform(-0.3, 0.3))
            w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
            # Centres may put up to 15% of a shape outside the image (truncated objects).
            cx = rng.uniform(w * 0.35, size - w * 0.35)
            cy = rng.uniform(h * 0.35, size - h * 0.35)
            # Draw on a mask of the shape's region only: every shape stays inside the
            # w x h rectangle around its centre.
            x0, y0 = max(0, int(cx - w / 2) - 1), max(0, int(cy - h / 2) - 1)
            x1, y1 = min(size, int(cx + w / 2) + 2), min(size, int(cy + h / 2) + 2)
            mask = Image.new("L", (x1 - x0, y1 - y0), 0)
            _draw_shape(ImageDraw.Draw(mask), rng, label, cx - x0, cy - y0, w, h)
            local = mask.getbbox()  # tight extent of the drawn pixels, right/bottom exclusive
            if local is None or min(local[2] - local[0], local[3] - local[1]) < 2:
                continue
            box = (local[0] + x0, local[1] + y0, local[2] + x0, local[3] + y0)
            if all(_overlap(box, other) <= spec.max_overlap for other in boxes):
                color = np.clip(np.array(SHAPE_COLORS[label]) + rng.integers(-25, 26, 3), 0, 255)
                canvas.paste(tuple(int(c) for c in color), (x0, y0, x1, y1), mask)
                boxes.append([float(v) for v in box])
                labels.append(label)
                break
    return boxes, labels


def _draw_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, label: int,
                cx: float, cy: float, w: float, h: float) -> None:
    """Draw shape ``label`` (white on a mask) inside the w x h rectangle centred at (cx, cy)."""
    rect = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    name = SHAPE_CLASSES[label]
    if name == "circle":
        draw.ellipse(rect, fill=255)
    elif name == "square":
        draw.rectangle(rect, fill=255)
    elif name == "ring":
        draw.ellipse(rect, outline=255, width=max(2, int(min(w, h) * rng.uniform(0.15, 0.25))))
    elif name == "cross":
        t = rng.uniform(0.28, 0.4)
        draw.rectangle((rect[0], cy - h * t / 2, rect[2], cy + h * t / 2), fill=255)
        draw.rectangle((cx - w * t / 2, rect[1], cx + w * t / 2, rect[3]), fill=255)
    else:  # triangle, star: a polygon turned by a random angle, inside the ellipse of rect
        corners = 3 if name == "triangle" else 10
        radii = np.ones(corners) if name == "triangle" else np.tile([1.0, 0.45], 5)
        angles = rng.uniform(0, 2 * math.pi) + np.arange(corners) * (2 * math.pi / corners)
        xs = cx + radii * np.cos(angles) * w / 2
        ys = cy + radii * np.sin(angles) * h / 2
        draw.polygon(list(zip(xs.tolist(), ys.tolist())), fill=255)


def _overlap(a: tuple[float, ...], b: list[float]) -> float:
    """Intersection of boxes ``a`` and ``b`` over the area of the smaller one."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller
