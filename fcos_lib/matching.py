"""Matching detections to ground truth for the mAP, as the VOC devkit and pycocotools do.

Given every detection of a dataset in score order, decide for each one, at an IoU threshold,
which ground-truth box of its image and class it takes: a *hit* when it takes a box that no
higher-scoring detection took, a *miss* when it takes none, and neither (*ignored*) when the
box it takes is "difficult". Two rules, each the official one of a benchmark:

- VOC (the devkit): a detection looks only at the box it overlaps most; a hit when IoU >
  threshold and nobody took that box before, else a miss;
- COCO (pycocotools): a detection takes the best still-free box with IoU >= threshold,
  preferring boxes that are not difficult.

The matching is here twice. :func:`match_voc_plain` and :func:`match_coco_plain` state the
rules one detection at a time, at one threshold: they are the ones to read. :func:`match_voc`
and :func:`match_coco`, which the mAP calls, give the same answer (``tests/test_matching.py``
checks it on random problems) for many thresholds at once, with no Python loop over
detections: the candidate (detection, box) pairs of the whole dataset are built at once, VOC
matching is a handful of scatter operations, and COCO matching (each detection must see which
boxes earlier ones took) loops over the *rank* of a detection within its (image, class) group,
handling the r-th detection of every group at once: as many steps as the largest group has
detections, however many images there are. The tests also check the rules against
pycocotools and a line-by-line restatement of the devkit. IoUs use pycocotools' arithmetic,
(area + area) - intersection, as torchvision's ``box_iou`` does: thresholds fall alike.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["match_voc_plain", "match_coco_plain", "match_voc", "match_coco"]


# ------------------------------------------------------------------ plain


def match_voc_plain(det_group: Tensor, det_boxes: Tensor, gt_group: Tensor, gt_boxes: Tensor,
                    difficult: Tensor, iou_threshold: float) -> dict[str, Tensor]:
    """The VOC devkit's rule, one detection at a time: the same result as :func:`match_voc`.

    A *group* is one image and one class (``image * C + class``; for a single image, the
    class): a detection can only take a box of its own group. Going down the detections from
    the highest score, each looks only at the box of its group that it overlaps most (the
    first listed on equal IoUs), and is

    - *ignored* if IoU > ``iou_threshold`` and that box is difficult (which stays free);
    - a *hit* if IoU > ``iou_threshold`` and no earlier detection took that box (it takes it);
    - else a *miss*: the box was taken (a duplicate), the IoU is too low, or there is no box.
      The devkit never looks on to a second-best box.

    Args:
        det_group: (N,) int64 group of each detection; the detections in score order,
            highest first.
        det_boxes: (N, 4) xyxy pixels.
        gt_group: (G,) int64 group of each ground-truth box.
        gt_boxes: (G, 4) xyxy pixels.
        difficult: (G,) bool, the boxes that count neither way.
        iou_threshold: the IoU a detection must exceed, e.g. 0.5.

    Returns:
        A dict of (N,) tensors: ``matched`` int64, the index in [0, G) of the box each
        detection took (hit) or sits on (ignored), -1 for a miss; ``hit``, ``miss``,
        ``ignored`` bool, exactly one of them true for each detection.

    Two boxes of one class, A and B (A's top 60%: IoU(A, B) = 0.6), a difficult box C, and
    four detections: one on A, a second one on A, one on C, one on nothing::

        >>> import torch
        >>> gt_boxes = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 6], [20, 20, 30, 30]])
        >>> difficult = torch.tensor([False, False, True])
        >>> det_boxes = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 10], [21, 20, 30, 30],
        ...                           [40, 40, 50, 50]])
        >>> group = torch.zeros(4, dtype=torch.long)       # one image, one class: group 0
        >>> out = match_voc_plain(group, det_boxes, group[:3], gt_boxes, difficult, 0.5)
        >>> out["matched"].tolist()
        [0, -1, 2, -1]
        >>> out["hit"].tolist(), out["miss"].tolist(), out["ignored"].tolist()
        ([True, False, False, False], [False, True, False, True], [False, False, True, False])

    The second detection looks only at A (IoU 1), which the first took: a miss, though B
    (IoU 0.6) is free. :func:`match_coco_plain` gives it B.
    """
    matched = det_group.new_full((len(det_group),), -1)
    taken = torch.zeros_like(difficult, dtype=torch.bool)                         # (G,)
    for d in range(len(det_group)):                                  # highest score first
        mine = (gt_group == det_group[d]).nonzero()[:, 0]     # (M,) the boxes of its group
        iou = box_iou(det_boxes[d, None], gt_boxes[mine])[0].nan_to_num(0.0)  # (M,); 0/0 -> 0
        if len(mine) == 0 or iou.max() <= iou_threshold:
            continue                                           # no box, or too sloppy: miss
        g = mine[iou.argmax()]                  # the box it overlaps most, the first of equals
        if difficult[g]:
            matched[d] = g                                            # ignored; g stays free
        elif not taken[g]:
            matched[d], taken[g] = g, True                            # hit
        # else: a better detection took g: a duplicate, a miss
    return _verdicts(matched, difficult)


def match_coco_plain(det_group: Tensor, det_boxes: Tensor, gt_group: Tensor, gt_boxes: Tensor,
                     difficult: Tensor, iou_threshold: float) -> dict[str, Tensor]:
    """pycocotools' rule, one detection at a time: the same result as :func:`match_coco`.

    Going down the detections from the highest score, each looks at the boxes of its group
    (as in :func:`match_voc_plain`) that no earlier detection took and that it overlaps with
    IoU >= ``iou_threshold``; among them it keeps the boxes that are not difficult, if there
    are any, and takes the one it overlaps most (the last listed on equal IoUs). On a box
    that is not difficult it is a *hit*; on a difficult one, *ignored* (and that box is taken
    all the same); with no box left, a *miss*. Like pycocotools, the threshold is capped at
    1 - 1e-10: at a threshold of 1, a match perfect but for rounding still counts.

    Args:
        det_group, det_boxes, gt_group, gt_boxes, difficult: as :func:`match_voc_plain`'s.
        iou_threshold: the IoU a detection must reach, e.g. 0.5.

    Returns:
        The dict of :func:`match_voc_plain`: ``matched`` (N,) int64 (-1 for a miss) and
        ``hit``, ``miss``, ``ignored`` (N,) bool.

    The example of :func:`match_voc_plain`: now the second detection takes B::

        >>> gt_boxes = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 6], [20, 20, 30, 30]])
        >>> difficult = torch.tensor([False, False, True])
        >>> det_boxes = torch.tensor([[0., 0, 10, 10], [0, 0, 10, 10], [21, 20, 30, 30],
        ...                           [40, 40, 50, 50]])
        >>> group = torch.zeros(4, dtype=torch.long)
        >>> out = match_coco_plain(group, det_boxes, group[:3], gt_boxes, difficult, 0.5)
        >>> out["matched"].tolist(), out["hit"].tolist()
        ([0, 1, 2, -1], [True, True, False, False])
    """
    matched = det_group.new_full((len(det_group),), -1)
    taken = torch.zeros_like(difficult, dtype=torch.bool)                         # (G,)
    threshold = min(float(iou_threshold), 1 - 1e-10)                  # pycocotools' cap
    for d in range(len(det_group)):                                  # highest score first
        mine = (gt_group == det_group[d]).nonzero()[:, 0]     # (M,) the boxes of its group
        iou = box_iou(det_boxes[d, None], gt_boxes[mine])[0].nan_to_num(0.0)  # (M,); 0/0 -> 0
        free = ~taken[mine] & (iou >= threshold)                                    # (M,)
        if (free & ~difficult[mine]).any():
            free &= ~difficult[mine]                  # a box to find beats a difficult one
        if not free.any():
            continue                                                  # nothing left: miss
        ious = iou.tolist()
        g = mine[max(free.nonzero()[:, 0].tolist(), key=lambda i: (ious[i], i))]  # last of equals
        matched[d], taken[g] = g, True                            # hit, or ignored if difficult
    return _verdicts(matched, difficult)


def _verdicts(matched: Tensor, difficult: Tensor) -> dict[str, Tensor]:
    """``matched`` (..., N) and the flags it implies: hit, miss, ignored (on a difficult box).
    Index -1 (no box) reads the False appended to ``difficult``."""
    ignored = torch.cat([difficult, difficult.new_zeros(1)])[matched]
    return {"matched": matched, "hit": (matched >= 0) & ~ignored, "miss": matched < 0,
            "ignored": ignored}


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
              difficult: Tensor, thresholds: Tensor, *, with_matched: bool = False
              ) -> tuple[Tensor, ...]:
    """VOC devkit matching of score-sorted detections, at many thresholds at once.

    Args:
        det_group: (N,) int64 ``image * C + class`` of each detection, in score order.
        det_boxes: (N, 4) float64 xyxy pixels; gt_group: (G,); gt_boxes: (G, 4).
        difficult: (G,) bool; thresholds: (T,) float64 IoU thresholds.
        with_matched: also return the box each detection took.

    Each detection looks at the box it overlaps most (the first listed on ties); a hit when
    IoU > t, the box is not difficult and no higher-ranked detection hit it first.

    Returns:
        ``hit`` and ``miss``, (T, N) bool (a detection on a difficult box is neither); with
        ``with_matched``, ``matched`` (T, N) int64 too: each row as :func:`match_voc_plain`'s.
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
    return _fast_result(torch.where(hit | on_difficult, best_gt[None], -1), difficult,
                        with_matched)


