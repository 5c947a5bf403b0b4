"""Checks for notebook 05's targets: LTRB encoding and decoding, the centerness target and the
assignment of locations to boxes."""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from fcos_lib.checks.core import Case, Mistake, Spec, run_check, stand_in
from fcos_lib.targets import assign_targets_plain, centerness_target, decode_boxes, encode_boxes

__all__ = ["check_encode", "check_decode", "check_centerness", "check_assign", "SPECS"]


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
            ("a one-pixel box around its point, stride 128",
             torch.tensor([[99.5, 49.5, 100.5, 50.5]]), torch.tensor([[100.0, 50]]),
             torch.tensor([128.0])),
            ("a box touching the image's top-left corner", torch.tensor([[0.0, 0, 64, 32]]),
             torch.tensor([[4.0, 4]]), one),
            ("a point outside its box (the inside test needs the negative distances)",
             torch.tensor([[10.0, 10, 20, 20]]), torch.tensor([[4.0, 30]]), one),
            ("no locations at all (L = 0)", torch.zeros(0, 4), torch.zeros(0, 2),
             torch.zeros(0))]
    points = torch.rand(6, 2, generator=gen) * 200
    mixed = ("six points on strides 8 to 128", _boxes_around(points, gen), points,
             torch.tensor([8.0, 16, 32, 64, 128, 8]))
    return [*hand, mixed]


