"""Checks for notebooks 06 and 07: the learning-rate schedule, the IoU matrix, class-wise NMS
and the average precision of a precision/recall curve."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.ops import batched_nms, box_iou

from fcos_lib.checks.core import Case, Mistake, Spec, run_check, stand_in
from fcos_lib.config import TrainConfig
from fcos_lib.evaluate import average_precision
from fcos_lib.optim import lr_factor

__all__ = ["check_lr_factor", "check_box_iou", "check_nms", "check_average_precision", "SPECS"]


def lr_spec() -> Spec:
    """The cases and known mistakes of :func:`check_lr_factor`."""
    runs = [
        (TrainConfig(steps=100, warmup_steps=10, warmup_factor=0.0, milestones=(0.6, 0.9)), {
            0: "the first step", 5: "halfway through the warm-up", 9: "the last warm-up step",
            10: "the step the warm-up ends", 59: "the step before a milestone",
            60: "the milestone step itself", 90: "after both milestones", 99: "the last step"}),
        (TrainConfig(steps=9000, warmup_steps=0, milestones=(0.6, 0.9), gamma=0.1), {
            0: "no warm-up at all (warmup_steps = 0)", 5399: "the step before step 5400",
            5400: "the course's first milestone (step 5400)",
            8999: "the last step of the course's run"}),
        (TrainConfig(steps=50, warmup_steps=20, warmup_factor=0.25, milestones=(0.5,),
                     gamma=0.5), {
            0: "the first step", 19: "the last warm-up step", 24: "the step before it",
            25: "a milestone at step 25"}),
        (TrainConfig(steps=47, warmup_steps=3, warmup_factor=0.5, milestones=(0.7,),
                     gamma=0.5), {
            31: "the step before a milestone that is not a whole step",
            32: "a milestone that is not a whole step (0.7 * 47 = 32.9: int gives 32)",
            33: "the step after it"}),
        (TrainConfig(steps=100, warmup_steps=50, warmup_factor=0.1, milestones=(0.3, 0.8),
                     gamma=0.1), {
            29: "the step before a milestone that falls inside the warm-up",
            40: "inside the warm-up, after a milestone: both apply",
            50: "the warm-up's end, after that milestone"}),
    ]
    cases = []
    for cfg, probes in runs:
        setting = (f"TrainConfig(steps={cfg.steps}, warmup_steps={cfg.warmup_steps}, "
                   f"warmup_factor={cfg.warmup_factor}, milestones={cfg.milestones}, "
                   f"gamma={cfg.gamma})")
        cases += [Case(what, (step, cfg), lr_factor(step, cfg),
                       shown={"step": str(step), "cfg": setting})
                  for step, what in probes.items()]

    def variant(later: bool = False, once: bool = False, ends_low: bool = False,
                milestone: Callable[[float], float] = int) -> Callable:
        def factor(step: int, cfg: TrainConfig) -> float:
            warm = 1.0
            if step < cfg.warmup_steps:
                a = step / (cfg.warmup_steps + (1 if ends_low else 0))
                warm = cfg.warmup_factor * (1 - a) + a
            at = [milestone(m * cfg.steps) for m in cfg.milestones]
            reached = sum((step > s) if later else (step >= s) for s in at)
            return warm * cfg.gamma ** (min(reached, 1) if once else reached)
        return factor

    mistakes = [
        Mistake(variant(later=True), "the rate drops AT the milestone step: step >= "
                "int(m * steps), not >"),
        Mistake(variant(once=True), "every milestone multiplies by gamma again: gamma ** "
                "(number of milestones reached)"),
        Mistake(variant(ends_low=True), "the warm-up rises from warmup_factor at step 0 to "
                "exactly 1 at step warmup_steps: alpha = step / warmup_steps"),
        Mistake(variant(milestone=round), "the milestone step is int(m * steps), rounded "
                "DOWN: int(0.7 * 47) = 32, where round() gives 33"),
        Mistake(variant(milestone=float), "compare the step with the whole step int(m * "
                "steps): step >= 32.9 is first true at 33, but the rate drops at 32")]
    return Spec("check_lr_factor", ("step", "cfg"), "a Python float",
                "warm-up: factor + (1 - factor) * step / warmup_steps; then gamma ** "
                "(milestones reached), a milestone reached at step int(m * steps)", cases,
                mistakes)


def check_lr_factor(fn: Callable) -> bool:
    """Notebook 06. ``fn(step, cfg)``: the learning rate of 0-based ``step`` as a fraction of
    ``cfg.lr``, a Python float: a linear warm-up from ``cfg.warmup_factor`` to 1 over
    ``cfg.warmup_steps``, times ``cfg.gamma`` for every milestone reached (``cfg.milestones``
    are fractions of ``cfg.steps``; the rate drops at step ``int(m * cfg.steps)``)."""
    return run_check(lr_spec(), fn)


def _iou(a: torch.Tensor, b: torch.Tensor, plus_one: bool = False, clamp: bool = True,
         subtract: bool = True) -> torch.Tensor:
    """A wrong (or, with the defaults, right) IoU matrix."""
    extra = 1.0 if plus_one else 0.0
    wh = torch.minimum(a[:, None, 2:], b[None, :, 2:]) - \
        torch.maximum(a[:, None, :2], b[None, :, :2]) + extra
    if clamp:
        wh = wh.clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    area_a = ((a[:, 2] - a[:, 0] + extra) * (a[:, 3] - a[:, 1] + extra))[:, None]
    area_b = ((b[:, 2] - b[:, 0] + extra) * (b[:, 3] - b[:, 1] + extra))[None, :]
    return inter / (area_a + area_b - (inter if subtract else 0))


def iou_spec() -> Spec:
    """The cases and known mistakes of :func:`check_box_iou`."""
    hand = [([[0.0, 0, 10, 10]], [[0.0, 0, 10, 10]], "a box and itself"),
            ([[0.0, 0, 10, 10]], [[5.0, 0, 15, 10]], "two boxes that half overlap"),
            ([[0.0, 0, 10, 10]], [[10.0, 0, 20, 10]], "two boxes that touch along a side"),
            ([[0.0, 0, 10, 10]], [[20.0, 20, 30, 30]], "two boxes far apart (no overlap)"),
            ([[0.0, 0, 10, 10], [2.0, 2, 4, 4]], [[0.0, 0, 4, 4], [5.0, 5, 40, 40],
                                                   [9.0, 0, 10, 1]], "two boxes against three"),
            (torch.zeros(0, 4), [[0.0, 0, 4, 4], [1.0, 1, 3, 3]], "no boxes against two"),
            ([[0.0, 0, 4, 4]], torch.zeros(0, 4), "one box against none"),
            ([[3.0, 3, 4, 4], [3.0, 3, 3.5, 3.5]], [[3.0, 3, 4, 4]],
             "one-pixel and half-pixel boxes (an IoU of 1 and of 0.25)")]
    cases = [Case(name, (torch.as_tensor(a).reshape(-1, 4), torch.as_tensor(b).reshape(-1, 4)),
                  box_iou(torch.as_tensor(a).reshape(-1, 4), torch.as_tensor(b).reshape(-1, 4)))
             for a, b, name in hand]
    gen = torch.Generator().manual_seed(10)
    xy = torch.rand(7, 2, generator=gen) * 50
    boxes = torch.cat([xy, xy + torch.rand(7, 2, generator=gen) * 30 + 1], 1)
    cases.append(Case("three random boxes against four", (boxes[:3], boxes[3:]),
                      box_iou(boxes[:3], boxes[3:])))
    mistakes = [
        Mistake(lambda a, b: _iou(a, b, clamp=False), "clamp the overlap's width and height at "
                "0: for boxes apart both are negative, and their product is positive"),
        Mistake(lambda a, b: _iou(a, b, subtract=False), "the union is area1 + area2 MINUS the "
                "intersection (counted twice otherwise)"),
        Mistake(lambda a, b: _iou(a, b, plus_one=True), "no + 1: boxes are pixel edges (a box "
                "from x = 0 to x = 10 is 10 wide), as torchvision.ops.box_iou has them")]
    return Spec("check_box_iou", ("boxes1", "boxes2"), "an (N, M) float32 tensor",
                "IoU = intersection / (area1 + area2 - intersection), an (N, M) matrix",
                cases, mistakes, box_iou)


def check_box_iou(fn: Callable) -> bool:
    """Notebook 07. ``fn(boxes1, boxes2)``: (N, 4) and (M, 4) float32 xyxy pixels to the
    (N, M) float32 matrix of their IoUs, intersection area over union area (N or M may be 0).
    """
    return run_check(iou_spec(), fn)


def _greedy(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, t: float,
            by_class: bool = True, keep_equal: bool = True, sort: bool = True,
            by_removed: bool = False) -> torch.Tensor:
    """A wrong (or, with the defaults, right) class-wise NMS."""
    order = scores.argsort(descending=True) if sort else torch.arange(len(scores))
    keep: list[int] = []
    seen: list[int] = []
    for i in order.tolist():
        rivals = [k for k in (seen if by_removed else keep)
                  if labels[k] == labels[i] or not by_class]
        seen.append(i)
        if rivals:
            ious = box_iou(boxes[i][None], boxes[rivals])[0]
            if ((ious > t) if keep_equal else (ious >= t)).any():
                continue
        keep.append(i)
    if not sort:
        keep.sort(key=lambda k: -float(scores[k]))
    return torch.tensor(keep, dtype=torch.long)


def nms_spec() -> Spec:
    """The cases and known mistakes of :func:`check_nms`."""
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 5, 10], [20, 20, 30, 30],
                          [0.0, 1, 10, 11]])
    one, two = torch.tensor([0, 0]), torch.tensor([0, 1])
    chain = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]])
    hand = [("two near-duplicates of one object", boxes[:2], torch.tensor([0.9, 0.8]), one, 0.5),
            ("the same boxes, two classes: a person on a horse", boxes[:2],
             torch.tensor([0.9, 0.8]), two, 0.5),
            ("an IoU exactly at the threshold (0.5) stays", boxes[[0, 2]],
             torch.tensor([0.9, 0.8]), one, 0.5),
            ("a chain: A removes B, B would have removed C, so C stays", chain,
             torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.long), 0.4),
            ("threshold 1.0: even identical boxes both stay", boxes[[0, 0]],
             torch.tensor([0.9, 0.8]), one, 1.0),
            ("scores out of order", boxes[[3, 1, 0, 4]], torch.tensor([0.3, 0.7, 0.95, 0.6]),
             torch.zeros(4, dtype=torch.long), 0.5),
            ("low scores (0.01 and 0.02) are kept too: NMS has no score threshold",
             boxes[[0, 3]], torch.tensor([0.01, 0.02]), one, 0.5),
            ("a large image: a box at (1000, 1000) px, two classes",
             torch.tensor([[1000.0, 1000, 1100, 1100], [0, 0, 100, 100],
                           [1010, 1010, 1110, 1110]]),
             torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 1]), 0.5),
            ("nothing to keep", torch.zeros(0, 4), torch.zeros(0),
             torch.zeros(0, dtype=torch.long), 0.5)]
    cases = [Case(name, (b, s, c, t), batched_nms(b, s, c, t)) for name, b, s, c, t in hand]
    gen = torch.Generator().manual_seed(11)
    xy = torch.rand(30, 2, generator=gen) * 40
    b = torch.cat([xy, xy + torch.rand(30, 2, generator=gen) * 20 + 5], 1)
    s, c = torch.rand(30, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    cases.append(Case("30 random boxes, 3 classes, threshold 0.4", (b, s, c, 0.4),
                      batched_nms(b, s, c, 0.4)))
    mistakes = [
        Mistake(lambda *a: _greedy(*a, by_class=False), "NMS runs class by class: boxes of "
                "different classes never suppress each other"),
        Mistake(lambda *a: _greedy(*a, keep_equal=False), "suppress only when the IoU is "
                "ABOVE the threshold: a box at exactly the threshold stays"),
        Mistake(lambda *a: _greedy(*a, sort=False), "visit the boxes best score first: a box "
                "may only be removed by a better one"),
        Mistake(lambda *a: _greedy(*a, by_removed=True), "only a KEPT box removes others: a "
                "box that was itself removed removes nothing (compare with the kept list)"),
        Mistake(lambda b, s, c, t: _greedy(b, s, c, t).sort().values, "return the kept "
                "indices best score first, not in index order")]
    return Spec("check_nms", ("boxes", "scores", "labels", "iou_threshold"),
                "a (K,) int64 tensor of the kept boxes' indices, best score first",
                "sort by score; a box goes when its IoU with a KEPT box of its class is > the "
                "threshold", cases, mistakes, counts=True)


def check_nms(fn: Callable) -> bool:
    """Notebook 07. ``fn(boxes, scores, labels, iou_threshold)``: (N, 4) float32, (N,)
    float32, (N,) int64 and a float to a (K,) int64 tensor of the indices of the boxes kept,
    best score first. Class by class: take the best box left, drop every box of its class
    whose IoU with it is above the threshold, repeat."""
    return run_check(nms_spec(), fn)


def _ap(recall: np.ndarray, precision: np.ndarray) -> float:
    return float(average_precision(recall[None], precision[None], "area")[0])


def ap_spec() -> Spec:
    """The cases and known mistakes of :func:`check_average_precision`."""
    hand = [("the notebook's example: hit, miss, hit, miss, miss with 3 true boxes",
             np.array([1, 1, 2, 2, 2]) / 3, np.array([1, 0.5, 2 / 3, 0.5, 0.4])),
            ("a perfect detector", np.array([0.5, 1.0]), np.array([1.0, 1.0])),
            ("a first detection that misses", np.array([0.0, 0.5, 1.0]),
             np.array([0.0, 0.5, 2 / 3])),
            ("a zig-zag curve", np.array([0.25, 0.25, 0.5, 0.75, 0.75]),
             np.array([1.0, 0.5, 2 / 3, 0.75, 0.6])),
            ("no detections at all (K = 0): AP 0", np.zeros(0), np.zeros(0)),
            ("every detection misses", np.zeros(3), np.zeros(3))]
    cases = [Case(name, (r, p), _ap(r, p)) for name, r, p in hand]
    rng = np.random.default_rng(12)
    hits = rng.random(40) < 0.6
    recall, precision = np.cumsum(hits) / 30, np.cumsum(hits) / np.arange(1, 41)
    cases.append(Case("40 random detections, 30 true boxes", (recall, precision),
                      _ap(recall, precision)))

    def raw_area(r: np.ndarray, p: np.ndarray) -> float:
        return float(np.sum(np.diff(np.r_[0.0, r]) * p))

    def no_start(r: np.ndarray, p: np.ndarray) -> float:
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        return float(np.sum(np.diff(r) * envelope[1:]))

    def trapezoid(r: np.ndarray, p: np.ndarray) -> float:
        x, y = np.r_[0.0, r], np.r_[p[:1], p]
        return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))

    mistakes = [
        Mistake(raw_area, "interpolate first: at each recall use the BEST precision at this "
                "recall or any higher one (np.maximum.accumulate on the reversed array)"),
        Mistake(no_start, "start the area at recall 0: the first step runs from 0 to the first "
                "recall"),
        Mistake(trapezoid, "VOC's area is a staircase (rectangles under the interpolated "
                "precision), not a trapezoid rule")]
    return Spec("check_average_precision", ("recall", "precision"), "a Python float",
                "interpolate (best precision at this recall or beyond), then sum (recall step) "
                "x (interpolated precision)", cases, mistakes)


def check_average_precision(fn: Callable) -> bool:
    """Notebook 07. ``fn(recall, precision)``: two (K,) NumPy float64 arrays along K
    score-sorted detections (recall non-decreasing; K may be 0) to the AP as a Python float,
    VOC's "area" way: make the precision non-increasing (the best precision at this recall
    or beyond), then the exact area under that staircase, from recall 0 (precision counts
    as 0 past the last recall)."""
    return run_check(ap_spec(), fn)


stand_in("box_iou", box_iou)
SPECS = {"check_lr_factor": lr_spec, "check_box_iou": iou_spec, "check_nms": nms_spec,
         "check_average_precision": ap_spec}
