"""Checks for notebooks 06 and 07: the learning-rate schedule, the IoU matrix, class-wise NMS
and the average precision of a precision/recall curve."""
from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from fcos_lib.checks.core import Case, Mistake, run_check
from fcos_lib.config import TrainConfig
from fcos_lib.evaluate import average_precision
from fcos_lib.optim import lr_factor

__all__ = ["check_lr_factor", "check_box_iou", "check_nms", "check_average_precision"]


def check_lr_factor(fn) -> bool:
    """Notebook 06. ``fn(step, cfg)``: the learning rate of 0-based ``step`` as a fraction of
    ``cfg.lr``: a linear warm-up from ``cfg.warmup_factor`` to 1 over ``cfg.warmup_steps``,
    times ``cfg.gamma`` for every milestone reached (``cfg.milestones`` are fractions of
    ``cfg.steps``; the rate drops at step ``int(m * cfg.steps)``)."""
    runs = [TrainConfig(steps=100, warmup_steps=10, warmup_factor=0.0, milestones=(0.6, 0.9)),
            TrainConfig(steps=9000, warmup_steps=0, milestones=(0.6, 0.9), gamma=0.1),
            TrainConfig(steps=50, warmup_steps=20, warmup_factor=0.25, milestones=(0.5,),
                        gamma=0.5)]
    probes = {0: "the first step", 5: "halfway through the warm-up", 10: "the step the warm-up "
              "ends", 59: "the step before a milestone", 60: "the milestone step itself",
              90: "after both milestones", 5400: "the course's first milestone (step 5400)",
              8999: "the last step of the course's run", 25: "a milestone at step 25",
              24: "the step before it", 19: "the last warm-up step"}
    cases = []
    for cfg in runs:
        for step, what in probes.items():
            if step < cfg.steps:
                setting = (f"TrainConfig(steps={cfg.steps}, warmup_steps={cfg.warmup_steps}, "
                           f"warmup_factor={cfg.warmup_factor}, milestones={cfg.milestones}, "
                           f"gamma={cfg.gamma})")
                cases.append(Case(f"{what}", (step, cfg), lr_factor(step, cfg),
                                  "warm-up: factor + (1 - factor) * step / warmup_steps; then "
                                  "gamma ** (milestones reached)",
                                  shown={"step": str(step), "cfg": setting}))

    def variant(later=False, once=False, ends_low=False):
        def factor(step, cfg):
            warm = 1.0
            if step < cfg.warmup_steps:
                a = step / (cfg.warmup_steps + (1 if ends_low else 0))
                warm = cfg.warmup_factor * (1 - a) + a
            reached = sum((step > int(m * cfg.steps)) if later else (step >= int(m * cfg.steps))
                          for m in cfg.milestones)
            return warm * cfg.gamma ** (min(reached, 1) if once else reached)
        return factor

    mistakes = [
        Mistake(variant(later=True), "the rate drops AT the milestone step: step >= "
                "int(m * steps), not >"),
        Mistake(variant(once=True), "every milestone multiplies by gamma again: gamma ** "
                "(number of milestones reached)"),
        Mistake(variant(ends_low=True), "the warm-up rises from warmup_factor at step 0 to "
                "exactly 1 at step warmup_steps: alpha = step / warmup_steps")]
    return run_check("check_lr_factor", fn, cases, mistakes, arg_names=("step", "cfg"))


def check_box_iou(fn) -> bool:
    """Notebook 07. ``fn(boxes1, boxes2)``: (N, 4) and (M, 4) xyxy pixels to the (N, M) matrix
    of their IoUs, intersection area over union area."""
    hand = [([[0.0, 0, 10, 10]], [[0.0, 0, 10, 10]], "a box and itself"),
            ([[0.0, 0, 10, 10]], [[5.0, 0, 15, 10]], "two boxes that half overlap"),
            ([[0.0, 0, 10, 10]], [[20.0, 20, 30, 30]], "two boxes far apart (no overlap)"),
            ([[0.0, 0, 10, 10], [2.0, 2, 4, 4]], [[0.0, 0, 4, 4], [5.0, 5, 40, 40],
                                                   [9.0, 0, 10, 1]], "two boxes against three")]
    cases = [Case(name, (torch.tensor(a), torch.tensor(b)),
                  box_iou(torch.tensor(a), torch.tensor(b)),
                  "IoU = intersection / (area1 + area2 - intersection), an (N, M) matrix")
             for a, b, name in hand]
    gen = torch.Generator().manual_seed(10)
    xy = torch.rand(7, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(7, 2, generator=gen) * 30 + 1], 1)
    cases.append(Case("random boxes", (boxes[:3], boxes[3:]), box_iou(boxes[:3], boxes[3:])))

    def iou(a, b, plus_one=False, clamp=True, subtract=True):
        extra = 1.0 if plus_one else 0.0
        wh = torch.minimum(a[:, None, 2:], b[None, :, 2:]) - \
            torch.maximum(a[:, None, :2], b[None, :, :2]) + extra
        if clamp:
            wh = wh.clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        area_a = ((a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra))[:, None]
        area_b = ((b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra))[None, :]
        return inter / (area_a + area_b - (inter if subtract else 0))

    mistakes = [
        Mistake(lambda a, b: iou(a, b, clamp=False), "clamp the overlap's width and height at "
                "0: for boxes apart both are negative, and their product is positive"),
        Mistake(lambda a, b: iou(a, b, subtract=False), "the union is area1 + area2 MINUS the "
                "intersection (counted twice otherwise)"),
        Mistake(lambda a, b: iou(a, b, plus_one=True), "no + 1: boxes are pixel edges (a box "
                "from x = 0 to x = 10 is 10 wide), as torchvision.ops.box_iou has them")]
    return run_check("check_box_iou", fn, cases, mistakes, arg_names=("boxes1", "boxes2"))


