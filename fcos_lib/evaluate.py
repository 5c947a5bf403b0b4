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

Why this module is longer than 300 lines: the input checks the mAP needs and the three
benchmarks' ways of reading a curve sit next to the steps that use them. How detections are
matched lives in :mod:`fcos_lib.matching`; this module ranks them, reads
the curves and packs the result (:func:`mean_average_precision`), and evaluates a model on a
dataset (:func:`evaluate_model`).

The test suite checks the numbers against pycocotools (``coco101``) and against a
line-by-line reference of the VOC devkit (``11point``, ``area``). One deliberate difference
from the devkit: boxes are float pixel corners, so IoU has no "+1" on widths and heights
(as in pycocotools).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from fcos_lib.inference import predict_dataset
from fcos_lib.matching import match_coco, match_voc
from fcos_lib.validate import number, one_of, whole

__all__ = ["split_in_words", "mean_average_precision", "iou_thresholds", "average_precision",
           "interpolated_precision", "format_table", "evaluate_model", "METHODS"]

METHODS = ("11point", "area", "coco101")


def iou_thresholds(iou_threshold: float | str) -> np.ndarray:
    """The IoU thresholds: ``[t]`` for a number, 0.50:0.05:0.95 (as pycocotools) for "coco"."""
    if isinstance(iou_threshold, str):
        one_of("iou_threshold", iou_threshold, ("coco",), hint="or a number in (0, 1]")
        return np.linspace(0.5, 0.95, 10)  # pycocotools' own linspace: same float values
    number("iou_threshold", iou_threshold, 0.0, 1.0, low_open=True)
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

    Five steps: check and stack the inputs; rank the detections by score; match them
    (:mod:`fcos_lib.matching`); read each class's precision/recall curve and its AP; pack.

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
    one_of("method", method, METHODS)
    if max_detections is not None:
        whole("max_detections", max_detections, minimum=1, hint="or None for all")
    matching = one_of("matching", matching or ("coco" if method == "coco101" else "voc"),
                      ("voc", "coco"))
    thresholds = iou_thresholds(iou_threshold)
    det, gt, num_classes = _check_and_stack(predictions, targets, num_classes)
    det = _rank_detections(det, num_classes, max_detections)
    t = torch.from_numpy(thresholds)
    gt_group = gt["image"] * num_classes + gt["labels"]
    if matching == "voc":
        hit, miss = match_voc(det["group"], det["boxes"], gt_group, gt["boxes"],
                              gt["difficult"], t)
    else:
        hit, miss = match_coco(det["group"], det["rank"], det["boxes"], gt_group, gt["boxes"],
                               gt["difficult"], t)
    num_gt = np.bincount(gt["labels"][~gt["difficult"]].numpy(), minlength=num_classes)
    ap, curves = _per_class_curves(hit.numpy(), miss.numpy(), det["labels"].numpy(),
                                   det["scores"].numpy(), num_gt, method)
    per_class = {c: float(ap[:, c].mean()) for c in range(num_classes) if num_gt[c] > 0}
    num_det = np.bincount(det["labels"].numpy(), minlength=num_classes)
    return {"map": float(np.mean(list(per_class.values()))) if per_class else 0.0,
            "per_class": per_class, "ap": ap,
            "num_gt": {c: int(n) for c, n in enumerate(num_gt)},
            "num_detections": {c: int(n) for c, n in enumerate(num_det)},
            "curves": curves, "iou_thresholds": thresholds.tolist(), "method": method,
            "matching": matching}


def _check_and_stack(predictions: Sequence[dict[str, Tensor]],
                     targets: Sequence[dict[str, Tensor]], num_classes: int | None
                     ) -> tuple[dict[str, Tensor], dict[str, Tensor], int]:
    """Detections and ground truth of all images, each as one table (with the ``image``
    of each row, labels int64, ``difficult`` bool), and the number of classes."""
    if len(targets) == 0:
        raise ValueError("no images: pass one prediction dict and one target dict per image")
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions but {len(targets)} targets: pass one "
                         "dict of each per image, in the same order")
    det, det_image = _stack(predictions, ("boxes", "scores", "labels"), "predictions")
    gt, gt_image = _stack(targets, ("boxes", "labels", "difficult"), "targets")
    det["labels"], gt["labels"] = det["labels"].long(), gt["labels"].long()
    seen = torch.cat([det["labels"], gt["labels"]])
    if num_classes is None:
        num_classes = int(seen.max()) + 1 if len(seen) else 0
    if len(seen) and (int(seen.min()) < 0 or int(seen.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}); got {int(seen.min())}.."
                         f"{int(seen.max())}")
    gt["difficult"] = gt["difficult"].bool()
    return {**det, "image": det_image}, {**gt, "image": gt_image}, num_classes


