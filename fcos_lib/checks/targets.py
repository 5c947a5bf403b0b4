"""Checks for notebook 05: LTRB encoding and decoding, the centerness target, the assignment
of locations to boxes, and the focal loss."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fcos_lib.checks.core import Case, Mistake, run_check
from fcos_lib.losses import focal_loss_plain
from fcos_lib.targets import assign_targets_plain, centerness_target, decode_boxes, encode_boxes

__all__ = ["check_encode", "check_decode", "check_centerness", "check_assign",
           "check_focal_loss"]


def _boxes_around(points: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random box around each point (the point strictly inside), xyxy pixels."""
    near, far = torch.rand(len(points), 2, generator=gen) * 40 + 1, \
        torch.rand(len(points), 2, generator=gen) * 40 + 1
    return torch.cat([points - near, points + far], dim=1)


def _ltrb_cases(gen: torch.Generator
                ) -> list[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(name, boxes (L, 4), points (L, 2), strides (L,)) for the encoding checks."""
    one = torch.tensor([8.0])
    hand = [("the point (12, 28) in the box (10, 20, 50, 44), stride 8",
             torch.tensor([[10.0, 20, 50, 44]]), torch.tensor([[12.0, 28]]), one),
            ("a point on the box's left side (l = 0)", torch.tensor([[4.0, 0, 20, 16]]),
             torch.tensor([[4.0, 8]]), one),
            ("a one-pixel box around its point, stride 128", torch.tensor([[99.5, 49.5, 100.5,
                                                                            50.5]]),
             torch.tensor([[100.0, 50]]), torch.tensor([128.0])),
            ("a box touching the image's top-left corner", torch.tensor([[0.0, 0, 64, 32]]),
             torch.tensor([[4.0, 4]]), one)]
    points = torch.rand(6, 2, generator=gen) * 200
    mixed = ("six points on strides 8 to 128", _boxes_around(points, gen), points,
             torch.tensor([8.0, 16, 32, 64, 128, 8]))
    return [*hand, mixed]


def check_encode(fn) -> bool:
    """``fn(boxes, points, strides)``: boxes (L, 4) xyxy pixels, points (L, 2) xy pixels,
    strides (L,) to (L, 4) ``(l, t, r, b) / stride`` with l = x - x0, t = y - y0,
    r = x1 - x, b = y1 - y."""
    cases = [Case(name, (b, p, s), encode_boxes(b, p, s),
                  "l = x - x0, t = y - y0, r = x1 - x, b = y1 - y, each divided by the stride")
             for name, b, p, s in _ltrb_cases(torch.Generator().manual_seed(5))]

    def swapped(b, p, s):
        return torch.cat([b[:, 2:] - p, p - b[:, :2]], 1) / s[:, None]

    mistakes = [
        Mistake(swapped, "l and r swapped? l is the distance to the LEFT side, x - x0; r the "
                "distance to the right side, x1 - x (same for t and b)"),
        Mistake(lambda b, p, s: torch.cat([p - b[:, :2], b[:, 2:] - p], 1),
                "divide the distances by the location's stride: the head predicts them in "
                "strides, so every level regresses numbers of the same size"),
        Mistake(lambda b, p, s: torch.cat([b[:, :2] - p, p - b[:, 2:]], 1) / s[:, None],
                "the signs are reversed: for a point inside the box all four distances are "
                "positive")]
    return run_check("check_encode", fn, cases, mistakes, arg_names=("boxes", "points", "strides"))


def check_decode(fn) -> bool:
    """``fn(deltas, points, strides)``: deltas (L, 4) ``(l, t, r, b)`` in strides, points
    (L, 2), strides (L,) to the boxes (L, 4) xyxy pixels: the inverse of ``check_encode``'s."""
    cases = []
    for name, b, p, s in _ltrb_cases(torch.Generator().manual_seed(6)):
        deltas = encode_boxes(b, p, s)
        cases.append(Case(name.replace("the box", "the distances to the box"), (deltas, p, s),
                          decode_boxes(deltas, p, s),
                          "x0 = x - l·s, y0 = y - t·s, x1 = x + r·s, y1 = y + b·s"))
    mistakes = [
        Mistake(lambda d, p, s: torch.cat([p - d[:, :2], p + d[:, 2:]], 1),
                "the deltas are in strides: multiply them by the stride first"),
        Mistake(lambda d, p, s: torch.cat([p + d[:, :2] * s[:, None], p - d[:, 2:] * s[:, None]], 1),
                "x0 = x - l·s lies to the LEFT of the point: subtract l and t, add r and b"),
        Mistake(lambda d, p, s: torch.cat([p - d[:, 2:] * s[:, None], p + d[:, :2] * s[:, None]], 1),
                "(l, t) give the top-left corner, (r, b) the bottom-right one")]
    return run_check("check_decode", fn, cases, mistakes, arg_names=("deltas", "points", "strides"))


def check_centerness(fn) -> bool:
    """``fn(ltrb)``: (N, 4) positive distances ``(l, t, r, b)`` to (N,) centerness,
    sqrt(min(l, r) / max(l, r) · min(t, b) / max(t, b))."""
    gen = torch.Generator().manual_seed(7)
    hand = [([[2.0, 2.0, 2.0, 2.0]], "a point at the centre of its box"),
            ([[1.0, 3.0, 9.0, 3.0]], "a point near the left side"),
            ([[2.0, 1.0, 6.0, 3.0], [6.0, 3.0, 2.0, 1.0]], "two mirror images")]
    cases = [Case(name, (torch.tensor(v),), centerness_target(torch.tensor(v)),
                  "centerness = sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))")
             for v, name in hand]
    random = torch.rand(8, 4, generator=gen) * 10 + 0.1
    cases.append(Case("random distances", (random,), centerness_target(random)))

    def ratio(ltrb):
        lr, tb = ltrb[:, 0::2], ltrb[:, 1::2]
        return lr.amin(1) / lr.amax(1) * tb.amin(1) / tb.amax(1)

    mistakes = [
        Mistake(ratio, "missing the square root? centerness = sqrt(ratio_x * ratio_y)"),
        Mistake(lambda d: 1 / ratio(d).sqrt(), "min over max, not max over min: the "
                "centerness lies between 0 and 1"),
        Mistake(lambda d: torch.sqrt(d[:, :2].amin(1) / d[:, :2].amax(1)
                                     * d[:, 2:].amin(1) / d[:, 2:].amax(1)),
                "pair l with r (left and right) and t with b: ltrb[:, 0::2] and ltrb[:, 1::2]")]
    return run_check("check_centerness", fn, cases, mistakes, arg_names=("ltrb",))


def _assign_reference(levels, boxes, ranges):
    labels = torch.zeros(1, len(boxes), dtype=torch.long)
    return assign_targets_plain(boxes[None], labels, levels, [1] * len(levels), ranges)[0]


def check_assign(fn) -> bool:
    """``fn(levels, boxes, size_ranges)``: ``levels`` the points of each level ((L_l, 2) xy
    pixels), ``boxes`` (M, 4) xyxy pixels of one image, ``size_ranges`` one (lo, hi) per
    level, to (L,) int64, L = sum of L_l: the index of the box each point learns, or -1.
    A point learns a box when it lies strictly inside it and the largest of its four
    distances is strictly between the level's lo and hi; when several boxes pass, the one of
    smallest area (the first listed of equal areas)."""
    line = torch.tensor([[4.0, 4], [12, 4], [20, 4], [28, 4]])           # y = 4, x = 4..28
    inf = math.inf
    hand = [
        ("a point exactly on a box's side (x = 4 on the box from x = 4)",
         [line], [[4.0, 0, 24, 8]], [(0.0, inf)]),
        ("a box whose farthest distance is exactly the level's upper bound (20)",
         [line], [[0.0, 0, 32, 8]], [(0.0, 20.0)]),
        ("two nested boxes: the smaller one wins the points they share",
         [line], [[0.0, 0, 32, 8], [10.0, 2, 22, 6]], [(0.0, inf)]),
        ("two boxes of equal area: the first listed wins",
         [line], [[8.0, 0, 24, 8], [2.0, 0, 18, 8]], [(0.0, inf)]),
        ("two levels: each box goes to the level of its size",
         [line, torch.tensor([[8.0, 4], [24, 4]])], [[2.0, 0, 10, 8], [0.0, 0, 32, 8]],
         [(0.0, 8.0), (8.0, inf)]),
        ("an image without boxes", [line], torch.zeros(0, 4), [(0.0, inf)]),
    ]
    cases = []
    for name, levels, boxes, ranges in hand:
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        cases.append(Case(name, (levels, boxes, ranges), _assign_reference(levels, boxes, ranges),
                          "inside means all four distances > 0; the range test is "
                          "lo < max(l, t, r, b) < hi; background is -1"))
    gen = torch.Generator().manual_seed(8)
    xs = torch.arange(8) * 8 + 4.0
    fine = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    coarse = fine[(fine[:, 0] % 16 == 12) & (fine[:, 1] % 16 == 12)]
    xy = torch.rand(10, 2, generator=gen) * 48
    boxes = torch.cat([xy, xy + torch.rand(10, 2, generator=gen) * 40 + 4], 1).round()
    ranges = [(0.0, 16.0), (16.0, inf)]
    cases.append(Case("random boxes on two levels", ([fine, coarse], boxes, ranges),
                      _assign_reference([fine, coarse], boxes, ranges)))

    def variant(inside=">", bound="strict", pick="smallest", use_range=True):
        def assign(levels, boxes, ranges):
            points = torch.cat(levels)
            lo = torch.cat([torch.full((len(p),), r[0]) for p, r in zip(levels, ranges)])
            hi = torch.cat([torch.full((len(p),), r[1]) for p, r in zip(levels, ranges)])
            if len(boxes) == 0:
                return torch.full((len(points),), -1, dtype=torch.long)
            x, y = points[:, :1], points[:, 1:]
            d = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x,
                             boxes[:, 3] - y], -1)
            ok = d.amin(-1) > 0 if inside == ">" else d.amin(-1) >= 0
            far = d.amax(-1)
            if use_range:
                ok &= ((far > lo[:, None]) & (far < hi[:, None]) if bound == "strict"
                       else (far >= lo[:, None]) & (far <= hi[:, None]))
            area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).expand_as(ok)
            if pick == "smallest":
                best = torch.where(ok, area, inf).argmin(1)
            elif pick == "largest":
                best = torch.where(ok, area, -inf).argmax(1)
            else:
                best = ok.float().argmax(1)
            return torch.where(ok.any(1), best, -1)
        return assign

    mistakes = [
        Mistake(variant(inside=">="), "a point on a box's side is not inside: use l, t, r, b "
                "> 0, not >= 0"),
        Mistake(variant(bound="closed"), "the size range is open: lo < max(l, t, r, b) < hi "
                "(a distance equal to a bound belongs to neither side)"),
        Mistake(variant(pick="largest"), "the SMALLEST box wins a shared point: the large box "
                "has plenty of other points"),
        Mistake(variant(pick="first"), "among the boxes that pass, pick the one of smallest "
                "area, not the first listed"),
        Mistake(variant(use_range=False), "each level takes only boxes of its size: test the "
                "largest distance against the level's (lo, hi)")]
    return run_check("check_assign", fn, cases, mistakes, arg_names=("levels", "boxes", "size_ranges"))


