"""The check of notebook 07's detection exercise: from one image's raw outputs to its boxes
(score, threshold, top-k per level, decoding, clipping, class-wise NMS, the best N), against
:func:`fcos_lib.inference.detect_plain`, which the tests prove equal to the batch
:func:`fcos_lib.inference.detect`."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from fcos_lib.checks.core import Case, Mistake, Spec, run_check, stand_in
from fcos_lib.inference import detect_plain
from fcos_lib.model import level_locations

__all__ = ["check_detect", "SPECS"]

ARGS = ("cls_logits", "box_deltas", "centerness", "locations", "strides", "image_size",
        "score_thresh", "nms_thresh", "topk", "max_detections")


def _detect(cls_logits: list[Tensor], box_deltas: list[Tensor], centerness: list[Tensor],
            locations: list[Tensor], strides: list[int], image_size: tuple[int, int],
            score_thresh: float = 0.05, nms_thresh: float = 0.6, topk: int = 1000,
            max_detections: int = 100, *, root: bool = True, with_ctr: bool = True,
            scaled: bool = True, clip: str = "wh", by_class: bool = True,
            level_topk: bool = True, above: bool = True, every_class: bool = True,
            cut_after: bool = True, across: bool = True) -> list[Tensor]:
    """A wrong (or, with the defaults, right) detection of one image."""
    boxes, scores, labels, levels = [], [], [], []
    for i, (logits, deltas, ctr, points, stride) in enumerate(
            zip(cls_logits, box_deltas, centerness, locations, strides)):
        score = torch.sigmoid(logits) * (torch.sigmoid(ctr)[:, None] if with_ctr else 1)
        score = score.sqrt() if root else score
        if not every_class:                       # one candidate per location: its best class
            score = torch.where(score == score.amax(1, keepdim=True), score, -1.0)
        where, label = (score > score_thresh if above else score >= score_thresh).nonzero(
            as_tuple=True)
        score = score[where, label]
        best = score.argsort(descending=True)[:topk] if level_topk else slice(None)
        where, label, score = where[best], label[best], score[best]
        d = deltas[where] * (stride if scaled else 1)
        box = torch.cat([points[where] - d[:, :2], points[where] + d[:, 2:]], dim=1)
        if clip != "none":
            h, w = image_size if clip == "wh" else image_size[::-1]
            box = torch.stack([box[:, 0].clamp(0, w), box[:, 1].clamp(0, h),
                               box[:, 2].clamp(0, w), box[:, 3].clamp(0, h)], dim=1)
        boxes.append(box)
        scores.append(score)
        labels.append(label)
        levels.append(torch.full_like(label, i))
    boxes, scores = torch.cat(boxes), torch.cat(scores)
    labels, levels = torch.cat(labels), torch.cat(levels)
    if not level_topk:
        best = scores.argsort(descending=True)[:topk]
        boxes, scores, labels, levels = boxes[best], scores[best], labels[best], levels[best]
    if not cut_after:
        best = scores.argsort(descending=True)[:max_detections]
        boxes, scores, labels, levels = boxes[best], scores[best], labels[best], levels[best]
    groups = labels if by_class else torch.zeros_like(labels)
    groups = groups if across else groups * len(strides) + levels
    keep = batched_nms(boxes, scores, groups, nms_thresh)[:max_detections]
    return [boxes[keep], scores[keep], labels[keep]]


def _level(cls: list, deltas: list, ctr: list, points: list) -> tuple[Tensor, ...]:
    return (torch.tensor(cls).reshape(len(ctr), -1), torch.tensor(deltas).reshape(-1, 4),
            torch.tensor(ctr).reshape(-1), torch.tensor(points).reshape(-1, 2))


def _case(name: str, levels: list[tuple[Tensor, ...]], strides: list[int],
          size: tuple[int, int], score: float, nms: float, topk: int, most: int) -> Case:
    args = ([lv[0] for lv in levels], [lv[1] for lv in levels], [lv[2] for lv in levels],
            [lv[3] for lv in levels], strides, size, score, nms, topk, most)
    return Case(name, args, detect_plain(*args))


def _hand_cases() -> list[Case]:
    """Traps, each a few locations whose answer can be worked by hand."""
    far = [[8.0, 8], [40, 8], [8, 40], [40, 40]]                   # four locations apart
    unit = [0.5] * 4
    return [
        _case("one level, two locations, two classes", [_level(
            [[2.0, 0.0], [1.0, -2.0]], [[1.0, 1, 1, 1], [0.5, 0.5, 2, 1]], [1.0, -1.0],
            [[4.0, 4], [12, 4]])], [8], (16, 16), 0.3, 0.6, 1000, 100),
        _case("a score exactly at the threshold (0.5) goes", [_level(
            [[0.0, 3.0]], [unit], [0.0], [[8.0, 8]])], [16], (32, 32), 0.5, 0.6, 1000, 100),
        _case("two classes above the threshold at one location, NMS threshold 1.0 (every "
              "box stays)", [_level([[1.5, 1.0, -4.0], [1.8, -4.0, -4.0]],
                                    [[1.0, 1, 1, 1], [1.0, 1, 1.2, 1]], [2.0, 1.0],
                                    [[16.0, 16], [20, 16]])], [8], (32, 32), 0.3, 1.0, 1000, 100),
        _case("boxes over the edges of a 16 x 32 image (H x W) are clipped", [_level(
            [[2.0], [1.0]], [[1.0, 1, 1, 1], [1.0, 1, 1, 1]], [1.0, 0.0],
            [[28.0, 12], [4, 4]])], [8], (16, 32), 0.3, 0.6, 1000, 100),
        _case("two levels, strides 8 and 16: the distances are in strides",
              [_level([[2.0]], [unit], [1.0], [[4.0, 4]]),
               _level([[1.0]], [[1.0, 0.5, 0.25, 0.5]], [0.5], [[24.0, 24]])], [8, 16],
              (32, 32), 0.3, 0.6, 1000, 100),
        _case("top-k per level: topk = 2, three strong candidates on P3, a weaker one on P4",
              [_level([[3.0], [2.5], [2.0]], [unit] * 3, [2.0, 2.0, 2.0], far[:3]),
               _level([[0.5]], [unit], [0.5], [[24.0, 24]])], [8, 16], (48, 48), 0.3, 0.6, 2,
              100),
        _case("one object found on P3 and on P4: NMS over all levels removes the weaker box",
              [_level([[3.0]], [[1.0, 1, 1, 1]], [2.0], [[8.0, 8]]),
               _level([[1.0]], [[0.4375, 0.4375, 0.5, 0.5]], [1.0], [[8.0, 8]])], [8, 16],
              (32, 32), 0.3, 0.6, 1000, 100),
        _case("two overlapping boxes of two classes both stay (a person on a horse)", [_level(
            [[3.0, -5.0], [-5.0, 2.0]], [[1.0, 1, 1, 1], [1.0, 1, 1.125, 1]], [1.0, 1.0],
            [[16.0, 16], [17, 16]])], [8], (32, 32), 0.3, 0.6, 1000, 100),
        _case("max_detections = 2, counted after NMS (the second-best box is a duplicate)",
              [_level([[3.0], [2.5], [2.0]], [[1.0, 1, 1, 1], [0.875, 1, 1, 1], unit],
                      [1.0, 1.0, 1.0], [[8.0, 8], [9, 8], [40, 40]])], [8], (48, 48), 0.3,
              0.6, 1000, 2),
        _case("max_detections = 1: the best box alone", [_level(
            [[1.0, 2.0], [3.0, 0.0], [0.4, 0.2], [2.5, -1.0]], [unit] * 4, [0.0, 1.0, 2.0, 0.5],
            far)], [8], (48, 48), 0.2, 0.6, 1000, 1),
        _case("score_thresh = 0: every candidate counts, top-k (3) decides", [_level(
            [[-1.0, 0.5], [0.2, -2.0], [1.5, -0.5], [-3.0, 0.1]], [unit] * 4,
            [0.3, -0.2, 0.8, 1.1], far)], [8], (48, 48), 0.0, 0.6, 3, 100),
        _case("centerness reorders two boxes: a likelier class far from the centre loses",
              [_level([[2.2], [1.4]], [[1.0, 1, 1, 1], [1.0, 1, 1, 1]], [-1.5, 2.0],
                      [[8.0, 8], [40, 40]])], [8], (48, 48), 0.3, 0.6, 1000, 100),
        _case("every score below the threshold: no detections", [_level(
            [[-3.0, -2.0], [-4.0, -1.0]], [unit, unit], [0.0, -1.0], [[4.0, 4], [12, 4]])],
            [8], (16, 16), 0.5, 0.6, 1000, 100),
        _case("a level with no locations at all (L = 0)",
              [_level([[2.0, -1.0]], [unit], [1.0], [[4.0, 4]]),
               (torch.zeros(0, 2), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 2))],
              [8, 16], (16, 16), 0.3, 0.6, 1000, 100)]


def _random_case(name: str, height: int, width: int, classes: int, seed: int,
                 options: tuple[float, float, int, int]) -> Case:
    gen = torch.Generator().manual_seed(seed)
    strides = [8, 16, 32]
    points = [level_locations(-(-height // s), -(-width // s), s, 0.5) for s in strides]
    levels = [(torch.randn(len(p), classes, generator=gen) * 2,
               torch.relu(torch.randn(len(p), 4, generator=gen) + 0.5) * 2,
               torch.randn(len(p), generator=gen), p) for p in points]
    return _case(name, levels, strides, (height, width), *options)


def detect_spec() -> Spec:
    """The cases and known mistakes of :func:`check_detect`."""
    cases = _hand_cases() + [
        _random_case("random outputs of a 64 x 96 image: 3 levels, 3 classes", 64, 96, 3, 13,
                     (0.3, 0.5, 20, 15)),
        _random_case("random outputs of a 32 x 32 image, the defaults (0.05, 0.6, 1000, 100)",
                     32, 32, 4, 14, (0.05, 0.6, 1000, 100))]

    def wrong(**how: object) -> Callable:
        return lambda *a, **k: _detect(*a, **k, **how)

    mistakes = [
        Mistake(wrong(root=False), "the score is the geometric mean sqrt(sigmoid(class logit) "
                "* sigmoid(centerness logit)): the product alone is smaller, and more "
                "candidates fall below the threshold"),
        Mistake(wrong(with_ctr=False), "put the centerness in the score: sqrt(sigmoid(class) "
                "* sigmoid(centerness)) ranks boxes far from an object's centre lower"),
        Mistake(wrong(scaled=False), "the distances are in strides: multiply them by the "
                "level's stride before subtracting from (adding to) the point"),
        Mistake(wrong(clip="none"), "clip the boxes to the image: x into [0, W], y into "
                "[0, H]"),
        Mistake(wrong(clip="hw"), "image_size is (H, W): x is clipped to the width W, y to "
                "the height H"),
        Mistake(wrong(by_class=False), "NMS runs class by class: pass the labels to your "
                "nms, so that boxes of different classes never remove each other"),
        Mistake(wrong(level_topk=False), "top-k is per level: the best topk candidates of "
                "EACH level, then NMS over all levels together"),
        Mistake(wrong(above=False), "keep the scores strictly ABOVE the threshold: a score "
                "equal to it goes"),
        Mistake(wrong(every_class=False), "every (location, class) pair is a candidate: one "
                "location may propose boxes of several classes, not only its best one"),
        Mistake(wrong(cut_after=False), "keep the best max_detections AFTER NMS: cutting "
                "first keeps duplicates that NMS then removes, and too few boxes remain"),
        Mistake(wrong(across=False), "NMS runs over the boxes of all levels at once: one "
                "object seen on P3 and P4 is a duplicate")]
    return Spec("check_detect", ARGS,
                "a list [boxes (K, 4) float32, scores (K,) float32, labels (K,) int64] of the "
                "K boxes kept, best score first",
                "score = sqrt(sigmoid(class) * sigmoid(centerness)) > score_thresh; top-k per "
                "level; box = point -/+ distances * stride, clipped to (H, W); your class-wise "
                "nms over all levels; the best max_detections", cases, mistakes, detect_plain,
                counts=True)


def check_detect(fn: Callable) -> bool:
    """Notebook 07. ``fn(cls_logits, box_deltas, centerness, locations, strides, image_size,
    score_thresh, nms_thresh, topk, max_detections)``, one image: per level (L_l, C) class
    logits, (L_l, 4) LTRB distances in strides, (L_l,) centerness logits, (L_l, 2) xy pixels
    and an int stride; (H, W) pixels. It returns ``[boxes (K, 4) float32 xyxy pixels, scores
    (K,) float32, labels (K,) int64]``, best score first: every (location, class) scoring
    ``sqrt(sigmoid(class) * sigmoid(centerness))`` above the threshold, the best ``topk`` of
    each level, decoded and clipped to the image, class-wise NMS over all levels, then the
    best ``max_detections``. The inputs are left as they were."""
    return run_check(detect_spec(), fn)


stand_in("nms", batched_nms)       # a student's stubbed nms does not hide this check
SPECS = {"check_detect": detect_spec}
