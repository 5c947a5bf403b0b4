"""Matching detections to ground truth for the mAP, as the VOC devkit and pycocotools do.

Given every detection of a dataset in score order, decide for each one, at each IoU
threshold, whether it is a *hit* (it matches a ground-truth box of its image and class that
no higher-scoring detection took), a *miss*, or neither (it matches a "difficult" box, which
counts neither way). Two rules, each the official one of a benchmark:

- :func:`match_voc` (the VOC devkit): a detection looks only at the box it overlaps most; a
  hit when IoU > threshold and nobody took that box before, else a miss;
- :func:`match_coco` (pycocotools): a detection takes the best still-free box with
  IoU >= threshold, preferring boxes that are not difficult.

Nothing loops over detections in Python: the candidate (detection, box) pairs of the whole
dataset are built at once, VOC matching is a handful of scatter operations, and COCO matching
(each detection must see which boxes earlier ones took) loops over the *rank* of a detection
within its (image, class) group, handling the r-th detection of every group at once: as many
steps as the largest group has detections, however many images there are. The tests check
both rules against pycocotools and a line-by-line restatement of the devkit.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["match_voc", "match_coco"]


# ------------------------------------------------------------------ candidate pairs


def _pairs(det_group: Tensor, gt_sort_key: Tensor, gt_group: Tensor) -> tuple[Tensor, Tensor]:
    """Every (detection, ground truth) pair that shares image and class.

    Args:
        det_group: (N,) int64 group (image * C + class) of each detection.
        gt_sort_key: (G,) int64 key that orders the ground truth: by group first, then by the
            benchmark's preference inside a group.
        gt_group: (G,) int64 group of each ground-truth box.

    Returns:
        ``pair_det`` (P,) and ``pair_gt`` (P,) indices; the pairs of one detection are
        contiguous, in ``gt_sort_key`` order (which breaks ties between equal IoUs).
    """
    order = torch.argsort(gt_sort_key, stable=True)
    sorted_groups = gt_group[order]
    start = torch.searchsorted(sorted_groups, det_group, side="left")
    counts = torch.searchsorted(sorted_groups, det_group, side="right") - start   # (N,)
    pair_det = torch.repeat_interleave(torch.arange(len(det_group)), counts)      # (P,)
    first_pair = torch.cumsum(counts, 0) - counts
    within = torch.arange(len(pair_det)) - first_pair[pair_det]
    return pair_det, order[start[pair_det] + within]


def _pair_iou(det_boxes: Tensor, gt_boxes: Tensor) -> Tensor:
    """IoU of matched rows of two (P, 4) float64 xyxy tensors, with pycocotools' arithmetic
    (union = (area_d + area_g) - intersection), so that thresholds fall the same way."""
    w = (torch.minimum(det_boxes[:, 2], gt_boxes[:, 2])
         - torch.maximum(det_boxes[:, 0], gt_boxes[:, 0])).clamp(min=0)
    h = (torch.minimum(det_boxes[:, 3], gt_boxes[:, 3])
         - torch.maximum(det_boxes[:, 1], gt_boxes[:, 1])).clamp(min=0)
    inter = w * h
    area_d = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
    area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    return torch.where(inter > 0, inter / (area_d + area_g - inter), 0.0)


def _segment_max(values: Tensor, segment: Tensor, size: int, fill: float) -> Tensor:
    """(T, size) maximum of ``values`` (T, P) over the pairs of each segment; ``fill`` if none."""
    out = values.new_full((values.shape[0], size), fill)
    return out.scatter_reduce(1, segment.expand_as(values), values, "amax")


# ------------------------------------------------------------------ matching


def match_voc(det_group: Tensor, det_boxes: Tensor, gt_group: Tensor, gt_boxes: Tensor,
               difficult: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """VOC devkit matching of score-sorted detections.

    Args:
        det_group: (N,) int64 ``image * C + class`` of each detection, in score order.
        det_boxes: (N, 4) float64 xyxy pixels; gt_group: (G,); gt_boxes: (G, 4).
        difficult: (G,) bool; thresholds: (T,) float64 IoU thresholds.

    Each detection looks at the box it overlaps most (the first listed on ties); a hit when
    IoU > t, the box is not difficult and no higher-ranked detection hit it first.

    Returns:
        ``hit`` and ``miss``, (T, N) bool; a detection on a difficult box is neither.
    """
    N, G, T = len(det_group), len(gt_group), len(thresholds)
    pair_det, pair_gt = _pairs(det_group, gt_group, gt_group)
    iou = _pair_iou(det_boxes[pair_det], gt_boxes[pair_gt])
    best_iou = _segment_max(iou[None], pair_det[None], N, -1.0)[0]                     # (N,)
    at_best = iou == best_iou[pair_det]
    first = torch.full((N,), len(pair_gt), dtype=torch.long).scatter_reduce(
        0, pair_det, torch.where(at_best, torch.arange(len(pair_gt)), len(pair_gt)), "amin")
    best_gt = torch.cat([pair_gt, pair_gt.new_full((1,), G)])[first]    # G: no box at all
    over = best_iou[None] > thresholds[:, None]                                          # (T, N)
    on_difficult = over & torch.cat([difficult, difficult.new_zeros(1)])[best_gt][None]
    claims = over & ~on_difficult
    # The first (highest-ranked) detection that claims a box gets it; rank = index here.
    key = best_gt[None] + torch.arange(T)[:, None] * (G + 1)                           # (T, N)
    ranks = torch.arange(N).expand(T, N)
    winner = torch.full((T * (G + 1),), N, dtype=torch.long).scatter_reduce(
        0, key[claims], ranks[claims], "amin")
    hit = claims & (winner[key] == ranks)
    return hit, ~hit & ~on_difficult


def match_coco(det_group: Tensor, det_rank: Tensor, det_boxes: Tensor, gt_group: Tensor,
                gt_boxes: Tensor, difficult: Tensor, thresholds: Tensor
                ) -> tuple[Tensor, Tensor]:
    """pycocotools matching of score-sorted detections.

    Detections are handled in score order within their (image, class) group; each takes,
    among the boxes no earlier detection took and with IoU >= t, a non-difficult one if any
    (else a difficult one, which makes it neither hit nor miss), with the largest IoU (the
    last in pycocotools' order on ties).

    Args:
        det_rank: (N,) position of each detection within its group, by score; the other
            arguments as :func:`match_voc`'s.

    Returns:
        ``hit`` and ``miss``, (T, N) bool.
    """
    N, G, T = len(det_group), len(gt_group), len(thresholds)
    # pycocotools lists a group's non-difficult boxes first, each part in input order.
    pair_det, pair_gt = _pairs(det_group, gt_group * 2 + difficult.long(), gt_group)
    iou = _pair_iou(det_boxes[pair_det], gt_boxes[pair_gt])
    easy = ~difficult[pair_gt]
    # Pairs by the rank of their detection; a stable sort keeps pycocotools' box order.
    by_rank = torch.argsort(det_rank[pair_det], stable=True)
    pair_det, pair_gt, iou, easy = pair_det[by_rank], pair_gt[by_rank], iou[by_rank], easy[by_rank]
    steps = torch.searchsorted(det_rank[pair_det],
                               torch.arange(int(det_rank.max()) + 2 if N else 1))
    t_match = thresholds.clamp(max=1 - 1e-10)[:, None]              # pycocotools' cap at 1
    taken = torch.zeros(T, G, dtype=torch.bool)
    matched = torch.full((T, N), -1, dtype=torch.long)
    for lo, hi in zip(steps[:-1].tolist(), steps[1:].tolist()):     # one rank at a time
        if lo == hi:
            continue
        dets, gts, ious, easy_r = pair_det[lo:hi], pair_gt[lo:hi], iou[lo:hi], easy[lo:hi]
        new = torch.ones(hi - lo, dtype=torch.bool)
        new[1:] = dets[1:] != dets[:-1]
        local = (torch.cumsum(new.long(), 0) - 1)[None]                # (1, P_r) detection slot
        slots = int(local[0, -1]) + 1
        free = (ious[None] >= t_match) & ~taken[:, gts]                                   # (T, P_r)
        has_easy = _segment_max((free & easy_r).double(), local, slots, 0.0) > 0
        free &= easy_r[None] | ~has_easy.gather(1, local.expand_as(free))
        best = _segment_max(torch.where(free, ious[None], -1.0), local, slots, -1.0)
        free &= ious[None] == best.gather(1, local.expand_as(free))
        position = torch.arange(hi - lo).expand_as(free)
        last = _segment_max(torch.where(free, position, -1), local, slots, -1)          # (T, S)
        t_idx, slot = (last >= 0).nonzero(as_tuple=True)
        chosen = gts[last[t_idx, slot]]
        taken[t_idx, chosen] = True
        matched[t_idx, dets[new][slot]] = chosen
    found = matched >= 0
    on_difficult = found & torch.cat([difficult, difficult.new_zeros(1)])[matched]
    return found & ~on_difficult, ~found
