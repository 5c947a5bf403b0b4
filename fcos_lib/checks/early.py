"""Checks for notebooks 01-04: VOC boxes, feature-map sizes, the FPN's top-down merge and the
locations of a level."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fcos_lib.backbone import build_backbone
from fcos_lib.checks.core import Case, Mistake, Spec, run_check, stand_in
from fcos_lib.data.voc import voc_to_xyxy
from fcos_lib.fpn import FPN
from fcos_lib.model import level_locations

__all__ = ["check_voc_to_xyxy", "check_feature_sizes", "check_top_down", "check_locations",
           "SPECS"]


def voc_spec() -> Spec:
    """The cases and known mistakes of :func:`check_voc_to_xyxy`."""
    hand = [([[1, 1, 500, 375]], "a box covering a whole 500x375 image"),
            ([[5, 5, 5, 9]], "a box one pixel wide (xmin = xmax = 5)"),
            ([[48, 240, 195, 371], [8, 12, 352, 498]], "two boxes of VOC image 000001")]
    gen = torch.Generator().manual_seed(1)
    low = torch.randint(1, 200, (6, 2), generator=gen)
    random = torch.cat([low, low + torch.randint(0, 200, (6, 2), generator=gen)], 1)
    cases = [Case(name, (torch.tensor(b),), voc_to_xyxy(torch.tensor(b))) for b, name in hand]
    cases += [Case("no boxes at all", (torch.zeros(0, 4, dtype=torch.long),),
                   voc_to_xyxy(torch.zeros(0, 4)), "return an empty (0, 4) float32 tensor"),
              Case("six random boxes", (random,), voc_to_xyxy(random))]
    mistakes = [
        Mistake(lambda b: b.float(), "VOC counts pixels from 1: shift the first corner by -1"),
        Mistake(lambda b: b.float() - 1, "xmax is inclusive: pixel xmax ends at x = xmax, so "
                "only xmin and ymin move by -1"),
        Mistake(lambda b: torch.cat([b[:, :2] - 1, b[:, 2:] + 1], 1).float(),
                "x2 = xmax, not xmax + 1: pixel xmax (1-based) is [xmax - 1, xmax)")]
    return Spec("check_voc_to_xyxy", ("boxes",), "an (N, 4) float32 tensor",
                "pixel k (1-based) covers [k - 1, k): x1 = xmin - 1, x2 = xmax", cases,
                mistakes)


def check_voc_to_xyxy(fn: Callable) -> bool:
    """Notebook 01. ``fn(boxes)``: (N, 4) int64 VOC boxes ``(xmin, ymin, xmax, ymax)``,
    1-based and inclusive, to an (N, 4) float32 tensor of pixel edges ``(x1, y1, x2, y2)``
    counted from 0. The input is left as it was."""
    return run_check(voc_spec(), fn)


def _backbone_sizes(net: torch.nn.Module, height: int, width: int) -> list[tuple[int, int]]:
    """The (H, W) of C3, C4, C5 that a backbone really makes for such an image."""
    with torch.no_grad():
        maps = net(torch.zeros(1, 3, height, width))
    return [tuple(int(n) for n in m.shape[-2:]) for m in maps]


def sizes_spec() -> Spec:
    """The cases and known mistakes of :func:`check_feature_sizes`."""
    sizes = [(224, 224), (100, 60), (33, 17), (32, 32), (7, 130), (1, 1), (65, 64)]
    net = build_backbone("tiny").eval()
    cases = [Case(f"a {h}x{w} image", (h, w), _backbone_sizes(net, h, w)) for h, w in sizes]
    mistakes = [
        Mistake(lambda h, w: [(h // s, w // s) for s in (8, 16, 32)],
                "odd sizes round up, not down: a stride-2 conv with padding 1 gives "
                "ceil(n / 2), so use -(-n // s) or math.ceil(n / s)"),
        Mistake(lambda h, w: [(-(-w // s), -(-h // s)) for s in (8, 16, 32)],
                "return (height, width) pairs: rows first, as tensors are (B, C, H, W)"),
        Mistake(lambda h, w: [(-(-h // s), -(-w // s)) for s in (4, 8, 16)],
                "C3, C4, C5 have strides 8, 16 and 32"),
        Mistake(lambda h, w: [(round(h / s), round(w / s)) for s in (8, 16, 32)],
                "round up, not to the nearest: a half cell is still a cell, ceil(n / s)")]
    return Spec("check_feature_sizes", ("height", "width"),
                "a list of three (height, width) tuples of Python ints",
                "each stride-2 conv with padding 1 gives ceil(n / 2)", cases, mistakes)


def check_feature_sizes(fn: Callable) -> bool:
    """Notebook 02. ``fn(height, width)``: the (H, W) of C3, C4 and C5 (strides 8, 16, 32)
    for an image of that size, as a list of three tuples of Python ints. Every stage halves
    its input with a stride-2 convolution of padding 1."""
    return run_check(sizes_spec(), fn)


def top_down_spec() -> Spec:
    """The cases and known mistakes of :func:`check_top_down`."""
    reference = FPN([4, 4, 4], 4, interpolation="nearest").top_down
    gen = torch.Generator().manual_seed(3)

    def laterals(*sizes: tuple[int, int]) -> list[torch.Tensor]:
        return [torch.randn(2, 4, h, w, generator=gen) for h, w in sizes]

    shapes = [("square maps 8, 4, 2", ((8, 8), (4, 4), (2, 2))),
              ("odd sizes: a 7x5 C3 under a 4x3 C4 under a 2x2 C5", ((7, 5), (4, 3), (2, 2))),
              ("one cell at the top", ((4, 4), (2, 2), (1, 1))),
              ("a tall 9x3 C3 under a 5x2 C4 under a 3x1 C5", ((9, 3), (5, 2), (3, 1)))]
    cases = []
    for name, sizes in shapes:
        maps = laterals(*sizes)
        hint = ("M5 = C5'; M4 = C4' + up(M5); M3 = C3' + up(M4): added, not averaged, for "
                "every image of the batch" if sizes[0][0] == 2 * sizes[1][0] else "")
        cases.append(Case(name, (maps,), reference(maps), hint, grad=True))

    def merge(mode: str, carry: bool = True) -> Callable:
        def top_down(ls: list[torch.Tensor]) -> list[torch.Tensor]:
            merged = [ls[-1]]
            for i in (1, 0):
                above = merged[0] if carry else ls[i + 1]
                kwargs = {"align_corners": False} if mode == "bilinear" else {}
                merged.insert(0, ls[i] + F.interpolate(above, size=ls[i].shape[-2:],
                                                       mode=mode, **kwargs))
            return merged
        return top_down

    mistakes = [
        Mistake(merge("bilinear"), "the FPN paper upsamples with nearest neighbour "
                "(mode='nearest')"),
        Mistake(merge("nearest-exact"), "mode='nearest-exact' picks other source rows than "
                "mode='nearest' when a size is not twice the one above (7 rows from 4): use "
                "mode='nearest', as the library's FPN does"),
        Mistake(merge("nearest", carry=False), "add the MERGED map above (which already holds "
                "C5), not its lateral map: the top-down pathway carries C5 down to M3"),
        Mistake(lambda ls: list(reversed(reference(ls))), "return the maps finest first: "
                "[M3, M4, M5]")]
    return Spec("check_top_down", ("laterals",),
                "a list [M3, M4, M5] of float32 tensors, each of its lateral map's shape",
                "upsample to the finer map's own size, F.interpolate(x, size=lateral.shape"
                "[-2:], mode='nearest'): 7 rows are not twice 4", cases, mistakes, reference)


def check_top_down(fn: Callable) -> bool:
    """Notebook 03. ``fn(laterals)``: [C3', C4', C5'] (the lateral 1x1 convs' outputs, (B, C,
    H_l, W_l) float32) to the merged maps [M3, M4, M5]: M5 = C5', then each finer level is
    its lateral map plus the merged map above it, upsampled with
    ``F.interpolate(..., size=its own size, mode="nearest")``. Gradients must flow back to
    every lateral map; the input list and its maps are left as they were."""
    return run_check(top_down_spec(), fn)


def locations_spec() -> Spec:
    """The cases and known mistakes of :func:`check_locations`."""
    cases = [Case(f"a {h}x{w} grid of stride {s}, offset {o!r}", (h, w, s, o),
                  level_locations(h, w, s, o))
             for h, w, s, o in [(2, 3, 32, 0.5), (3, 2, 8, 0.5), (2, 2, 16, 0.0), (1, 5, 64, 0.5),
                                (5, 1, 128, 0.5), (4, 4, 8, 0.5), (2, 3, 8, 0)]]

    def grid(h: int, w: int, s: int, o: float, xy: bool = True, rows: bool = True,
             use_offset: bool = True, use_stride: bool = True) -> torch.Tensor:
        ys = torch.arange(h, dtype=torch.float32) + (o if use_offset else 0)
        xs = torch.arange(w, dtype=torch.float32) + (o if use_offset else 0)
        if use_stride:
            ys, xs = ys * s, xs * s
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        if not rows:
            gy, gx = gy.T, gx.T
        points = torch.stack([gx, gy] if xy else [gy, gx], -1)
        return points.reshape(-1, 2)

    mistakes = [
        Mistake(lambda h, w, s, o: grid(h, w, s, o, xy=False),
                "each point is (x, y): x first (the column), then y (the row)"),
        Mistake(lambda h, w, s, o: grid(h, w, s, o, rows=False),
                "list the points row by row (row-major): all of row 0 left to right, then "
                "row 1, as flatten() orders a (H, W) map"),
        Mistake(lambda h, w, s, o: grid(h, w, s, o, use_offset=False),
                "add the offset before scaling: ((j + offset) * stride, (i + offset) * stride)"),
        Mistake(lambda h, w, s, o: grid(h, w, s, 0.0) + o, "the offset is a fraction of a "
                "cell: scale it with the stride, (j + offset) * stride, not j * stride + offset"),
        Mistake(lambda h, w, s, o: grid(h, w, s, 0.5), "use the offset you are given (0.5 or "
                "0.0), not a fixed 0.5"),
        Mistake(lambda h, w, s, o: grid(h, w, s, o, use_stride=False),
                "points are in input pixels: multiply by the stride")]
    return Spec("check_locations", ("height", "width", "stride", "offset"),
                "a (height·width, 2) float32 tensor (also for an integer offset)",
                "point = ((j + offset)·stride, (i + offset)·stride) for row i, column j: x "
                "from the column, y from the row", cases,
                mistakes)


def check_locations(fn: Callable) -> bool:
    """Notebook 04. ``fn(height, width, stride, offset)``: the points of a level of
    ``height`` x ``width`` cells, a (height·width, 2) float32 tensor of ``(x, y)`` in input
    pixels, ``((j + offset)·stride, (i + offset)·stride)`` for the cell in row i, column j,
    row by row (row-major)."""
    return run_check(locations_spec(), fn)


stand_in("voc_to_xyxy", voc_to_xyxy)
stand_in("locations", lambda h, w, s, o=0.5: level_locations(h, w, s, o))
SPECS = {"check_voc_to_xyxy": voc_spec, "check_feature_sizes": sizes_spec,
         "check_top_down": top_down_spec, "check_locations": locations_spec}
