"""From raw head outputs to boxes: scores, a threshold, top-k, decoding, NMS.

FCOS predicts at every location of every level, for every class, so a 224-pixel image has
about a thousand candidates per class before anything is thrown away. :func:`detect` keeps
the few that matter, for the whole batch at once:

1. score each (location, class): the class probability, or, as the paper ranks them, the
   geometric mean with the centerness probability, ``sqrt(sigmoid(cls) * sigmoid(ctr))``,
   which pushes down boxes predicted far from an object's centre (the ablations of
   notebook 08 may rank by the class alone, by the product without the root, or with a
   centerness computed from the predicted box, :func:`box_centerness`, in place of the
   learned one: the paper's Table 4);
2. per level, drop scores <= ``score_thresh`` and keep the best ``topk_candidates``;
3. decode the kept LTRB deltas into xyxy boxes and clip them to the image;
4. class-wise non-maximum suppression over all levels, and the best
   ``detections_per_img`` boxes per image.

Configured as torchvision's FCOS (score 0.2, NMS 0.6, top-k 1000, 100 boxes, centerness in
the score, locations at ``i * stride``), the detections equal torchvision's, box for box
(``tests/test_inference.py``).

:func:`detect_plain` is the same for one image, written plainly (a loop over the levels, the
candidates found with ``nonzero``): the contract of notebook 07's exercise, proved equal to
:func:`detect` in the tests; :func:`fcos_lib.pieces.per_image` makes the detector call it (or
a student's version) image by image. :func:`predict_dataset` runs a model over a dataset;
:mod:`fcos_lib.photo` runs it on a whole photo of your own.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.ops import batched_nms, clip_boxes_to_image

from fcos_lib.data import collate
from fcos_lib.targets import decode_boxes
from fcos_lib.validate import one_of, whole

__all__ = ["detect_plain", "detect", "box_centerness", "predict_dataset", "CENTERNESS_FROM"]

# Where the centerness in the score comes from: the head's learned branch, or the predicted
# box itself (the paper's Table 4, "center-ness computed from the predicted regression vector").
CENTERNESS_FROM = ("head", "regression")


def detect_plain(cls_logits: list[Tensor], box_deltas: list[Tensor], centerness: list[Tensor],
                 locations: list[Tensor], strides: list[int], image_size: tuple[int, int],
                 score_thresh: float = 0.05, nms_thresh: float = 0.6, topk: int = 1000,
                 max_detections: int = 100) -> list[Tensor]:
    """The detections of one image from its raw outputs, step by step: the contract of
    notebook 07's exercise, and :func:`detect`'s result for that image.

    Args:
        cls_logits: per level, (L_l, C) class logits.
        box_deltas: per level, (L_l, 4) LTRB distances divided by the level's stride.
        centerness: per level, (L_l,) centerness logits.
        locations: per level, (L_l, 2) xy of each location, input pixels.
        strides: per level, the stride in pixels (an int).
        image_size: (H, W) of the input image, pixels.
        score_thresh: a (location, class) candidate needs a score above this.
        nms_thresh: within a class, a box overlapping a better one with IoU above this goes.
        topk: the most candidates kept per level, best score first.
        max_detections: the most boxes returned.

    Returns:
        ``[boxes (K, 4) float xyxy pixels, scores (K,), labels (K,) int64]``, best score
        first, K <= ``max_detections``.

    >>> one = detect_plain([torch.tensor([[2.0, 0.0]])], [torch.tensor([[1.0, 1, 1, 1]])],
    ...                    [torch.tensor([1.0])], [torch.tensor([[4.0, 4]])], [8], (16, 16),
    ...                    score_thresh=0.3)
    >>> one[0].tolist(), [round(s, 3) for s in one[1].tolist()], one[2].tolist()
    ([[0.0, 0.0, 12.0, 12.0], [0.0, 0.0, 12.0, 12.0]], [0.802, 0.605], [0, 1])
    """
    height, width = image_size
    boxes, scores, labels = [], [], []
    for logits, deltas, ctr, points, stride in zip(cls_logits, box_deltas, centerness,
                                                   locations, strides, strict=True):
        # Every (location, class) pair is a candidate, scored as the paper ranks them.
        score = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(ctr)[:, None])   # (L, C)
        where, label = (score > score_thresh).nonzero(as_tuple=True)             # (P,) each
        score = score[where, label]
        best = score.argsort(descending=True)[:topk]              # this level's top k
        where, label, score = where[best], label[best], score[best]
        xy, pixels = points[where], deltas[where] * stride       # (P, 2); (P, 4) in pixels
        x1, y1 = (xy - pixels[:, :2]).unbind(dim=1)
        x2, y2 = (xy + pixels[:, 2:]).unbind(dim=1)
        boxes.append(torch.stack([x1.clamp(0, width), y1.clamp(0, height),
                                  x2.clamp(0, width), y2.clamp(0, height)], dim=1))
        scores.append(score)
        labels.append(label)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_detections]   # class-wise
    return [boxes[keep], scores[keep], labels[keep]]


def box_centerness(box_deltas: Tensor) -> Tensor:
    """The centerness of each location computed from its own predicted box, not learned:
    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of the predicted distances.

    Args:
        box_deltas: (..., 4) predicted LTRB distances (any unit; negatives count as 0).

    Returns:
        (...,) in [0, 1]: 1 when the location sits at its box's centre, 0 for a box with
        no width or height.

    >>> box_centerness(torch.tensor([[2.0, 2, 2, 2], [1.0, 4, 2, 2], [0.0, 0, 3, 3]])).tolist()
    [1.0, 0.5, 0.0]
    """
    ltrb = box_deltas.clamp(min=0)
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    # A tiny floor under max(): a box of zero width has ratio 0, not 0/0.
    tiny = torch.finfo(ltrb.dtype).tiny
    ratio = lr.amin(dim=-1) / lr.amax(dim=-1).clamp(min=tiny) * (
        tb.amin(dim=-1) / tb.amax(dim=-1).clamp(min=tiny))
    return torch.sqrt(ratio)


def _level_candidates(cls_logits: Tensor, box_deltas: Tensor, centerness: Tensor,
                      locations: Tensor, stride: int, image_size: tuple[int, int],
                      score_thresh: float, topk: int, centerness_in_score: bool,
                      centerness_from: str = "head", sqrt_score: bool = True
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The best candidates of one level, for every image of the batch.

    Args:
        cls_logits: (B, L, C); box_deltas: (B, L, 4) LTRB in strides; centerness: (B, L)
            logits; locations: (L, 2) xy pixels. The scoring options: see :func:`detect`.

    Returns:
        ``boxes`` (B, k, 4) xyxy pixels clipped to the image, ``scores`` (B, k) (best first),
        ``labels`` (B, k) int64 and ``valid`` (B, k) bool (score above the threshold);
        k = min(topk, L * C).
    """
    probs = torch.sigmoid(cls_logits)
    if centerness_in_score:
        ctr = (torch.sigmoid(centerness) if centerness_from == "head"
               else box_centerness(box_deltas))                       # (B, L)
        probs = probs * ctr[..., None]
        if sqrt_score:
            probs = torch.sqrt(probs)
    flat = probs.flatten(1)                                            # (B, L*C)
    # The best k of all scores, cut at the threshold, are the best k of those above it: a
    # fixed k for every image keeps the batch rectangular.
    scores, index = flat.topk(min(topk, flat.shape[1]), dim=1)        # sorted, best first
    valid = scores > score_thresh
    num_classes = cls_logits.shape[-1]
    where, labels = index // num_classes, index % num_classes         # location, class
    strides = torch.full((len(locations),), float(stride), device=locations.device)
    boxes = decode_boxes(box_deltas, locations, strides)              # (B, L, 4)
    boxes = boxes.gather(1, where[..., None].expand(-1, -1, 4))       # (B, k, 4)
    return clip_boxes_to_image(boxes, image_size), scores, labels, valid