def check_focal_loss(fn) -> bool:
    """``fn(logits, labels, alpha=0.25, gamma=2.0)``: logits (N, C), labels (N,) int64 in
    [0, C) or -1 for background, to the focal loss summed over every location and class:
    -alpha_t · (1 - p_t)^gamma · log(p_t) against one-hot targets."""
    gen = torch.Generator().manual_seed(9)

    def reference(logits, labels, alpha=0.25, gamma=2.0):
        return float(focal_loss_plain([logits[None]], labels[None], alpha, gamma))

    hand = [("one positive and one background location, 3 classes",
             torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]]), torch.tensor([0, -1]), {}),
            ("alpha = 0.5, gamma = 0: plain cross-entropy, halved",
             torch.tensor([[1.0, -2.0], [0.5, 0.5]]), torch.tensor([1, 0]),
             {"alpha": 0.5, "gamma": 0.0}),
            ("extreme logits (-200 on a positive, +60 on background)",
             torch.tensor([[-200.0, 0.0], [60.0, -5.0]]), torch.tensor([0, -1]), {})]
    cases = [Case(name, (x, y), reference(x, y, **kw),
                  "FL = -alpha_t (1 - p_t)^gamma log(p_t), summed (not averaged)", kwargs=kw)
             for name, x, y, kw in hand]
    x = torch.randn(20, 4, generator=gen) * 3
    y = torch.randint(-1, 4, (20,), generator=gen)
    cases.append(Case("20 random locations, 4 classes", (x, y), reference(x, y)))

    def focal(logits, labels, alpha=0.25, gamma=2.0, swap=False, use_gamma=True, mean=False,
              naive=False):
        target = F.one_hot(labels.clamp(min=0), logits.shape[1]).float() * \
            (labels >= 0)[:, None]
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        a = 1 - alpha if swap else alpha
        alpha_t = a * target + (1 - a) * (1 - target)
        ce = -torch.log(p_t) if naive else F.binary_cross_entropy_with_logits(
            logits, target, reduction="none")
        loss = alpha_t * ((1 - p_t) ** gamma if use_gamma else 1) * ce
        return loss.mean() if mean else loss.sum()

    mistakes = [
        Mistake(lambda *a, **k: focal(*a, **k, swap=True), "alpha weights the POSITIVE targets "
                "(a 1 in the one-hot), 1 - alpha the background ones"),
        Mistake(lambda *a, **k: focal(*a, **k, use_gamma=False), "the focusing term "
                "(1 - p_t)^gamma is missing"),
        Mistake(lambda *a, **k: focal(*a, **k, mean=True), "sum over every location and class; "
                "fcos_loss divides by the number of positives later"),
        Mistake(lambda *a, **k: focal(*a, **k, naive=True), "log(sigmoid(x)) underflows to -inf "
                "for very negative x: compute -log(p_t) from the logits with "
                "F.binary_cross_entropy_with_logits (or F.logsigmoid)")]
    return run_check("check_focal_loss", fn, cases, mistakes, arg_names=("logits", "labels"))