def encode_spec() -> Spec:
    """The cases and known mistakes of :func:`check_encode`."""
    cases = [Case(name, (b, p, s), encode_boxes(b, p, s))
             for name, b, p, s in _ltrb_cases(torch.Generator().manual_seed(5))]

    def swapped(b: torch.Tensor, p: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
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
    return Spec("check_encode", ("boxes", "points", "strides"), "an (L, 4) float32 tensor",
                "l = x - x0, t = y - y0, r = x1 - x, b = y1 - y, each divided by the stride",
                cases, mistakes)


def check_encode(fn: Callable) -> bool:
    """``fn(boxes, points, strides)``: boxes (L, 4) xyxy pixels, points (L, 2) xy pixels,
    strides (L,), all float32, to an (L, 4) float32 tensor ``(l, t, r, b) / stride`` with
    l = x - x0, t = y - y0, r = x1 - x, b = y1 - y. The inputs are left as they were."""
    return run_check(encode_spec(), fn)


def decode_spec() -> Spec:
    """The cases and known mistakes of :func:`check_decode`."""
    cases = []
    for name, b, p, s in _ltrb_cases(torch.Generator().manual_seed(6)):
        deltas = encode_boxes(b, p, s)
        cases.append(Case(name.replace("the box", "the distances to the box"), (deltas, p, s),
                          decode_boxes(deltas, p, s), grad=True))
    mistakes = [
        Mistake(lambda d, p, s: torch.cat([p - d[:, :2], p + d[:, 2:]], 1),
                "the deltas are in strides: multiply them by the stride first"),
        Mistake(lambda d, p, s: torch.cat([p + d[:, :2] * s[:, None],
                                           p - d[:, 2:] * s[:, None]], 1),
                "x0 = x - l·s lies to the LEFT of the point: subtract l and t, add r and b"),
        Mistake(lambda d, p, s: torch.cat([p - d[:, 2:] * s[:, None],
                                           p + d[:, :2] * s[:, None]], 1),
                "(l, t) give the top-left corner, (r, b) the bottom-right one")]
    return Spec("check_decode", ("deltas", "points", "strides"), "an (L, 4) float32 tensor",
                "x0 = x - l·s, y0 = y - t·s, x1 = x + r·s, y1 = y + b·s", cases, mistakes,
                decode_boxes)


def check_decode(fn: Callable) -> bool:
    """``fn(deltas, points, strides)``: deltas (L, 4) ``(l, t, r, b)`` in strides, points
    (L, 2), strides (L,), all float32, to an (L, 4) float32 tensor of boxes, xyxy pixels: the
    inverse of ``check_encode``'s. The boxes keep the deltas' gradient (the box loss decodes
    the predicted deltas)."""
    return run_check(decode_spec(), fn)


def centerness_spec() -> Spec:
    """The cases and known mistakes of :func:`check_centerness`."""
    gen = torch.Generator().manual_seed(7)
    hand = [([[2.0, 2.0, 2.0, 2.0]], "a point at the centre of its box"),
            ([[1.0, 3.0, 9.0, 3.0]], "a point near the left side"),
            ([[2.0, 1.0, 6.0, 3.0], [6.0, 3.0, 2.0, 1.0]], "two mirror images"),
            ([[1e-3, 5.0, 40.0, 5.0]], "a point almost on the box's side (centerness near 0)"),
            ([[0.25, 0.5, 0.75, 0.125]], "distances under one (in strides, as the loss has "
             "them)")]
    cases = [Case(name, (torch.tensor(v),), centerness_target(torch.tensor(v)))
             for v, name in hand]
    cases.append(Case("no locations (N = 0)", (torch.zeros(0, 4),),
                      centerness_target(torch.zeros(0, 4)), "return an empty (0,) tensor"))
    random = torch.rand(8, 4, generator=gen) * 10 + 0.1
    cases.append(Case("eight random points", (random,), centerness_target(random)))

    def ratio(ltrb: torch.Tensor) -> torch.Tensor:
        lr, tb = ltrb[:, 0::2], ltrb[:, 1::2]
        return lr.amin(1) / lr.amax(1) * tb.amin(1) / tb.amax(1)

    mistakes = [
        Mistake(ratio, "missing the square root? centerness = sqrt(ratio_x * ratio_y)"),
        Mistake(lambda d: 1 / ratio(d).sqrt(), "min over max, not max over min: the "
                "centerness lies between 0 and 1"),
        Mistake(lambda d: torch.sqrt(d[:, :2].amin(1) / d[:, :2].amax(1)
                                     * d[:, 2:].amin(1) / d[:, 2:].amax(1)),
                "pair l with r (left and right) and t with b: ltrb[:, 0::2] and ltrb[:, 1::2]")]
    return Spec("check_centerness", ("ltrb",), "an (N,) float32 tensor",
                "centerness = sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))", cases,
                mistakes)


def check_centerness(fn: Callable) -> bool:
    """``fn(ltrb)``: (N, 4) float32 positive distances ``(l, t, r, b)`` to an (N,) float32
    tensor of centerness, sqrt(min(l, r) / max(l, r) · min(t, b) / max(t, b))."""
    return run_check(centerness_spec(), fn)


def _variant(inside: str = ">", bound: str = "strict", pick: str = "area",
             use_range: bool = True) -> Callable:
    """A wrong (or, with the defaults, right) assignment, vectorized."""
    def assign(levels: list[torch.Tensor], boxes: torch.Tensor,
               ranges: list[tuple[float, float]]) -> torch.Tensor:
        points = torch.cat(levels)
        lo = torch.cat([torch.full((len(p),), float(r[0])) for p, r in zip(levels, ranges)])
        hi = torch.cat([torch.full((len(p),), float(r[1])) for p, r in zip(levels, ranges)])
        if len(boxes) == 0:
            return torch.full((len(points),), -1, dtype=torch.long)
        x, y = points[:, :1], points[:, 1:]
        d = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x,
                         boxes[:, 3] - y], -1)
        ok = d.amin(-1) > 0 if inside == ">" else d.amin(-1) >= 0
        far = d.amax(-1)
        if use_range:
            above = far > lo[:, None] if bound in ("strict", "closed-hi") else far >= lo[:, None]
            below = far < hi[:, None] if bound in ("strict", "closed-lo") else far <= hi[:, None]
            ok &= above & below
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        size = {"area": w * h, "perimeter": w + h, "longer": torch.maximum(w, h),
                "shorter": torch.minimum(w, h), "largest": -w * h,
                "first": torch.zeros_like(w)}[pick].expand_as(ok)
        best = torch.where(ok, size, math.inf).argmin(1)
        return torch.where(ok.any(1), best, -1)
    return assign


