"""The pieces of the detector that a student can replace: the head's forward pass, the target
assignment, the classification loss, the assembly of the three losses, the non-maximum
suppression and the whole detection step.

``model.use(Pieces(...))`` swaps them in; ``from_student(head=..., assign=..., focal_loss=...,
losses=..., nms=..., detect=...)`` builds them from functions with the exercises' contracts
(one level, one image, one flat table, one batch of dense tables): the student's own, so that
notebook 06 trains and notebook 07 evaluates a detector made with the student's code, or the
library's plain versions, which have the same contracts (:func:`fcos_lib.head.head_level_plain`,
:func:`fcos_lib.targets.assign_targets_plain`, :func:`fcos_lib.losses.focal_loss_plain`,
:func:`fcos_lib.losses.loss_terms_plain`, :func:`fcos_lib.inference.detect_plain`).
:func:`per_level`, :func:`batched`, :func:`flat`, :func:`dense` and :func:`per_image` are the
one adapter between the two contracts. The defaults are the library's fast pieces. Pieces are
code, not settings: a checkpoint does not keep them, and a loaded model uses the library's.

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

from fcos_lib.head import FCOSHead
from fcos_lib.inference import detect as library_detect
from fcos_lib.losses import _focal_sum, loss_terms
from fcos_lib.targets import assign_targets, centerness_target, encode_boxes, gather_targets

__all__ = ["Pieces", "from_student", "per_level", "batched", "flat", "dense", "per_image",
           "shared_head"]


def shared_head(head: FCOSHead, pyramid: Sequence[Tensor]) -> dict[str, list[Tensor]]:
    """The library's head pass: ``head(pyramid)``, :meth:`fcos_lib.head.FCOSHead.forward`.

    Args:
        head: the model's head; pyramid: [P3, ...], (B, in_channels, H_l, W_l).

    Returns:
        Per-level lists ``cls_logits`` (B, H_l·W_l, C), ``box_deltas`` (B, H_l·W_l, 4),
        ``centerness`` (B, H_l·W_l).
    """
    return head(pyramid)


@dataclass(frozen=True)
class Pieces:
    """The replaceable pieces, with the library's signatures.

    Args:
        head: ``head(head module, pyramid) -> dict of per-level lists``, as
            :func:`shared_head` (the model's forward calls it).
        assign: ``assign(gt_boxes (B, M, 4), gt_labels (B, M), locations, strides,
            size_ranges, center_sampling_radius) -> (B, L)`` box index or -1, as
            :func:`fcos_lib.targets.assign_targets`.
        focal: ``focal(logits per level (B, HW_l, C), labels (B, L)) -> scalar`` sum, as
            :func:`fcos_lib.losses.focal_loss`.
        losses: ``losses(outputs, matched (B, L), gt_boxes (B, M, 4), gt_labels (B, M), *,
            box_loss, focal) -> {classification, bbox_regression, bbox_ctrness}``, as
            :func:`fcos_lib.losses.loss_terms` (it receives ``focal``).
        nms: ``nms(boxes (N, 4), scores (N,), groups (N,), iou_threshold) -> (K,)`` kept
            indices, best score first, as ``torchvision.ops.batched_nms``.
        detect: ``detect(outputs, image_size, score_thresh, nms_thresh, topk_candidates,
            detections_per_img, centerness_in_score, nms) -> list of dicts``, as
            :func:`fcos_lib.inference.detect` (``model.predict`` calls it with ``nms``).
    """

    head: Callable = shared_head
    assign: Callable = assign_targets
    focal: Callable = _focal_sum
    losses: Callable = loss_terms
    nms: Callable = batched_nms
    detect: Callable = library_detect


def from_student(assign: Callable | None = None, focal_loss: Callable | None = None,
                 nms: Callable | None = None, detect: Callable | None = None,
                 head: Callable | None = None, losses: Callable | None = None) -> Pieces:
    """:class:`Pieces` from functions with the exercises' contracts (None keeps the library's
    fast piece): the student's, or the library's plain ones.

    Args:
        head: notebook 04's ``head(cls_stem, box_stem, cls_logits, box_deltas, centerness,
            features (B, in, H, W)) -> [(B, H·W, C), (B, H·W, 4), (B, H·W)]``, one level.
        assign: notebook 05's ``assign(levels, boxes (M, 4), size_ranges) -> (L,)``, for one
            image (center sampling only if it takes ``strides`` and
            ``center_sampling_radius`` keywords, as the library's plain one does).
        focal_loss: notebook 05's ``focal_loss(logits (N, C), labels (N,)) -> sum``.
        losses: notebook 05's ``losses(cls_logits (B, L, C), box_deltas (B, L, 4), centerness
            (B, L), labels (B, L), box_targets (B, L, 4), ctr_targets (B, L), positive (B, L))
            -> [classification, bbox_regression, bbox_ctrness]`` (L1; it calls its own focal
            loss).
        nms: notebook 07's ``nms(boxes, scores, labels, iou_threshold) -> kept indices``,
            class by class; the detector passes (image, class) groups as the labels.
        detect: notebook 07's ``detect(cls_logits, box_deltas, centerness, locations,
            strides, image_size, score_thresh, nms_thresh, topk, max_detections) ->
            [boxes, scores, labels]`` for one image (it calls its own NMS).
    """
    pieces = Pieces()
    return Pieces(head=per_level(head) if head else pieces.head,
                  assign=batched(assign) if assign else pieces.assign,
                  focal=flat(focal_loss) if focal_loss else pieces.focal,
                  losses=dense(losses) if losses else pieces.losses,
                  nms=nms or pieces.nms,
                  detect=per_image(detect) if detect else pieces.detect)


def per_level(head_level: Callable) -> Callable:
    """A one-level ``head_level(cls_stem, box_stem, cls_logits, box_deltas, centerness,
    features) -> [cls, box, ctr]`` as the head pass that the model's forward calls, with
    :func:`shared_head`'s contract, on the model's own head modules."""
    def head(module: FCOSHead, pyramid: Sequence[Tensor]) -> dict[str, list[Tensor]]:
        if module.scales is not None or module.centerness_on != "box":
            raise ValueError("your head pass has ReLU distances and centerness on the box "
                             "stem: build the model with box_activation='relu' and "
                             "centerness_on='box' (the course's settings), or use the "
                             "library's head")
        out: dict[str, list[Tensor]] = {"cls_logits": [], "box_deltas": [], "centerness": []}
        for features in pyramid:                           # one level at a time
            found = head_level(module.cls_stem, module.box_stem, module.cls_logits,
                               module.box_deltas, module.centerness, features)
            for key, value in zip(out, found, strict=True):
                out[key].append(value)
        return out
    head.__name__ = f"per_level_{getattr(head_level, '__name__', 'head')}"
    return head


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


def dense(terms: Callable) -> Callable:
    """A batch ``terms(cls_logits (B, L, C), box_deltas (B, L, 4), centerness (B, L), labels
    (B, L), box_targets (B, L, 4), ctr_targets (B, L), positive (B, L)) -> [three losses]``
    on dense per-location tables, as the loss step that :func:`fcos_lib.losses.fcos_loss`
    calls, with :func:`fcos_lib.losses.loss_terms`'s contract (L1 box loss only; ``focal``
    is not used: ``terms`` calls its own; in distributed training each process divides by
    its own positives, where :func:`fcos_lib.losses.num_positives` takes their mean)."""
    def losses(outputs: dict[str, list], matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
               *, box_loss: str = "l1", focal: Callable | None = None) -> dict[str, Tensor]:
        if box_loss != "l1":
            raise ValueError(f"your losses use the L1 box loss, the model {box_loss!r}: build "
                             "it with box_loss='l1' (the course's), or use the library's "
                             "losses")
        deltas = torch.cat(outputs["box_deltas"], dim=1).float()            # (B, L, 4)
        locations = torch.cat(outputs["locations"], dim=0).to(deltas)       # (L, 2)
        strides = torch.cat([deltas.new_full((len(p),), float(s))
                             for p, s in zip(outputs["locations"], outputs["strides"])])
        labels, boxes = gather_targets(matched, gt_boxes, gt_labels)       # (B, L), (B, L, 4)
        positive = labels >= 0
        box_targets = encode_boxes(boxes, locations, strides) * positive[..., None]
        ctr_targets = torch.where(positive, centerness_target(box_targets), 0.0)  # 0/0 -> 0
        found = terms(torch.cat(outputs["cls_logits"], dim=1).float(), deltas,
                      torch.cat(outputs["centerness"], dim=1).float(), labels, box_targets,
                      ctr_targets, positive)
        return dict(zip(("classification", "bbox_regression", "bbox_ctrness"), found,
                        strict=True))
    losses.__name__ = f"dense_{getattr(terms, '__name__', 'losses')}"
    return losses


def per_image(detect_one: Callable) -> Callable:
    """A per-image ``detect_one(cls_logits, box_deltas, centerness, locations, strides,
    image_size, score_thresh, nms_thresh, topk, max_detections) -> [boxes, scores, labels]``
    as the batch detection that ``model.predict`` calls, with
    :func:`fcos_lib.inference.detect`'s contract (the dicts carry no ``levels``: the
    exercise's result does not say which level found a box)."""
    def detect(outputs: dict[str, list], image_size: int | tuple[int, int],
               score_thresh: float = 0.05, nms_thresh: float = 0.6,
               topk_candidates: int = 1000, detections_per_img: int = 100,
               centerness_in_score: bool = True, nms: Callable | None = None
               ) -> list[dict[str, Tensor]]:                # nms: detect_one calls its own
        if not centerness_in_score:
            raise ValueError("your detection always puts centerness in the score: detect "
                             "with centerness_in_score=True, or use the library's detection")
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        size = (int(size[0]), int(size[1]))
        found = []
        for i in range(len(outputs["cls_logits"][0])):     # one image at a time
            boxes, scores, labels = detect_one(
                [c[i] for c in outputs["cls_logits"]], [d[i] for d in outputs["box_deltas"]],
                [z[i] for z in outputs["centerness"]], list(outputs["locations"]),
                [int(s) for s in outputs["strides"]], size, score_thresh, nms_thresh,
                topk_candidates, detections_per_img)
            found.append({"boxes": boxes, "scores": scores, "labels": labels})
        return found
    detect.__name__ = f"per_image_{getattr(detect_one, '__name__', 'detect')}"
    return detect