def match_coco(det_group: Tensor, det_rank: Tensor, det_boxes: Tensor, gt_group: Tensor,
               gt_boxes: Tensor, difficult: Tensor, thresholds: Tensor, *,
               with_matched: bool = False) -> tuple[Tensor, ...]:
    """pycocotools matching of score-sorted detections, at many thresholds at once.

    Detections are handled in score order within their (image, class) group; each takes,
    among the boxes no earlier detection took and with IoU >= t, a non-difficult one if any
    (else a difficult one, which makes it neither hit nor miss), with the largest IoU (the
    last in pycocotools' order on ties).

    Args:
        det_rank: (N,) position of each detection within its group, by score; the other
            arguments as :func:`match_voc`'s.

    Returns:
        ``hit``, ``miss`` (T, N) bool, and with ``with_matched`` ``matched`` (T, N) int64:
        each row as :func:`match_coco_plain`'s.
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
    return _fast_result(matched, difficult, with_matched)


def _fast_result(matched: Tensor, difficult: Tensor, with_matched: bool) -> tuple[Tensor, ...]:
    """``hit``, ``miss`` (T, N) from ``matched`` (T, N), and ``matched`` if asked for."""
    verdicts = _verdicts(matched, difficult)
    return (verdicts["hit"], verdicts["miss"]) + ((matched,) if with_matched else ())