def _rank_detections(det: dict[str, Tensor], num_classes: int, max_detections: int | None
                     ) -> dict[str, Tensor]:
    """The detections in score order, with their ``group`` (image * C + class), their
    ``rank`` within it, and only the best ``max_detections`` of each group (if set).

    The sort is stable: ties keep image order, then input order, as pycocotools does.
    """
    order = torch.argsort(-det["scores"].double(), stable=True)
    ranked = {"boxes": det["boxes"][order], "scores": det["scores"].double()[order],
              "labels": det["labels"][order],
              "group": (det["image"] * num_classes + det["labels"])[order]}
    by_group = torch.argsort(ranked["group"], stable=True)
    sorted_group = ranked["group"][by_group]
    rank = torch.empty_like(ranked["group"])
    rank[by_group] = (torch.arange(len(sorted_group))
                      - torch.searchsorted(sorted_group, sorted_group, side="left"))
    ranked["rank"] = rank
    if max_detections is not None:
        keep = rank < max_detections
        ranked = {k: v[keep] for k, v in ranked.items()}
    return ranked


def _per_class_curves(hit: np.ndarray, miss: np.ndarray, labels: np.ndarray,
                      scores: np.ndarray, num_gt: np.ndarray, method: str
                      ) -> tuple[np.ndarray, dict[int, dict[str, np.ndarray]]]:
    """AP (T, C) of every class with ground truth (NaN for the others), and its curves at
    the first threshold; ``hit``/``miss`` (T, N) of the detections in score order."""
    num_classes = len(num_gt)
    by_class = np.argsort(labels, kind="stable")                   # keeps score order inside
    bounds = np.searchsorted(labels[by_class], np.arange(num_classes + 1))
    ap = np.full((hit.shape[0], num_classes), np.nan)
    curves = {}
    for c in np.flatnonzero(num_gt).tolist():                      # a loop over classes only
        rows = by_class[bounds[c]:bounds[c + 1]]
        recall, precision, ap[:, c] = _class_curves(hit[:, rows], miss[:, rows],
                                                    int(num_gt[c]), method)
        curves[c] = {"recall": recall[0], "precision": precision[0], "scores": scores[rows]}
    return ap, curves


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


def split_in_words(dataset: Dataset) -> str:
    """A dataset split as a message names it: its class, its split, and the file that lists
    its images where it has one (``sources()[0]``, as :class:`fcos_lib.data.VOCDataset`).

    >>> from fcos_lib.data import ShapesDataset
    >>> split_in_words(ShapesDataset("val", length=0))
    "the 'val' split of ShapesDataset (0 images)"
    """
    while hasattr(dataset, "dataset") and len(dataset.dataset) == len(dataset):
        dataset = dataset.dataset            # a cache around the dataset: the dataset's words
    split = getattr(dataset, "split", None)
    text = f"the {split!r} split of " if split else ""
    sources = getattr(dataset, "sources", None)
    files = sources() if callable(sources) else []
    where = f"{files[0]}, the file that lists its images" if files else f"{len(dataset)} images"
    return f"{text}{type(dataset).__name__} ({where})"


def evaluate_model(model: nn.Module, dataset: Dataset, *, max_images: int | None = None,
                   batch_size: int = 16, iou_threshold: float | str = 0.5,
                   method: str = "area", **detect_kwargs: Any) -> dict[str, Any]:
    """The :func:`mean_average_precision` of ``model`` (on its own device) on the first
    ``max_images`` of ``dataset`` (all by default), with the detector's default thresholds
    unless ``detect_kwargs`` (``score_thresh``, ``nms_thresh``, ... of ``model.predict``)
    say otherwise: the course grades with ``score_thresh=0.4, nms_thresh=0.6``.

    Returns:
        The result dict of :func:`mean_average_precision`, over the dataset's classes, and
        ``images``, the number of images evaluated.
    """
    if not len(dataset):    # (mean_average_precision would ask for prediction dicts)
        raise ValueError(f"{split_in_words(dataset)} has no images to evaluate: add images "
                         "to it, or evaluate another split")
    predictions, targets = predict_dataset(model, dataset, batch_size=batch_size,
                                           max_images=max_images, **detect_kwargs)
    return {**mean_average_precision(predictions, targets, iou_threshold, method,
                                     num_classes=len(dataset.class_names)),
            "images": len(targets)}
