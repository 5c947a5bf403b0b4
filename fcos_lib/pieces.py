"""The pieces of the detector that a student can replace: the target assignment, the
classification loss and the non-maximum suppression.

``model.use(Pieces(...))`` swaps them in; ``from_student(assign=..., focal_loss=..., nms=...)``
builds them from the functions of the notebooks' exercises, whose contracts are simpler (one
image, one flat table), so that notebook 06 trains and notebook 07 evaluates a detector made
with the student's own code. The defaults are the library's. Pieces are code, not settings:
a checkpoint does not keep them, and a loaded model uses the library's.

>>> from fcos_lib.model import FCOS
>>> model = FCOS(3).use(Pieces())      # the library's own: nothing changes
>>> model.pieces.assign.__name__
'assign_targets'
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from fcos_lib.losses import _focal_sum
from fcos_lib.targets import assign_targets

__all__ = ["Pieces", "from_student"]


@dataclass(frozen=True)
class Pieces:
    """The replaceable pieces, with the library's signatures.

    Args:
        assign: ``assign(gt_boxes (B, M, 4), gt_labels (B, M), locations, strides,
            size_ranges, center_sampling_radius) -> (B, L)`` box index or -1, as
            :func:`fcos_lib.targets.assign_targets`.
        focal: ``focal(logits per level (B, HW_l, C), labels (B, L)) -> scalar`` sum, as
            :func:`fcos_lib.losses.focal_loss`.
        nms: ``nms(boxes (N, 4), scores (N,), groups (N,), iou_threshold) -> (K,)`` kept
            indices, best score first, as ``torchvision.ops.batched_nms``.
    """

    assign: Callable = assign_targets
    focal: Callable = _focal_sum
    nms: Callable = batched_nms


def from_student(assign: Callable | None = None, focal_loss: Callable | None = None,
                 nms: Callable | None = None) -> Pieces:
    """:class:`Pieces` from the exercises' functions (None keeps the library's piece).

    Args:
        assign: notebook 05's ``assign(levels, boxes (M, 4), size_ranges) -> (L,)``, for one
            image, without center sampling.
        focal_loss: notebook 05's ``focal_loss(logits (N, C), labels (N,)) -> sum``.
        nms: notebook 07's ``nms(boxes, scores, labels, iou_threshold) -> kept indices``,
            class by class; the detector passes (image, class) groups as the labels.
    """
    pieces = Pieces()
    return Pieces(assign=_batched(assign) if assign else pieces.assign,
                  focal=_flat(focal_loss) if focal_loss else pieces.focal,
                  nms=nms or pieces.nms)


def _batched(assign_one: Callable) -> Callable:
    """A per-image ``assign(levels, boxes, size_ranges)`` as a batch assignment."""
    def assign(gt_boxes: Tensor, gt_labels: Tensor, locations: Sequence[Tensor],
               strides: Sequence[int], size_ranges: Sequence[tuple[float, float]],
               center_sampling_radius: float | None = None) -> Tensor:
        if center_sampling_radius is not None:
            raise ValueError("your assign has no center sampling: train with "
                             "center_sampling_radius=None (the course's setting), or use "
                             "the library's assignment")
        # Padding rows come last, so the real boxes are a prefix: their indices stand.
        rows = [assign_one(list(locations), boxes[labels >= 0], list(size_ranges))
                for boxes, labels in zip(gt_boxes, gt_labels)]
        return torch.stack([torch.as_tensor(r, dtype=torch.long, device=gt_boxes.device)
                            for r in rows])
    assign.__name__ = f"batched_{getattr(assign_one, '__name__', 'assign')}"
    return assign


def _flat(focal_loss: Callable) -> Callable:
    """A ``focal_loss(logits (N, C), labels (N,))`` on the per-level logits of a batch."""
    def focal(logits: Sequence[Tensor], labels: Tensor) -> Tensor:
        flat = torch.cat(list(logits), dim=1).flatten(0, 1)                 # (B·L, C)
        return focal_loss(flat, labels.flatten())
    return focal
