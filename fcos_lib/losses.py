"""The three FCOS losses: focal classification, box regression (L1 or GIoU), centerness.

All three are sums over locations divided by the number of positive locations (at least 1;
averaged over processes in distributed training), so that a batch with many objects does not
weigh more than one with few:

- ``classification``: sigmoid focal loss (alpha 0.25, gamma 2) over every location and class;
  a positive location's target is the one-hot of its box's class, a background location's is
  all zeros.
- ``bbox_regression``, on positives only: ``"l1"``, the mean over the four sides of the L1
  error of the LTRB distances in strides (the course's choice), or ``"giou"``, the
  generalized-IoU loss of the decoded box against the ground truth (the improved FCOS's and
  torchvision's choice).
- ``bbox_ctrness``, on positives only: binary cross-entropy with logits against
  :func:`fcos_lib.targets.centerness_target`.

With ``box_loss="giou"``, ``center_sampling_radius=1.5``, the default size ranges, levels
P3-P7 and locations at ``i * stride`` (``location_offset=0.0``), the result equals the loss
dict of ``torchvision.models.detection.FCOS`` in training mode. One convention differs, in
every configuration: among several boxes that claim a location, torchvision keeps the
largest ``1e8 - area`` in float32, which cannot tell apart areas less than 8 px² apart
(float32 spacing at 1e8) and then keeps the box listed first; here the truly smallest box wins.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from fcos_lib.targets import (assign_targets, centerness_target, decode_boxes,
                              default_size_ranges, encode_boxes, pad_targets)

BOX_LOSSES = ("l1", "giou")


def num_positives(positive: Tensor) -> Tensor:
    """The loss normalizer: the number of positive locations, at least 1.

    In distributed training (``torch.distributed`` initialized) it is the mean over processes,
    so that every process divides by the same number and the gradients average correctly.

    Args:
        positive: (B, L) bool, this process's positive locations.

    Returns:
        A float32 scalar tensor on ``positive``'s device.
    """
    count = positive.sum().to(torch.float32)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def fcos_loss(outputs: dict[str, list], targets: list[dict[str, Tensor]], *,
              box_loss: str = "l1", center_sampling_radius: float | None = None,
              size_ranges: list[tuple[float, float]] | None = None) -> dict[str, Tensor]:
    """The FCOS losses of a batch: assign targets, then the three losses.

    Args:
        outputs: the model's raw outputs (see ``docs/design.md``), per-level lists of
            ``cls_logits`` (B, HW_l, C), ``box_deltas`` (B, HW_l, 4) LTRB in strides,
            ``centerness`` (B, HW_l) logits, ``locations`` (HW_l, 2) xy pixels, ``strides`` int.
        targets: B dicts with ``boxes`` (N_i, 4) xyxy pixels and ``labels`` (N_i,) int64.
        box_loss: ``"l1"`` or ``"giou"``.
        center_sampling_radius: None (whole box) or the radius in strides (paper: 1.5).
        size_ranges: None (:func:`fcos_lib.targets.default_size_ranges`) or one (lo, hi)
            pair in pixels per level.

    Returns:
        ``classification``, ``bbox_regression``, ``bbox_ctrness`` and their sum ``total``,
        float32 scalar tensors.
    """
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss={box_loss!r}: choose one of {BOX_LOSSES}")
    strides = list(outputs["strides"])
    if size_ranges is None:
        size_ranges = default_size_ranges(strides)
    if len(size_ranges) != len(strides):
        raise ValueError(f"{len(size_ranges)} size ranges for {len(strides)} levels: "
                         "give one (lo, hi) pair per level, or None for the paper's rule")
    # Losses in float32 even under autocast: the focal loss and GIoU lose too much in float16.
    logits = torch.cat(outputs["cls_logits"], dim=1).float()                  # (B, L, C)
    deltas = torch.cat(outputs["box_deltas"], dim=1).float()                  # (B, L, 4)
    ctr_logits = torch.cat(outputs["centerness"], dim=1).float()              # (B, L)
    locations = torch.cat(outputs["locations"], dim=0).to(logits)             # (L, 2)
    loc_strides = torch.cat([logits.new_full((len(p),), float(s))
                             for p, s in zip(outputs["locations"], strides)])  # (L,)

    gt_boxes, gt_labels = pad_targets(targets, logits.shape[-1], device=logits.device)
    matched = assign_targets(gt_boxes, gt_labels, outputs["locations"], strides, size_ranges,
                             center_sampling_radius)                          # (B, L)
    positive = matched >= 0
    normalizer = num_positives(positive)

    img, loc = positive.nonzero(as_tuple=True)                                # (P,) each
    box_index = matched[img, loc]
    pos_boxes = gt_boxes[img, box_index]                                      # (P, 4)
    one_hot = torch.zeros_like(logits)
    one_hot[img, loc, gt_labels[img, box_index]] = 1.0
    cls = sigmoid_focal_loss(logits, one_hot, alpha=0.25, gamma=2, reduction="sum")

    pos_locations, pos_strides = locations[loc], loc_strides[loc]             # (P, 2), (P,)
    target_deltas = encode_boxes(pos_boxes, pos_locations, pos_strides)       # (P, 4)
    pos_deltas = deltas[img, loc]                                             # (P, 4)
    if box_loss == "l1":
        box = F.l1_loss(pos_deltas, target_deltas, reduction="sum") / 4
    else:
        pred_boxes = decode_boxes(pos_deltas, pos_locations, pos_strides)
        box = generalized_box_iou_loss(pred_boxes, pos_boxes, reduction="sum")
    ctr = F.binary_cross_entropy_with_logits(
        ctr_logits[img, loc], centerness_target(target_deltas), reduction="sum")

    losses = {"classification": cls / normalizer, "bbox_regression": box / normalizer,
              "bbox_ctrness": ctr / normalizer}
    losses["total"] = sum(losses.values())
    return losses
