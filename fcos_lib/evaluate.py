"""Mean average precision: how good a detector is, in one number, and per class.

For one class: sort every detection of the class over the whole dataset by score; walk down
the list, and call each detection a *hit* (true positive) when it matches a ground-truth box
of its image that no earlier detection matched, with IoU above a threshold, else a *miss*
(false positive). After k detections, precision = hits / k and recall = hits / (number of
ground-truth boxes). Average precision (AP) is the area under that precision/recall curve,
read after making precision non-increasing (the best precision at this recall or beyond);
the mAP is the mean of the per-class APs over the classes that have ground truth.

Three ways to read the area, each the official one of a benchmark:

- ``"11point"`` (PASCAL VOC 2007): the mean of the precision at recall 0, 0.1, ..., 1;
- ``"area"`` (VOC 2010 and later): the exact area under the step curve;
- ``"coco101"`` (COCO): the mean of the precision at recall 0, 0.01, ..., 1.

Matching follows the benchmark of the method too (``matching=None`` picks it):

- ``"voc"`` (the VOC devkit): a detection looks only at the ground-truth box it overlaps
  most; it is a hit when IoU > threshold and nobody took that box before, else a miss;
- ``"coco"`` (pycocotools): a detection takes the best still-free box with IoU >= threshold.

"Difficult" ground truth counts neither way: it adds nothing to the number of boxes to find,
and a detection that matches it is dropped from the list (neither hit nor miss). With
``iou_threshold="coco"`` the AP is averaged over the ten thresholds 0.50, 0.55, ..., 0.95.

Nothing loops over detections in Python: the candidate (detection, box) pairs of the whole
dataset are built at once, VOC matching is a handful of scatter operations, and COCO matching
(each detection must see which boxes earlier ones took) loops over the *rank* of a detection
within its (image, class) group, handling the r-th detection of every group at once: as
many steps as the largest group has detections (at most ``max_detections``, when set),
however many images there are.

The test suite checks the numbers against pycocotools (``coco101``) and against a
line-by-line reference of the VOC devkit (``11point``, ``area``). One deliberate difference
from the devkit: boxes are float pixel corners, so IoU has no "+1" on widths and heights
(as in pycocotools).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["mean_average_precision", "iou_thresholds", "average_precision", "format_table",
           "main"]

METHODS = ("11point", "area", "coco101")


def iou_thresholds(iou_threshold: float | str) -> np.ndarray:
    """The IoU thresholds: ``[t]`` for a number, 0.50:0.05:0.95 (as pycocotools) for "coco"."""
    if isinstance(iou_threshold, str):
        if iou_threshold != "coco":
            raise ValueError(f"iou_threshold={iou_threshold!r}: pass a number in (0, 1] or 'coco'")
        return np.linspace(0.5, 0.95, 10)  # pycocotools' own linspace: same float values
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold={iou_threshold}: it must lie in (0, 1]")
    return np.array([float(iou_threshold)])


# ------------------------------------------------------------------ input checks


def _stack(dicts: Sequence[dict[str, Tensor]], keys: Sequence[str], what: str
           ) -> tuple[dict[str, Tensor], Tensor]:
    """Concatenate per-image dicts on the CPU (boxes as float64), with each row's image index.

    ``difficult`` may be absent (all False); every other key is required.
    """
    required = [k for k in keys if k != "difficult"]
    for i, d in enumerate(dicts):
        if any(k not in d for k in required):
            raise ValueError(f"{what}[{i}] has no {[k for k in required if k not in d]}: each "
                             f"{what[:-1]} is a dict with {', '.join(required)}")
    for i, d in enumerate(dicts):
        shape = tuple(torch.as_tensor(d["boxes"]).shape)
        if not (len(shape) == 2 and shape[1] == 4 or shape in ((0,), (4,))):
            raise ValueError(f"{what}[{i}]['boxes'] has shape {shape}: expected (N, 4) xyxy")
        if torch.as_tensor(d["labels"]).is_floating_point():
            raise ValueError(f"{what}[{i}]['labels'] are floats: pass class indices as "
                             "integers (torch.int64)")
    boxes = [torch.as_tensor(d["boxes"]).reshape(-1, 4) for d in dicts]
    counts = torch.tensor([len(b) for b in boxes], dtype=torch.long)
    out = {"boxes": torch.cat(boxes).detach().cpu().double()}
    for k in keys[1:]:
        parts = [torch.as_tensor(d[k]).reshape(-1) if k in d
                 else torch.zeros(len(b), dtype=torch.bool) for d, b in zip(dicts, boxes)]
        lengths = torch.tensor([len(p) for p in parts], dtype=torch.long)
        if not torch.equal(lengths, counts):
            i = int((lengths != counts).nonzero()[0, 0])
            raise ValueError(f"{what}[{i}]: {int(counts[i])} boxes but {int(lengths[i])} {k}")
        out[k] = torch.cat(parts).detach().cpu()
    return out, torch.repeat_interleave(torch.arange(len(dicts)), counts)


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


def _match_voc(det_group: Tensor, det_boxes: Tensor, gt_group: Tensor, gt_boxes: Tensor,
               difficult: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor]:
    """VOC devkit matching of score-sorted detections.

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


