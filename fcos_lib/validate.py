"""Input checks that name the setting, what was given, and the fix, in one line each.

Every function here returns the value it checked (so a check can sit in an assignment) and
raises ``ValueError`` with a message of the form ``name=value: what is wrong; the fix``:

>>> whole("steps", 100, minimum=1)
100
>>> one_of("schedule", "linear", ("step", "cosine"))
Traceback (most recent call last):
    ...
ValueError: schedule='linear': choose one of ('step', 'cosine')
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["one_of", "whole", "number", "proper_boxes", "boxes_xyxy", "integer_labels"]


def one_of(name: str, value: Any, allowed: Sequence[Any], hint: str = "") -> Any:
    """``value`` if it is one of ``allowed``, else a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: choose one of {tuple(allowed)}{_tail(hint)}")
    return value


def whole(name: str, value: Any, minimum: int = 0, hint: str = "") -> int:
    """``value`` as an int if it is a whole number (not a bool) of at least ``minimum``."""
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be a whole number >= {minimum}{_tail(hint)}")
    return int(value)


def number(name: str, value: Any, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, hint: str = "") -> float:
    """``value`` if it is a real number (not a bool) in [low, high] (``(low, high]`` when
    ``low_open``); either bound may be None."""
    value = _scalar(value)
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and value == value
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        raise ValueError(f"{name}={value!r}: must be a number {_span(low, high, low_open)}"
                         f"{_tail(hint)}")
    return float(value)


def proper_boxes(boxes: Tensor, allow_flat: bool = False) -> Tensor:
    """(..., 4) xyxy boxes -> (...) bool: finite, with x2 > x1 and y2 > y1 (``>=`` with
    ``allow_flat``). The one definition of a proper box, for the checks that raise
    (:func:`boxes_xyxy`) and for the data readers that drop and count (VOC).

    >>> proper_boxes(torch.tensor([[0., 0, 2, 2], [3, 0, 1, 2], [0, 0, float("nan"), 1]]))
    tensor([ True, False, False])
    """
    size = boxes[..., 2:] - boxes[..., :2]
    wide = (size >= 0) if allow_flat else (size > 0)
    return torch.isfinite(boxes).all(dim=-1) & wide.all(dim=-1)


def boxes_xyxy(name: str, boxes: Tensor, allow_flat: bool = False, *,
               real: Tensor | None = None, where: Sequence[str] = (), hint: str = "") -> Tensor:
    """``boxes`` if it is an (..., 4) tensor of proper xyxy boxes (:func:`proper_boxes`).

    Args:
        real: (...) bool, the boxes to check (e.g. not the padding of a batch).
        where: a word per leading dimension, to name a bad box (``("image", "box")`` says
            "image 1, box 0"); default ``name[index]``.
        hint: said after the problem (e.g. ``"before the loss"``).
    """
    if not torch.is_tensor(boxes) or boxes.dim() < 2 or boxes.shape[-1] != 4:
        shape = tuple(boxes.shape) if torch.is_tensor(boxes) else type(boxes).__name__
        raise ValueError(f"{name} has shape {shape}: expected (N, 4) xyxy pixels")
    bad = ~proper_boxes(boxes, allow_flat)
    if real is not None:
        bad &= real
    if bad.any():
        index = tuple(bad.nonzero()[0].tolist())
        box = boxes[index]
        said = (", ".join(f"{w} {i}" for w, i in zip(where, index, strict=True)) if where
                else f"{name}[{', '.join(map(str, index))}] =")
        what = ("is not finite (NaN or inf); fix or drop it" if not torch.isfinite(box).all()
                else "has x2 <= x1 or y2 <= y1: boxes are (x1, y1, x2, y2) pixels, top-left "
                "corner first; drop empty boxes (e.g. after cropping)")
        raise ValueError(f"{said}{':' if where else ''} {box.tolist()} {what}{_tail(hint)}")
    return boxes


def integer_labels(name: str, labels: Tensor) -> Tensor:
    """``labels`` if it holds integers (class indices), not floats or bools."""
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"{name} are {labels.dtype}: pass class indices as integers "
                         "(torch.int64)")
    return labels


def _scalar(value: Any) -> Any:
    """A one-element tensor as its Python number; anything else as it is."""
    if torch.is_tensor(value) and value.numel() == 1:
        return value.item()
    return value


def _span(low: float | None, high: float | None, low_open: bool) -> str:
    """'> 0', '<= 1', 'in (0, 1]' or '' : the range a number must lie in, in words."""
    if low is None and high is None:
        return "(a real number, not NaN)"
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"<= {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}]"


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""