def check_nms(fn) -> bool:
    """Notebook 07. ``fn(boxes, scores, labels, iou_threshold)``: (N, 4), (N,), (N,) to the
    indices (K,) int64 of the boxes kept, best score first. Class by class: take the best box
    left, drop every box of its class whose IoU with it is above the threshold, repeat."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 5, 10], [20, 20, 30, 30],
                          [0.0, 1, 10, 11]])
    hand = [("two near-duplicates of one object", boxes[:2], torch.tensor([0.9, 0.8]),
             torch.tensor([0, 0]), 0.5),
            ("the same boxes, two classes: a person on a horse", boxes[:2],
             torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5),
            ("an IoU exactly at the threshold (0.5) stays", boxes[[0, 2]],
             torch.tensor([0.9, 0.8]), torch.tensor([0, 0]), 0.5),
            ("scores out of order", boxes[[3, 1, 0, 4]], torch.tensor([0.3, 0.7, 0.95, 0.6]),
             torch.tensor([0, 0, 0, 0]), 0.5),
            ("nothing to keep", torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
             0.5)]
    cases = [Case(name, (b, s, c, t), batched_nms(b, s, c, t),
                  "sort by score; a box goes when its IoU with a kept box OF ITS CLASS is > "
                  "the threshold") for name, b, s, c, t in hand]
    gen = torch.Generator().manual_seed(11)
    xy = torch.rand(30, 2, generator=gen) * 40
    b = torch.cat([xy, xy + torch.rand(30, 2, generator=gen) * 20 + 5], 1)
    s, c = torch.rand(30, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    cases.append(Case("30 random boxes, 3 classes, threshold 0.4", (b, s, c, 0.4),
                      batched_nms(b, s, c, 0.4)))

    def greedy(boxes, scores, labels, t, by_class=True, keep_equal=True, sort=True):
        order = scores.argsort(descending=True) if sort else torch.arange(len(scores))
        keep: list[int] = []
        for i in order.tolist():
            rivals = [k for k in keep if labels[k] == labels[i] or not by_class]
            if rivals:
                ious = box_iou(boxes[i][None], boxes[rivals])[0]
                if ((ious > t) if keep_equal else (ious >= t)).any():
                    continue
            keep.append(i)
        if not sort:
            keep.sort(key=lambda k: -float(scores[k]))
        return torch.tensor(keep, dtype=torch.long)

    mistakes = [
        Mistake(lambda *a: greedy(*a, by_class=False), "NMS runs class by class: boxes of "
                "different classes never suppress each other"),
        Mistake(lambda *a: greedy(*a, keep_equal=False), "suppress only when the IoU is "
                "ABOVE the threshold: a box at exactly the threshold stays"),
        Mistake(lambda *a: greedy(*a, sort=False), "visit the boxes best score first: a box "
                "may only be removed by a better one"),
        Mistake(lambda b, s, c, t: greedy(b, s, c, t).sort().values, "return the kept indices "
                "best score first, not in index order")]
    return run_check("check_nms", fn, cases, mistakes, arg_names=("boxes", "scores", "labels", "iou_threshold"))


def check_average_precision(fn) -> bool:
    """Notebook 07. ``fn(recall, precision)``: two (K,) NumPy arrays along K score-sorted
    detections (recall non-decreasing) to the AP as a float, VOC's "area" way: make the
    precision non-increasing (the best precision at this recall or beyond), then the exact
    area under that staircase, from recall 0 (precision counts as 0 past the last recall)."""
    def ap(recall, precision):
        return float(average_precision(recall[None], precision[None], "area")[0])

    hand = [("the notebook's example: hit, miss, hit, miss, miss with 3 true boxes",
             np.array([1, 1, 2, 2, 2]) / 3, np.array([1, 0.5, 2 / 3, 0.5, 0.4])),
            ("a perfect detector", np.array([0.5, 1.0]), np.array([1.0, 1.0])),
            ("a first detection that misses", np.array([0.0, 0.5, 1.0]),
             np.array([0.0, 0.5, 2 / 3])),
            ("a zig-zag curve", np.array([0.25, 0.25, 0.5, 0.75, 0.75]),
             np.array([1.0, 0.5, 2 / 3, 0.75, 0.6]))]
    cases = [Case(name, (r, p), ap(r, p), "interpolate (best precision at this recall or "
                  "beyond), then sum (recall step) x (interpolated precision)")
             for name, r, p in hand]
    rng = np.random.default_rng(12)
    hits = rng.random(40) < 0.6
    recall, precision = np.cumsum(hits) / 30, np.cumsum(hits) / np.arange(1, 41)
    cases.append(Case("40 random detections, 30 true boxes", (recall, precision),
                      ap(recall, precision)))

    def raw_area(r, p):
        return float(np.sum(np.diff(np.r_[0.0, r]) * p))

    def no_start(r, p):
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        return float(np.sum(np.diff(r) * envelope[1:]))

    def trapezoid(r, p):
        x, y = np.r_[0.0, r], np.r_[p[0], p]
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))

    mistakes = [
        Mistake(raw_area, "interpolate first: at each recall use the BEST precision at this "
                "recall or any higher one (np.maximum.accumulate on the reversed array)"),
        Mistake(no_start, "start the area at recall 0: the first step runs from 0 to the first "
                "recall"),
        Mistake(trapezoid, "VOC's area is a staircase (rectangles under the interpolated "
                "precision), not a trapezoid rule")]
    return run_check("check_average_precision", fn, cases, mistakes, arg_names=("recall", "precision"))