def _match_coco(det_group: Tensor, det_rank: Tensor, det_boxes: Tensor, gt_group: Tensor,
                gt_boxes: Tensor, difficult: Tensor, thresholds: Tensor
                ) -> tuple[Tensor, Tensor]:
    """pycocotools matching of score-sorted detections.

    Detections are handled in score order within their (image, class) group; each takes,
    among the boxes no earlier detection took and with IoU >= t, a non-difficult one if any
    (else a difficult one, which makes it neither hit nor miss), with the largest IoU (the
    last in pycocotools' order on ties).

    Args:
        det_rank: (N,) position of each detection within its group, by score.

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


# ------------------------------------------------------------------ curves and areas


def interpolated_precision(precision: np.ndarray) -> np.ndarray:
    """The best precision at each point of a curve or anywhere after it (higher recall).

    Args:
        precision: (..., K) precision along K score-sorted detections.

    Returns:
        (..., K), non-increasing along the last axis.
    """
    return np.maximum.accumulate(precision[..., ::-1], axis=-1)[..., ::-1]


def average_precision(recall: np.ndarray, precision: np.ndarray, method: str) -> np.ndarray:
    """Area under precision/recall curves, as the benchmark of ``method`` reads it.

    Args:
        recall, precision: (T, K) curves along K score-sorted detections (recall
            non-decreasing), one row per IoU threshold.
        method: ``"11point"``, ``"area"`` or ``"coco101"``.

    Returns:
        (T,) average precision of each row.
    """
    T = recall.shape[0]
    if method == "area":
        rec = np.concatenate([np.zeros((T, 1)), recall, np.ones((T, 1))], axis=1)
        prec = np.concatenate([np.zeros((T, 1)), precision, np.zeros((T, 1))], axis=1)
        envelope = interpolated_precision(prec)
        return np.sum((rec[:, 1:] - rec[:, :-1]) * envelope[:, 1:], axis=1)
    if method == "11point":
        points = np.arange(0.0, 1.1, 0.1)  # the devkit's own values (0.30000000000000004, ...)
    elif method == "coco101":
        points = np.linspace(0.0, 1.0, 101)
    else:
        raise ValueError(f"method={method!r}: choose one of {METHODS}")
    # Precision at recall r = the best precision at any recall >= r, 0 when never reached.
    envelope = np.concatenate([interpolated_precision(precision), np.zeros((T, 1))], axis=1)
    first = np.stack([np.searchsorted(row, points, side="left") for row in recall])  # (T, R)
    return np.take_along_axis(envelope, first, axis=1).mean(axis=1)


def _class_curves(hit: np.ndarray, miss: np.ndarray, num_gt: int, method: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Recall, precision (T, K) and AP (T,) of one class's score-sorted detections."""
    hits, misses = np.cumsum(hit, axis=1, dtype=np.float64), np.cumsum(miss, axis=1,
                                                                        dtype=np.float64)
    recall = hits / num_gt
    if method == "coco101":
        precision = hits / (hits + misses + np.spacing(1))           # as pycocotools
    else:
        precision = hits / np.maximum(hits + misses, np.finfo(np.float64).eps)  # as the devkit
    return recall, precision, average_precision(recall, precision, method)


# ------------------------------------------------------------------ the entry point


