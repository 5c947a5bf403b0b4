"""One image's verdict: which detections are right, which are wrong, which objects were missed.

:func:`judge` grades the detections of one image the way :func:`fcos_lib.evaluate.
mean_average_precision` grades a dataset (the VOC devkit's matching,
:func:`fcos_lib.matching.match_voc`, written plainly in :func:`~fcos_lib.matching.
match_voc_plain`): in score order, a detection takes the box of its class that it overlaps
most, if the IoU is above the threshold and no better detection took it. A small example, one
cat and three detections of it::

    >>> import torch
    >>> target = {"boxes": torch.tensor([[10., 10, 50, 50]]), "labels": torch.tensor([0])}
    >>> prediction = {"boxes": torch.tensor([[12., 10, 50, 52], [10, 12, 48, 50], [60, 60, 90, 90]]),
    ...               "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0])}
    >>> verdict = judge(prediction, target, iou_threshold=0.5)
    >>> [STATUS_NAMES[int(s)] for s in verdict["status"]]
    ['true positive', 'duplicate', 'false positive']
    >>> verdict["found"].tolist()
    [True]

The second box is a *duplicate*: it overlaps the cat enough, but the first one took it, so
the benchmark counts it as a false positive; NMS should have removed it. :func:`image_ap` is
the AP of one image alone, which the viewer sorts by, worst first.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from fcos_lib.evaluate import mean_average_precision
from fcos_lib.matching import match_voc

__all__ = ["TRUE_POSITIVE", "FALSE_POSITIVE", "DUPLICATE", "IGNORED", "STATUS_NAMES",
           "judge", "image_ap"]

TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE, IGNORED = 0, 1, 2, 3
STATUS_NAMES = ["true positive", "false positive", "duplicate", "on a difficult object"]


def judge(prediction: dict[str, Tensor], target: dict[str, Tensor],
          iou_threshold: float = 0.5) -> dict[str, Tensor]:
    """The verdict on each detection and each ground-truth box of one image.

    Args:
        prediction: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,), ``labels`` (K,): the
            detections to grade (already cut at whatever score the viewer shows).
        target: ``boxes`` (G, 4), ``labels`` (G,), optionally ``difficult`` (G,) bool.
        iou_threshold: a detection needs IoU above this with a box of its class.

    Returns:
        ``status`` (K,) int64, one of TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE (above the
        threshold on a box that a better detection took) or IGNORED (on a difficult box:
        neither right nor wrong); ``found`` (G,) bool, the boxes some detection took (a
        difficult box is never counted as missed: ``found`` is True for it); ``iou`` (K,) the
        best IoU of each detection with a box of its class (0 when there is none).
    """
    boxes, labels = prediction["boxes"].detach().cpu().double(), prediction["labels"].cpu().long()
    gt_boxes, gt_labels = target["boxes"].detach().cpu().double(), target["labels"].cpu().long()
    difficult = target.get("difficult", torch.zeros(len(gt_labels), dtype=torch.bool)).cpu().bool()
    order = torch.argsort(-prediction["scores"].detach().cpu().double(), stable=True)
    hit, miss, matched = match_voc(labels[order], boxes[order], gt_labels, gt_boxes, difficult,
                                   torch.tensor([float(iou_threshold)], dtype=torch.float64),
                                   with_matched=True)
    back = torch.argsort(order)                              # score order -> the input's order
    hit, miss, matched = hit[0, back], miss[0, back], matched[0, back]                 # (K,)
    # The best IoU with a box of the detection's class: above the threshold, a miss is a
    # duplicate (the devkit looked at a box that a better detection took).
    iou = torch.where(labels[:, None] == gt_labels[None], box_iou(boxes, gt_boxes), 0.0)
    best_iou = iou.amax(1) if len(gt_boxes) else torch.zeros(len(boxes), dtype=torch.float64)
    status = torch.full((len(boxes),), FALSE_POSITIVE, dtype=torch.long)
    status[miss & (best_iou > iou_threshold)] = DUPLICATE
    status[hit] = TRUE_POSITIVE
    status[~hit & ~miss] = IGNORED
    found = difficult.clone()
    found[matched[hit]] = True
    return {"status": status, "found": found, "iou": best_iou.float()}


def image_ap(prediction: dict[str, Tensor], target: dict[str, Tensor], num_classes: int,
             iou_threshold: float = 0.5) -> float:
    """The AP of one image: the mean, over the classes it has objects of, of their AP on this
    image alone (VOC area, as notebook 07's mAP); NaN for an image without objects."""
    if not len(target["labels"]):
        return float("nan")
    return mean_average_precision([prediction], [target], iou_threshold,
                                  num_classes=num_classes)["map"]