def _check_detect_options(image_size: int | tuple[int, int], score_thresh: float,
                          topk_candidates: int, detections_per_img: int) -> tuple[int, int]:
    """``image_size`` as (H, W); a ValueError naming the fix for an option out of range."""
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2:
        raise ValueError(f"image_size={image_size}: give (H, W) in pixels, e.g. "
                         "tuple(images.shape[-2:]), or one int for square images")
    if score_thresh is None:
        raise ValueError("score_thresh=None: give a number, e.g. 0.05 (0.0 keeps every "
                         "candidate that top-k keeps)")
    whole("topk_candidates", topk_candidates, minimum=1, hint="default 1000")
    whole("detections_per_img", detections_per_img, minimum=1, hint="default 100")
    return int(image_size[0]), int(image_size[1])


def detect(outputs: dict[str, list], image_size: int | tuple[int, int],
           score_thresh: float = 0.05, nms_thresh: float = 0.6, topk_candidates: int = 1000,
           detections_per_img: int = 100, centerness_in_score: bool = True,
           nms: Callable[[Tensor, Tensor, Tensor, float], Tensor] = batched_nms, *,
           centerness_from: str = "head", sqrt_score: bool = True
           ) -> list[dict[str, Tensor]]:
    """Detections of a batch from the raw outputs of ``FCOS.forward``.

    Args:
        outputs: per-level lists (see docs/design.md): ``cls_logits`` (B, L_l, C),
            ``box_deltas`` (B, L_l, 4) LTRB divided by the stride, ``centerness`` (B, L_l)
            logits, ``locations`` (L_l, 2) xy pixels, ``strides`` ints.
        image_size: (H, W) of the input images, pixels (one int: square images); boxes are
            clipped to it.
        score_thresh: candidates scoring at most this are dropped.
        nms_thresh: within a class, a box overlapping a better one with IoU above this goes.
        topk_candidates: candidates kept per level and image before NMS.
        detections_per_img: the most boxes returned per image.
        centerness_in_score: score = sqrt(class prob * centerness prob) (the paper's
            ranking) instead of the class probability alone.
        centerness_from: with ``centerness_in_score``, the centerness probability of the
            head's learned branch (``"head"``), or the centerness of the predicted box itself
            (``"regression"``, :func:`box_centerness`; the paper's Table 4 shows it does not help).
        sqrt_score: with ``centerness_in_score``, the square root of the product (the
            improved FCOS, torchvision); False: the product itself (the first paper). The
            root keeps every ranking, so it changes only which scores pass ``score_thresh``.
        nms: class-wise NMS, ``nms(boxes (N, 4), scores (N,), groups (N,), iou) -> kept
            indices, best first``, as ``torchvision.ops.batched_nms`` (boxes of different
            groups never suppress each other).

    Returns:
        B dicts, boxes sorted by score: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,),
        ``labels`` (K,) int64, ``levels`` (K,) int64: the index of the pyramid level that
        predicted each box (0 for the first level, P3).

    Raises:
        ValueError: outputs with missing keys or per-level lists of different lengths, an
            ``image_size`` that is not (H, W), an option out of range.
    """
    image_size = _check_detect_options(image_size, score_thresh, topk_candidates,
                                       detections_per_img)
    one_of("centerness_from", centerness_from, CENTERNESS_FROM)
    keys = ("cls_logits", "box_deltas", "centerness", "locations", "strides")
    missing = [k for k in keys if k not in outputs]
    if missing:
        raise ValueError(f"outputs lack {missing}: pass the dict that FCOS.forward returns "
                         "for images alone (without targets)")
    lengths = {k: len(outputs[k]) for k in keys}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"outputs have per-level lists of different lengths {lengths}: every "
                         "key needs one entry per pyramid level, as FCOS.forward returns them")
    per_level = [_level_candidates(c, d, z, loc, s, image_size, score_thresh, topk_candidates,
                                   centerness_in_score, centerness_from, sqrt_score)
                 for c, d, z, loc, s in zip(*(outputs[k] for k in keys), strict=True)]
    boxes, scores, labels, valid = (torch.cat(parts, dim=1) for parts in zip(*per_level))
    levels = torch.cat([torch.full_like(part[2], i) for i, part in enumerate(per_level)], dim=1)
    batch, num_classes = scores.shape[0], outputs["cls_logits"][0].shape[-1]
    image = torch.arange(batch, device=scores.device)[:, None].expand_as(scores)
    boxes, scores, labels, image = boxes[valid], scores[valid], labels[valid], image[valid]
    levels = levels[valid]
    # One NMS call for the whole batch: a group is an (image, class) pair. The result is
    # sorted by score; a stable sort by image keeps that order within each image.
    keep = nms(boxes, scores, image * num_classes + labels, nms_thresh)
    keep = keep[torch.argsort(image[keep], stable=True)]
    counts = torch.bincount(image[keep], minlength=batch)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(keep), device=keep.device) - first[image[keep]]
    keep = keep[rank < detections_per_img]
    sizes = counts.clamp(max=detections_per_img).tolist()
    return [{"boxes": b, "scores": s, "labels": c, "levels": v} for b, s, c, v in
            zip(*(t[keep].split(sizes) for t in (boxes, scores, labels, levels)))]


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 16,
                    max_images: int | None = None, **detect_kwargs: Any
                    ) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
    """Run ``model.predict`` over (the first ``max_images`` of) a dataset.

    Args:
        model: an FCOS; its device is used.
        dataset: samples ``(image, target)`` of one image size.
        detect_kwargs: passed to ``model.predict`` (``score_thresh``, ...).

    Returns:
        ``(predictions, targets)``: one dict per image each, on the CPU.
    """
    whole("batch_size", batch_size, minimum=1, hint="default 16")
    device = next(model.parameters()).device
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    predictions, targets = [], []
    for start in range(0, n, batch_size):
        images, batch = collate([dataset[i] for i in range(start, min(n, start + batch_size))])
        predictions += [{k: v.cpu() for k, v in p.items()}
                        for p in model.predict(images.to(device), **detect_kwargs)]
        targets += batch
    return predictions, targets