def mean_average_precision(predictions: Sequence[dict[str, Tensor]],
                           targets: Sequence[dict[str, Tensor]],
                           iou_threshold: float | str = 0.5, method: str = "area", *,
                           matching: str | None = None, num_classes: int | None = None,
                           max_detections: int | None = None) -> dict[str, Any]:
    """mAP of detections against ground truth, over a whole dataset.

    Args:
        predictions: one dict per image: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,),
            ``labels`` (K,) int64.
        targets: one dict per image, same order: ``boxes`` (N, 4) xyxy pixels, ``labels``
            (N,), optionally ``difficult`` (N,) bool (ignored: neither hit nor miss).
        iou_threshold: a number in (0, 1], or ``"coco"`` for the mean over 0.50:0.05:0.95.
        method: ``"area"``, ``"11point"`` or ``"coco101"`` (see the module docstring).
        matching: ``"voc"`` or ``"coco"``; default ``"coco"`` for ``coco101``, else ``"voc"``.
        num_classes: classes are ``0..num_classes-1`` (default: 1 + the largest label seen).
        max_detections: keep only the best this many detections per image and class
            (pycocotools' ``maxDets``, 100); default: all.

    Returns:
        A dict with ``map`` (float: mean AP over the classes that have non-difficult ground
        truth), ``per_class`` ({class: AP}, those classes only, AP averaged over the
        thresholds), ``ap`` ((T, C) array, NaN for classes without ground truth),
        ``num_gt`` and ``num_detections`` ({class: int}, every class), ``curves``
        ({class: {"recall", "precision", "scores"}}: raw curves at the first threshold),
        ``iou_thresholds``, ``method``, ``matching``.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r}: choose one of {METHODS}")
    if max_detections is not None and max_detections < 1:
        raise ValueError(f"max_detections={max_detections}: at least 1, or None for all")
    matching = matching or ("coco" if method == "coco101" else "voc")
    if matching not in ("voc", "coco"):
        raise ValueError(f"matching={matching!r}: choose 'voc' or 'coco'")
    if len(targets) == 0:
        raise ValueError("no images: pass one prediction dict and one target dict per image")
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets: pass one "
                         "dict of each per image, in the same order")
    thresholds = iou_thresholds(iou_threshold)
    det, det_image = _stack(predictions, ("boxes", "scores", "labels"), "predictions")
    gt, gt_image = _stack(targets, ("boxes", "labels", "difficult"), "targets")
    det_labels, gt_labels = det["labels"].long(), gt["labels"].long()
    seen = torch.cat([det_labels, gt_labels])
    if num_classes is None:
        num_classes = int(seen.max()) + 1 if len(seen) else 0
    if len(seen) and (int(seen.min()) < 0 or int(seen.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got {int(seen.min())}.."
                         f"{int(seen.max())}")
    difficult = gt["difficult"].bool()

    # Every detection in score order (stable: ties keep image order, then input order, as
    # pycocotools does), and its rank within its (image, class) group.
    order = torch.argsort(-det["scores"].double(), stable=True)
    det_boxes, det_scores = det["boxes"][order], det["scores"].double()[order]
    det_labels, det_group = det_labels[order], (det_image * num_classes + det_labels)[order]
    by_group = torch.argsort(det_group, stable=True)
    sorted_group = det_group[by_group]
    det_rank = torch.empty_like(det_group)
    det_rank[by_group] = (torch.arange(len(det_group))
                          - torch.searchsorted(sorted_group, sorted_group, side="left"))
    if max_detections is not None:
        keep = det_rank < max_detections
        det_boxes, det_scores, det_labels = det_boxes[keep], det_scores[keep], det_labels[keep]
        det_group, det_rank = det_group[keep], det_rank[keep]
    gt_group = gt_image * num_classes + gt_labels
    t = torch.from_numpy(thresholds)
    if matching == "voc":
        hit, miss = _match_voc(det_group, det_boxes, gt_group, gt["boxes"], difficult, t)
    else:
        hit, miss = _match_coco(det_group, det_rank, det_boxes, gt_group, gt["boxes"],
                                difficult, t)

    hit, miss, labels_np = hit.numpy(), miss.numpy(), det_labels.numpy()
    scores_np = det_scores.numpy()
    num_gt_all = np.bincount(gt_labels[~difficult].numpy(), minlength=num_classes)
    num_det_all = np.bincount(labels_np, minlength=num_classes)
    by_class = np.argsort(labels_np, kind="stable")                # keeps score order inside
    bounds = np.searchsorted(labels_np[by_class], np.arange(num_classes + 1))
    ap = np.full((len(thresholds), num_classes), np.nan)
    curves = {}
    for c in range(num_classes):                                   # a loop over classes only
        if num_gt_all[c] == 0:
            continue
        rows = by_class[bounds[c]:bounds[c + 1]]
        recall, precision, ap[:, c] = _class_curves(hit[:, rows], miss[:, rows],
                                                    int(num_gt_all[c]), method)
        curves[c] = {"recall": recall[0], "precision": precision[0], "scores": scores_np[rows]}
    per_class = {c: float(ap[:, c].mean()) for c in range(num_classes) if num_gt_all[c] > 0}
    return {"map": float(np.mean(list(per_class.values()))) if per_class else 0.0,
            "per_class": per_class, "ap": ap,
            "num_gt": {c: int(n) for c, n in enumerate(num_gt_all)},
            "num_detections": {c: int(n) for c, n in enumerate(num_det_all)},
            "curves": curves, "iou_thresholds": thresholds.tolist(), "method": method,
            "matching": matching}


def format_table(result: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """The per-class AP table of a :func:`mean_average_precision` result, and the mean."""
    classes = sorted(result["num_gt"])
    if class_names and len(class_names) < len(classes):
        raise ValueError(f"{len(class_names)} class names for {len(classes)} classes: pass "
                         "one name per class, in label order")
    names = [class_names[c] if class_names else str(c) for c in classes]
    width = max([len(n) for n in names] + [5])
    lines = [f"{'class':<{width}} {'AP':>6} {'gt':>6} {'dets':>7}"]
    for c, name in zip(classes, names):
        ap = result["per_class"].get(c)
        lines.append(f"{name:<{width}} {'-' if ap is None else f'{ap:.3f}':>6} "
                     f"{result['num_gt'][c]:>6} {result['num_detections'][c]:>7}")
    thr = result["iou_thresholds"]
    at = f"{thr[0]:.2f}" if len(thr) == 1 else f"{thr[0]:.2f}:{thr[-1]:.2f}"
    lines.append(f"{'mAP':<{width}} {result['map']:>6.3f}   (IoU {at}, {result['method']}, "
                 f"{len(result['per_class'])} classes with ground truth)")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line


def _iou_argument(text: str) -> float | str:
    """``--iou``: 'coco' or a threshold strictly between 0 and 1."""
    if text == "coco":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: give e.g. 0.5, or coco")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not strictly between 0 and 1")
    return value


def _positive_int(text: str) -> int:
    """``--max-images``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib evaluate --checkpoint PATH --dataset shapes|voc2007-tiny``."""
    parser = argparse.ArgumentParser(prog="python -m fcos_lib evaluate",
                                     description="mAP of a checkpoint on a dataset split.")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by train")
    parser.add_argument("--dataset", required=True, choices=["shapes", "voc2007-tiny"])
    parser.add_argument("--split", default="val")
    parser.add_argument("--iou", default=0.5, type=_iou_argument,
                        help="IoU threshold, or 'coco' (0.50:0.95)")
    parser.add_argument("--method", default="area", choices=METHODS)
    parser.add_argument("--max-images", type=_positive_int, help="only the first N images")
    parser.add_argument("--root", default="data", help="where VOC lives (voc2007-tiny)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best here)")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        print(f"error: no checkpoint at {args.checkpoint}; train one with "
              "`python -m fcos_lib train` or `make demo`", file=sys.stderr)
        return 2
    from fcos_lib.checkpoint import CheckpointError

    try:
        return _evaluate(args)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _evaluate(args: argparse.Namespace) -> int:
    """The evaluate command after its arguments are parsed; bad input raises."""
    from fcos_lib.data import build_dataset
    from fcos_lib.env import pick_device
    from fcos_lib.inference import predict_dataset
    from fcos_lib.train import load_model

    device = pick_device(args.device)
    model, config = load_model(args.checkpoint, device)
    extra = {"root": args.root} if args.dataset == "voc2007-tiny" else {}
    dataset = build_dataset(args.dataset, args.split, image_size=config["train"]["image_size"],
                            **extra)
    if list(dataset.class_names) != list(config["class_names"]):
        raise ValueError(f"the checkpoint knows the classes {list(config['class_names'])}, "
                         f"{args.dataset} has {list(dataset.class_names)}: evaluate on the "
                         "dataset it was trained on")
    predictions, targets = predict_dataset(model, dataset, max_images=args.max_images)
    result = mean_average_precision(predictions, targets, args.iou, args.method,
                                    num_classes=len(dataset.class_names))
    names = list(dataset.class_names)
    print(format_table(result, names))
    if args.out:
        report = {"checkpoint": str(args.checkpoint), "dataset": args.dataset,
                  "split": args.split, "images": len(targets), "method": args.method,
                  "iou_thresholds": result["iou_thresholds"], "map": result["map"],
                  "per_class": {names[c]: {"ap": result["per_class"].get(c),
                                           "num_gt": result["num_gt"][c],
                                           "num_detections": result["num_detections"][c]}
                                for c in result["num_gt"]}}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")
    return 0
