"""Target assignment for FCOS: which locations are positives, and what they predict.

(Work in progress: encoding and decoding of box distances are here; assignment follows.)
"""
from __future__ import annotations

import torch
from torch import Tensor


def encode_boxes(boxes: Tensor, locations: Tensor, strides: Tensor) -> Tensor:
    """Distances from each location to the four sides of its box, in strides.

    Args:
        boxes: (..., L, 4) xyxy boxes in input pixels, one per location.
        locations: (L, 2) xy of each location in input pixels.
        strides: (L,) stride of each location's level, in pixels.

    Returns:
        (..., L, 4) LTRB distances ``(x - x1, y - y1, x2 - x, y2 - y) / stride``.
    """
    xy = locations
    s = strides[:, None]
    left_top = (xy - boxes[..., :2]) / s
    right_bottom = (boxes[..., 2:] - xy) / s
    return torch.cat([left_top, right_bottom], dim=-1)


def decode_boxes(deltas: Tensor, locations: Tensor, strides: Tensor) -> Tensor:
    """Inverse of :func:`encode_boxes`: LTRB distances in strides to xyxy pixels.

    Args:
        deltas: (..., L, 4) LTRB distances divided by the stride.
        locations: (L, 2) xy of each location in input pixels.
        strides: (L,) stride of each location's level, in pixels.

    Returns:
        (..., L, 4) xyxy boxes in input pixels.
    """
    s = strides[:, None]
    top_left = locations - deltas[..., :2] * s
    bottom_right = locations + deltas[..., 2:] * s
    return torch.cat([top_left, bottom_right], dim=-1)
