"""What the assignment gives: the positives of one image, level by level, and the best
possible recall of an assignment over a dataset.

FCOS has no anchors to match, but it can still fail to give an object any location to learn
from: the object may be too small for its level's grid, fall between the points, or lose every
point it contains to a smaller box. The paper measures this as the **best possible recall**
(BPR): the share of ground-truth boxes that at least one location is assigned to, an upper
bound on the recall of any detector trained with that assignment. The paper reports 98.4% on
COCO for FCOS with FPN (arXiv:1904.01355, Table 1), on a par with anchor-based RetinaNet.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from fcos_lib.targets import (
    assign_targets,
    centerness_target,
    default_size_ranges,
    encode_boxes,
    pad_targets,
)

__all__ = ["location_targets", "best_possible_recall"]


def location_targets(target: dict[str, Tensor], locations: Sequence[Tensor],
                     strides: Sequence[int],
                     size_ranges: Sequence[tuple[float, float]] | None = None,
                     center_sampling_radius: float | None = None) -> list[dict[str, Tensor]]:
    """Which locations of each level learn a box of one image, and their centerness target.

    Args:
        target: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,).
        locations: the model's own locations per level (``outputs["locations"]``, or
            ``model.grid(H, W)``), (H_l·W_l, 2) xy pixels.
        strides: the levels' strides; size_ranges, center_sampling_radius: as the model's
            (``model.loss_config``), None for the paper's ranges and no center sampling.

    Returns:
        One dict per level, on the CPU: ``locations`` (L_l, 2), ``positive`` (L_l,) bool,
        ``box`` (L_l,) int64 (the matched box, -1 for background), ``centerness`` (L_l,)
        (0 on background), ``stride`` (int).
    """
    # A copy: the model hands out its cached grid, which an edit here must not change.
    locations = [p.detach().cpu().float().clone() for p in locations]
    ranges = size_ranges or default_size_ranges(list(strides))
    boxes = target["boxes"].detach().cpu().float()[None]                     # (1, N, 4)
    labels = target["labels"].cpu()[None]
    matched = assign_targets(boxes, labels, locations, list(strides), ranges,
                             center_sampling_radius)[0]                      # (L,)
    out = []
    for points, stride, match in zip(locations, strides,
                                     matched.split([len(p) for p in locations])):
        positive = match >= 0
        centerness = torch.zeros(len(points))
        if positive.any():
            ltrb = encode_boxes(boxes[0, match[positive]], points[positive],
                                torch.full((int(positive.sum()),), float(stride)))
            centerness[positive] = centerness_target(ltrb)
        out.append({"locations": points, "positive": positive, "box": match,
                    "centerness": centerness, "stride": int(stride)})
    return out


def best_possible_recall(targets: Iterable[dict[str, Tensor]], locations: Sequence[Tensor],
                         strides: Sequence[int],
                         size_ranges: Sequence[tuple[float, float]] | None = None,
                         center_sampling_radius: float | None = None,
                         batch_size: int = 64) -> dict[str, float]:
    """The share of ground-truth boxes that the assignment gives at least one location.

    Args:
        targets: one dict per image, ``boxes`` (N, 4) xyxy pixels and ``labels`` (N,), all
            images of the size that ``locations`` were made for.
        locations: per level, (H_l·W_l, 2) xy pixels (``model.grid(H, W)``).
        strides, size_ranges, center_sampling_radius: as for
            :func:`fcos_lib.targets.assign_targets` (None: the paper's ranges, no sampling).
        batch_size: images assigned at once.

    Returns:
        ``bpr`` (recalled / boxes), ``boxes`` and ``recalled`` (counts), ``per_level``
        (boxes recalled on each level; a box may be recalled on several).

    >>> points = [torch.tensor([[4.0, 4.0], [12.0, 4.0]])]           # one level, stride 8
    >>> boxes = torch.tensor([[0.0, 0, 8, 8], [9, 1, 11, 3]])          # the second holds no point
    >>> best_possible_recall([{"boxes": boxes, "labels": torch.tensor([0, 1])}], points, [8])
    {'bpr': 0.5, 'boxes': 2, 'recalled': 1, 'per_level': [1]}
    """
    ranges = list(size_ranges or default_size_ranges(list(strides)))
    sizes = [len(p) for p in locations]
    targets = list(targets)
    total = recalled = 0
    per_level = [0] * len(sizes)
    for start in range(0, len(targets), batch_size):
        batch = targets[start:start + batch_size]
        classes = 1 + max((int(t["labels"].max()) for t in batch if len(t["labels"])), default=0)
        boxes, labels = pad_targets(batch, classes)                          # (B, M, 4), (B, M)
        matched = assign_targets(boxes, labels, locations, list(strides), ranges,
                                 center_sampling_radius)                     # (B, L)
        total += int((labels >= 0).sum())
        recalled += _boxes_hit(matched, labels.shape[1])
        for level, part in enumerate(matched.split(sizes, dim=1)):
            per_level[level] += _boxes_hit(part, labels.shape[1])
    return {"bpr": recalled / total if total else 1.0, "boxes": total, "recalled": recalled,
            "per_level": per_level}


def _boxes_hit(matched: Tensor, num_boxes: int) -> int:
    """How many (image, box) pairs at least one location of ``matched`` (B, L) points to."""
    hit = torch.zeros(len(matched), num_boxes + 1, dtype=torch.bool, device=matched.device)
    hit.scatter_(1, matched + 1, True)                          # slot 0 collects background
    return int(hit[:, 1:].sum())