def assign_spec() -> Spec:
    """The cases and known mistakes of :func:`check_assign`."""
    line = torch.tensor([[4.0, 4], [12, 4], [20, 4], [28, 4]])           # y = 4, x = 4..28
    apart = torch.tensor([[20.0, 20], [80, 20], [140, 20]])
    inf = math.inf
    hand = [
        ("a point exactly on a box's side (x = 4 on the box from x = 4)",
         [line], [[4.0, 0, 24, 8]], [(0.0, inf)]),
        ("a box whose farthest distance is exactly the level's upper bound (20)",
         [line], [[0.0, 0, 32, 8]], [(0.0, 20.0)]),
        ("a box whose farthest distance is exactly the level's LOWER bound (20)",
         [line], [[0.0, 0, 32, 8]], [(20.0, inf)]),
        ("two nested boxes: the smaller one wins the points they share",
         [line], [[0.0, 0, 32, 8], [10.0, 2, 22, 6]], [(0.0, inf)]),
        ("the smallest AREA wins, where the perimeter, width, height, or the longer or "
         "shorter side would pick the other box",
         [apart], [[15.5, 15.5, 24.5, 24.5], [19, 5, 21, 35], [75.5, 15.5, 84.5, 24.5],
                   [65, 19, 95, 21], [137.5, 0, 142.5, 40], [134, 14, 146, 26]], [(0.0, inf)]),
        ("two boxes of equal area: the first listed wins",
         [line], [[8.0, 0, 24, 8], [2.0, 0, 18, 8]], [(0.0, inf)]),
        ("two levels: each box goes to the level of its size",
         [line, torch.tensor([[8.0, 4], [24, 4]])], [[2.0, 0, 10, 8], [0.0, 0, 32, 8]],
         [(0.0, 8.0), (8.0, inf)]),
        ("a level without points (a small image's top level)",
         [line, torch.zeros(0, 2)], [[0.0, 0, 32, 8]], [(0.0, 64.0), (64.0, inf)]),
        ("an image without boxes", [line], torch.zeros(0, 4), [(0.0, inf)]),
    ]
    cases = []
    for name, levels, boxes, ranges in hand:
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        cases.append(Case(name, (levels, boxes, ranges), assign_targets_plain(levels, boxes, ranges)))
    gen = torch.Generator().manual_seed(8)
    xs = torch.arange(8) * 8 + 4.0
    fine = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    coarse = fine[(fine[:, 0] % 16 == 12) & (fine[:, 1] % 16 == 12)]
    xy = torch.rand(10, 2, generator=gen) * 48
    boxes = torch.cat([xy, xy + torch.rand(10, 2, generator=gen) * 40 + 4], 1).round()
    ranges = [(0.0, 16.0), (16.0, inf)]
    cases.append(Case("random boxes on two levels", ([fine, coarse], boxes, ranges),
                      assign_targets_plain([fine, coarse], boxes, ranges)))
    mistakes = [
        Mistake(_variant(inside=">="), "a point on a box's side is not inside: use l, t, r, b "
                "> 0, not >= 0"),
        Mistake(_variant(bound="closed"), "the size range is open at both ends: lo < "
                "max(l, t, r, b) < hi (a distance equal to a bound belongs to neither side)"),
        Mistake(_variant(bound="closed-lo"), "the size range is open at its LOWER end too: "
                "lo < max(l, t, r, b), not lo <= max(l, t, r, b)"),
        Mistake(_variant(bound="closed-hi"), "the size range is open at its upper end: "
                "max(l, t, r, b) < hi, not <= hi"),
        Mistake(_variant(pick="largest"), "the SMALLEST box wins a shared point: the large box "
                "has plenty of other points"),
        Mistake(_variant(pick="first"), "among the boxes that pass, pick the one of smallest "
                "area, not the first listed"),
        Mistake(_variant(pick="perimeter"), "smallest AREA, (x1 - x0) * (y1 - y0): not the "
                "perimeter"),
        Mistake(_variant(pick="longer"), "smallest AREA, (x1 - x0) * (y1 - y0): not the "
                "longer side"),
        Mistake(_variant(pick="shorter"), "smallest AREA, (x1 - x0) * (y1 - y0): not the "
                "shorter side"),
        Mistake(_variant(use_range=False), "each level takes only boxes of its size: test the "
                "largest distance against the level's (lo, hi)")]
    return Spec("check_assign", ("levels", "boxes", "size_ranges"), "an (L,) int64 tensor",
                "inside means all four distances > 0; the range test is lo < max(l, t, r, b) "
                "< hi; the smallest area wins; background is -1", cases, mistakes)


def check_assign(fn: Callable) -> bool:
    """``fn(levels, boxes, size_ranges)``: ``levels`` the points of each level ((L_l, 2) xy
    pixels), ``boxes`` (M, 4) xyxy pixels of one image, ``size_ranges`` one (lo, hi) per
    level, to an (L,) int64 tensor, L = sum of L_l: the index of the box each point learns,
    or -1. A point learns a box when it lies strictly inside it and the largest of its four
    distances is strictly between the level's lo and hi; when several boxes pass, the one of
    smallest area (the first listed of equal areas). The inputs are left as they were."""
    return run_check(assign_spec(), fn)


stand_in("encode", encode_boxes)
stand_in("decode", decode_boxes)
stand_in("centerness", centerness_target)
stand_in("assign", assign_targets_plain)
SPECS = {"check_encode": encode_spec, "check_decode": decode_spec,
         "check_centerness": centerness_spec, "check_assign": assign_spec}
