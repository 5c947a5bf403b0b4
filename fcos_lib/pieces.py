"""The pieces of the detector that a student can replace: the target assignment, the
classification loss and the non-maximum suppression.

``model.use(Pieces(...))`` swaps them in; ``from_student(assign=..., focal_loss=..., nms=...)``
builds them from functions with the exercises' contracts (one image, one flat table): the
student's own, so that notebook 06 trains and notebook 07 evaluates a detector made with the
student's code, or the library's plain versions, which have the same contracts
(:func:`fcos_lib.targets.assign_targets_plain`, :func:`fcos_lib.losses.focal_loss_plain`).
:func:`batched` and :func:`flat` are the one adapter between the two contracts. The defaults
are the library's fast pieces. Pieces are code, not settings: a checkpoint does not keep
them, and a loaded model uses the library's.

>>> from fcos_lib.model import FCOS
>>> model = FCOS(3).use(Pieces())      # the library's own: nothing changes
>>> model.pieces.assign.__name__
'assign_targets'
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from fcos_lib.losses import _focal_sum
from fcos_lib.targets import assign_targets

__all__ = ["Pieces", "from_student", "batched", "flat"]


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
    """:class:`Pieces` from functions with the exercises' contracts (None keeps the library's
    fast piece): the student's, or the library's plain ones.

    Args:
        assign: notebook 05's ``assign(levels, boxes (M, 4), size_ranges) -> (L,)``, for one
            image (center sampling only if it takes ``strides`` and
            ``center_sampling_radius`` keywords, as the library's plain one does).
        focal_loss: notebook 05's ``focal_loss(logits (N, C), labels (N,)) -> sum``.
        nms: notebook 07's ``nms(boxes, scores, labels, iou_threshold) -> kept indices``,
            class by class; the detector passes (image, class) groups as the labels.
    """
    pieces = Pieces()
    return Pieces(assign=batched(assign) if assign else pieces.assign,
                  focal=flat(focal_loss) if focal_loss else pieces.focal,
                  nms=nms or pieces.nms)


def batched(assign_one: Callable) -> Callable:
    """A per-image ``assign(levels, boxes, size_ranges)`` as the batch assignment that
    training calls, with :func:`fcos_lib.targets.assign_targets`'s contract."""
    try:
        samples = "center_sampling_radius" in inspect.signature(assign_one).parameters
    except (TypeError, ValueError):        # no signature to read: assume the exercise's
        samples = False

    def assign(gt_boxes: Tensor, gt_labels: Tensor, locations: Sequence[Tensor],
               strides: Sequence[int], size_ranges: Sequence[tuple[float, float]],
               center_sampling_radius: float | None = None) -> Tensor:
        extra = {}
        if center_sampling_radius is not None:
            if not samples:
                raise ValueError("your assign has no center sampling: train with "
                                 "center_sampling_radius=None (the course's setting), or use "
                                 "the library's assignment")
            extra = {"strides": list(strides), "center_sampling_radius": center_sampling_radius}
        # Padding rows come last, so the real boxes are a prefix: their indices stand.
        rows = [assign_one(list(locations), boxes[labels >= 0], list(size_ranges), **extra)
                for boxes, labels in zip(gt_boxes, gt_labels)]
        return torch.stack([torch.as_tensor(r, dtype=torch.long, device=gt_boxes.device)
                            for r in rows])
    assign.__name__ = f"batched_{getattr(assign_one, '__name__', 'assign')}"
    return assign


def flat(focal_loss: Callable) -> Callable:
    """A ``focal_loss(logits (N, C), labels (N,))`` on the per-level logits of a batch, with
    :func:`fcos_lib.losses.focal_loss`'s contract."""
    def focal(logits: Sequence[Tensor], labels: Tensor, *args: float, **kwargs: float
              ) -> Tensor:                                # alpha, gamma pass through
        table = torch.cat(list(logits), dim=1).flatten(0, 1)                # (B·L, C)
        return focal_loss(table, labels.flatten(), *args, **kwargs)
    return focal
