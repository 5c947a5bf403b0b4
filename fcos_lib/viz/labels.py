"""Labels on pictures: where each goes, clear of the others, and in what font.

A label is written on a patch of its box's colour, in black or white (whichever reads on
it), at the first free spot against its box (:func:`place_labels`), in DejaVu Sans at a size
whose capitals stand at least :data:`TEXT_PX` pixels high where the picture is seen
(:func:`readable_size`). The writer reports each label it wrote as a :class:`Label`, so that
a test can check that none covers another and all are tall enough.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL.ImageFont import FreeTypeFont

__all__ = ["TEXT_PX", "SMALLEST_FONT", "Label", "label_font", "text_height", "readable_size", "place_labels",
           "write_labels"]

TEXT_PX = 9    # the least height of capitals and digits, pixels where they are seen
SMALLEST_FONT = 9    # pixels of the picture a label is drawn in


class Label(NamedTuple):
    """One label as written on a picture: its ``text``; its patch ``box``, (x1, y1, x2, y2)
    pixels of the picture, x2 and y2 excluded; ``text_height``, the height in those pixels of
    its capitals and digits (:func:`text_height`)."""
    text: str
    box: tuple[int, int, int, int]
    text_height: int


@lru_cache(maxsize=64)
def label_font(size: int) -> FreeTypeFont:
    """DejaVu Sans (shipped with matplotlib, its default font) at ``size`` pixels."""
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    return ImageFont.truetype(path, size)


def text_height(size: int) -> int:
    """The height, in pixels, of the capitals and digits of :func:`label_font` at ``size``.

    >>> text_height(12)
    9
    """
    _, top, _, bottom = label_font(size).getbbox("H")
    return bottom - top


def readable_size(shown: float = 1.0) -> int:
    """The least font size, in a picture's pixels, whose capitals stand :data:`TEXT_PX`
    pixels high once the picture is shown ``shown`` screen pixels per pixel, and never under
    :data:`SMALLEST_FONT` (smaller glyphs, enlarged, lose their shapes).

    >>> readable_size(), readable_size(1.2), readable_size(3.0)
    (12, 11, 9)
    """
    if not shown > 0:
        raise ValueError(f"shown={shown}: a picture is shown at a positive size")
    size = SMALLEST_FONT
    while text_height(size) * shown < TEXT_PX:
        size += 1
    return size


def place_labels(boxes: Tensor, sizes: Sequence[tuple[int, int]], width: int, height: int
                 ) -> list[tuple[int, int, int, int] | None]:
    """Where to write each box's label, ``(x1, y1, x2, y2)`` pixels, in order: the first of
    eight spots against the box (above its top edge, inside it along the top, below its bottom
    edge, inside along the bottom; at its left corner, then its right) that lies in the
    ``width`` x ``height`` picture and covers no label placed before it. ``None`` where all
    eight are taken: a label far from its box would say less than no label.

    Args:
        boxes: (K, 4) xyxy pixels; sizes: the K labels' (w, h) in pixels.
    """
    taken: list[tuple[int, int, int, int]] = []
    places: list[tuple[int, int, int, int] | None] = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes.round().int().tolist(), sizes):
        spots = [(min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h)))
                 for x in (x1, x2 - w) for y in (y1 - h, y1, y2, y2 - h)]
        free = [(x, y, x + w, y + h) for x, y in spots if not any(
            x < a2 and a1 < x + w and y < b2 and b1 < y + h for a1, b1, a2, b2 in taken)]
        places.append(free[0] if free else None)
        taken += free[:1]
    return places


def write_labels(pixels: Tensor, boxes: Tensor, texts: Sequence[str],
                 colors: Sequence[tuple[int, int, int]], *, font_size: int | None = None,
                 placed: list[Label] | None = None) -> Tensor:
    """Write ``texts`` on patches of ``colors`` (black or white text, whichever reads) next to
    ``boxes``, each clear of the others (:func:`place_labels`: the first get the best spots).

    Args:
        pixels: uint8 (3, H, W); boxes: (K, 4) xyxy pixels of it; texts, colors: K each.
        font_size: pixels (default: 10, or a 30th of the picture's shorter side if more;
            :func:`readable_size` gives the size that reads where the picture is seen).
        placed: a list to which a :class:`Label` is appended for each label written (a label
            with no free spot is not written).

    Returns:
        uint8 (3, H, W), a new tensor.
    """
    from PIL import Image, ImageDraw

    picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    font = label_font(font_size or max(10, round(min(picture.size) / 30)))
    draw = ImageDraw.Draw(picture)
    corners = [draw.textbbox((0, 0), text, font=font) for text in texts]
    sizes = [(right - left + 4, bottom - top + 4) for left, top, right, bottom in corners]
    places = place_labels(boxes, sizes, *picture.size)
    for place, (left, top, _, _), text, color in zip(places, corners, texts, colors):
        if place is None:
            continue
        x, y, x2, y2 = place
        draw.rectangle((x, y, x2 - 1, y2 - 1), fill=color)
        dark = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] < 140
        draw.text((x + 2 - left, y + 2 - top), text, font=font,
                  fill=(255, 255, 255) if dark else (0, 0, 0))
        if placed is not None:
            placed.append(Label(text, place, text_height(int(font.size))))
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()
