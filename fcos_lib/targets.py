"""Target assignment for FCOS: which locations are positives, and what they predict.

A location (one point per cell of each FPN level, in input pixels) becomes a positive for a
ground-truth box when three tests pass:

1. *inside*: the point lies strictly inside the box (all four LTRB distances > 0); with
   center sampling (the improved FCOS, radius 1.5) it must also lie within
   ``radius * stride`` of the box centre along both axes;
2. *scale*: the farthest of its four distances is strictly inside the level's size range
   (P3-P7: 0-64, 64-128, 128-256, 256-512, 512-inf pixels);
3. *ambiguity*: among the boxes that pass 1 and 2, the one with the smallest area wins
   (exact area ties: the box listed first).

Every location that no box claims is background. These are the rules of torchvision's FCOS,
strict inequalities included, and the parity tests check it location by location. One detail
differs: torchvision ranks boxes by ``1e8 - area`` in float32, which cannot separate areas
less than 8 px² apart (it then keeps the box listed first); here the smaller area always wins.

The assignment is here twice. :func:`assign_targets_plain` states the rules as the paper
does, one image at a time, on the full table of (location, box) pairs: it is the one to read.
:func:`assign_targets`, the one training calls, gives the same answer (the tests check it on
random batches) without that table: every test splits into an x part and a y part, and the
locations of a level form a grid, so the tests run on the grids' columns and rows, for all
levels and images at once, and only the final AND runs on (B, M, H, W), as a bitwise AND of
byte masks that leaves each box's rank by area where it claims a location; a max over the
boxes then picks the smallest. ``bench/bench_targets.py`` times it.

Why this module is longer than 300 lines: it keeps the plain and the fast assignment side by
side, so that a reader can compare them, and the pieces both use (box coding, size ranges,
padding) next to them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from fcos_lib.validate import boxes_xyxy, proper_boxes


def encode_boxes(boxes: Tensor, locations: Tensor, strides: Tensor) -> Tensor:
    """Distances from each location to the four sides of its box, in strides.

    Args:
        boxes: (..., L, 4) xyxy boxes in input pixels, one per location.
        locations: (L, 2) xy of each location in input pixels.
        strides: (L,) stride of each location's level, in pixels.

    Returns:
        (..., L, 4) LTRB distances ``(x - x1, y - y1, x2 - x, y2 - y) / stride``.
    """
    xy = locations
    s = strides[:, None]
    left_top = (xy - boxes[..., :2]) / s
    right_bottom = (boxes[..., 2:] - xy) / s
    return torch.cat([left_top, right_bottom], dim=-1)


def decode_boxes(deltas: Tensor, locations: Tensor, strides: Tensor) -> Tensor:
    """Inverse of :func:`encode_boxes`: LTRB distances in strides to xyxy pixels.

    Args:
        deltas: (..., L, 4) LTRB distances divided by the stride.
        locations: (L, 2) xy of each location in input pixels.
        strides: (L,) stride of each location's level, in pixels.

    Returns:
        (..., L, 4) xyxy boxes in input pixels.
    """
    s = strides[:, None]
    top_left = locations - deltas[..., :2] * s
    bottom_right = locations + deltas[..., 2:] * s
    return torch.cat([top_left, bottom_right], dim=-1)


def centerness_target(ltrb: Tensor) -> Tensor:
    """How centred a location is in its box: sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b)).

    Args:
        ltrb: (..., 4) positive LTRB distances (any unit: the ratios cancel it).

    Returns:
        (...,) centerness in (0, 1]: 1 at the box centre, towards 0 near a side.
    """
    lr, tb = ltrb[..., 0::2], ltrb[..., 1::2]
    ratio_x = lr.amin(dim=-1) / lr.amax(dim=-1)
    ratio_y = tb.amin(dim=-1) / tb.amax(dim=-1)
    return torch.sqrt(ratio_x * ratio_y)


def default_size_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """The paper's scale ranges: level l takes boxes whose farthest side is 4·s_l to 8·s_l away.

    The first level starts at 0 and the last ends at infinity, so every size has a level.

    Args:
        strides: the levels' strides in pixels, e.g. (8, 16, 32).

    Returns:
        One (lo, hi) pair in pixels per level; a location is kept when lo < max(l,t,r,b) < hi.
        (8, 16, 32) gives [(0, 64), (64, 128), (128, inf)].
    """
    ranges = [(4.0 * s, 8.0 * s) for s in strides]
    ranges[0] = (0.0, ranges[0][1])
    ranges[-1] = (ranges[-1][0], math.inf)
    return ranges


def pad_targets(targets: Sequence[dict[str, Tensor]], num_classes: int,
                device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Stack per-image targets into padded tensors, checking them on the way.

    Args:
        targets: B dicts with ``boxes`` (N_i, 4) xyxy pixels and ``labels`` (N_i,) int64.
        num_classes: labels must lie in [0, num_classes).
        device: where to put the result (default: the first boxes' device).

    Returns:
        ``boxes`` (B, M, 4) float32 and ``labels`` (B, M) int64, M = max N_i; padding rows have
        label -1 and box (0, 0, 0, 0).

    Raises:
        ValueError: on a wrong shape, labels that are not integers or out of range, or a
            box that is not finite or has x2 <= x1 or y2 <= y1.
    """
    if len(targets) == 0:
        raise ValueError("targets is empty: pass one dict per image of the batch")
    for i, t in enumerate(targets):
        b, lab = t["boxes"], t["labels"]
        if b.dim() != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
            raise ValueError(f"image {i}: expected boxes (N, 4) and labels (N,), got boxes "
                             f"{tuple(b.shape)} and labels {tuple(lab.shape)}")
        if lab.is_floating_point() or lab.dtype == torch.bool:
            raise ValueError(f"image {i}: labels are {lab.dtype}; pass class indices as "
                             "integers (torch.int64)")
    device = torch.device(device or targets[0]["boxes"].device)
    boxes = _pad([t["boxes"] for t in targets], torch.float32, device, 0.0)   # (B, M, 4)
    labels = _pad([t["labels"] for t in targets], torch.int64, device, -1)    # (B, M)
    counts = torch.tensor([len(t["labels"]) for t in targets], device=device)
    real = torch.arange(labels.shape[1], device=device) < counts[:, None]  # (B, M)
    bad_label = real & ((labels < 0) | (labels >= num_classes))
    if (bad_label | (real & ~proper_boxes(boxes))).any():   # one sync: then which one
        if bad_label.any():
            i, m = bad_label.nonzero()[0].tolist()
            raise ValueError(f"image {i}, box {m}: label {labels[i, m].item()} is outside "
                             f"[0, {num_classes}); labels are class indices, no background "
                             "class")
        boxes_xyxy("boxes", boxes, real=real, where=("image", "box"), hint="before the loss")
    return boxes, labels


def _pad(tensors: list[Tensor], dtype: torch.dtype, device: torch.device,
         value: float) -> Tensor:
    """Stack (N_i, ...) tensors into (B, max N_i, ...), converting only those that need it."""
    tensors = [t if t.dtype == dtype and t.device == device else t.to(device, dtype)
               for t in tensors]
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True, padding_value=value)


def assign_targets_plain(levels: Sequence[Tensor], boxes: Tensor,
                         size_ranges: Sequence[tuple[float, float]], *,
                         strides: Sequence[int] | None = None,
                         center_sampling_radius: float | None = None) -> Tensor:
    """The rules of the paper for one image, written out plainly: the contract of notebook
    05's exercise, and the same result as :func:`assign_targets` (which takes a padded batch;
    :func:`fcos_lib.pieces.batched` turns this one into that).

    The distances from every location (x, y) to the four sides of every box (x0, y0, x1, y1),
    l* = x - x0, t* = y - y0, r* = x1 - x, b* = y1 - y, make an (L, M, 4) table; then one
    line per rule. The size range is open at both ends, lo < max < hi, as torchvision and
    the course have it (the paper writes its bounds as inclusive; the two differ only for a
    distance exactly on a bound).

    Args:
        levels: per level, (L_l, 2) xy of its locations in pixels.
        boxes: (M, 4) xyxy boxes of the image in input pixels (M may be 0).
        size_ranges: per level, (lo, hi) in pixels (see :func:`default_size_ranges`).
        strides: per level, the stride in pixels: needed with center sampling only.
        center_sampling_radius: None (whole box) or the radius in strides (paper: 1.5).

    Returns:
        (L,) int64, L = sum of L_l: the index in [0, M) of the box each location regresses,
        or -1.
    """
    points = torch.cat(list(levels))                                         # (L, 2)
    if len(boxes) == 0:                                               # no box: all background
        return torch.full((len(points),), -1, dtype=torch.long, device=points.device)
    x, y = points[:, 0, None], points[:, 1, None]                            # (L, 1) each
    lo = torch.cat([p.new_full((len(p),), float(r[0])) for p, r in zip(levels, size_ranges)])
    hi = torch.cat([p.new_full((len(p),), float(r[1])) for p, r in zip(levels, size_ranges)])
    x0, y0, x1, y1 = boxes.unbind(dim=-1)                                    # (M,) each
    ltrb = torch.stack([x - x0, y - y0, x1 - x, y1 - y], dim=-1)             # (L, M, 4)
    # 1. Inside: all four distances positive (and, with center sampling, near the centre).
    ok = ltrb.amin(dim=-1) > 0                                               # (L, M)
    if center_sampling_radius is not None:
        stride = torch.cat([p.new_full((len(p),), float(s)) for p, s in zip(levels, strides)])
        radius = center_sampling_radius * stride[:, None]                    # (L, 1)
        ok &= ((x - (x0 + x1) / 2).abs() < radius) & ((y - (y0 + y1) / 2).abs() < radius)
    # 2. Scale: the farthest side lies strictly inside the level's range.
    farthest = ltrb.amax(dim=-1)                                             # (L, M)
    ok &= (farthest > lo[:, None]) & (farthest < hi[:, None])
    # 3. Ambiguity: the smallest box wins (argmin keeps the first of equal areas).
    area = (x1 - x0) * (y1 - y0)                                             # (M,)
    smallest = torch.where(ok, area, math.inf).argmin(dim=1)                 # (L,)
    return torch.where(ok.any(dim=1), smallest, -1)


def _axis_tests(coords: Tensor, lo_side: Tensor, hi_side: Tensor, strides: Tensor,
                lo_size: Tensor, hi_size: Tensor, radius: float | None) -> tuple[Tensor, Tensor]:
    """The tests along one axis, for K columns or rows (of any level, along any axis) at once.

    Args:
        coords: (K,) x of a column or y of a row, pixels.
        lo_side, hi_side: (B, M, K) the boxes' x1 and x2 for a column, y1 and y2 for a row.
        strides, lo_size, hi_size: (K,) each coordinate's level stride and size range, pixels.

    Returns:
        ``ok`` (B, M, K): inside along this axis, near the centre (with center sampling) and
        farthest side below the range's upper end; ``big`` (B, M, K): farthest side above its
        lower end. A location passes when ok_x & ok_y & (big_x | big_y).
    """
    to_lo, to_hi = coords - lo_side, hi_side - coords       # (B, M, K) l and r (or t and b)
    farthest = torch.maximum(to_lo, to_hi)
    ok = (torch.minimum(to_lo, to_hi) > 0) & (farthest < hi_size)
    if radius is not None:
        ok &= (coords - (lo_side + hi_side) / 2).abs() < radius * strides
    return ok, farthest > lo_size


def assign_targets(gt_boxes: Tensor, gt_labels: Tensor, locations: Sequence[Tensor],
                   strides: Sequence[int], size_ranges: Sequence[tuple[float, float]],
                   center_sampling_radius: float | None = None) -> Tensor:
    """Match every location of every level to one ground-truth box, or to none.

    A worked example: one 32x32 image, one level of stride 8 with points at cell centres
    (x, y in {4, 12, 20, 28}), size range (0, inf), no center sampling, and two boxes:
    box 0 = (0, 0, 16, 16) (area 256) and box 1 = (8, 8, 32, 32) (area 576).

    - Box 0 contains the 2x2 points with x, y in {4, 12}; box 1 the 3x3 with x, y in
      {12, 20, 28}. Point (4, 28) lies in neither: background, -1.
    - Point (12, 12) lies in both: the smaller box, 0, wins.

    >>> xs = torch.arange(4) * 8 + 4.0
    >>> grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    >>> boxes = torch.tensor([[[0.0, 0, 16, 16], [8, 8, 32, 32]]])
    >>> matched = assign_targets(boxes, torch.tensor([[3, 5]]), [grid], [8], [(0, math.inf)])
    >>> matched.view(4, 4)  # rows: y = 4, 12, 20, 28; columns: x = 4, 12, 20, 28
    tensor([[ 0,  0, -1, -1],
            [ 0,  0,  1,  1],
            [-1,  1,  1,  1],
            [-1,  1,  1,  1]])

    Args:
        gt_boxes: (B, M, 4) xyxy boxes in input pixels, padded (see :func:`pad_targets`).
        gt_labels: (B, M) int64 labels, -1 on padding rows (which never match).
        locations: per level, (H_l·W_l, 2) xy in pixels, row-major over (H_l, W_l).
        strides: per level, the stride in pixels.
        size_ranges: per level, (lo, hi) in pixels (see :func:`default_size_ranges`).
        center_sampling_radius: None (whole box) or the radius in strides (paper: 1.5).

    Returns:
        (B, L) int64, L = sum of H_l·W_l in level order: the index in [0, M) of the box each
        location regresses, or -1 for background.
    """
    B, M = gt_labels.shape
    L = sum(len(p) for p in locations)
    if M == 0:
        return gt_labels.new_full((B, L), -1)
    real = gt_labels >= 0
    areas = (gt_boxes[..., 2] - gt_boxes[..., 0]) * (gt_boxes[..., 3] - gt_boxes[..., 1])
    # Sort each image's boxes by area, padding last (a stable sort keeps the listed order among
    # equal areas), and give each box a rank: M for the smallest down to 1, 0 for padding.
    order = torch.where(real, areas, math.inf).argsort(dim=1, stable=True)   # (B, M)
    boxes = gt_boxes.gather(1, order[..., None].expand(-1, -1, 4))             # (B, M, 4)
    # Ranks fit in a byte up to 255 boxes per image, where bitwise ops run fastest.
    dtype = torch.uint8 if M < 2**8 else torch.int16 if M < 2**15 else torch.int32
    rank = torch.arange(M, 0, -1, device=order.device, dtype=dtype)[:, None]  # (M, 1)
    rank = rank * real.gather(1, order)[..., None]                           # (B, M, 1)

    # One line of coordinates: the x of every level's columns, then the y of every level's
    # rows, each with its level's stride and size range, and the box sides of its axis.
    widths = [_grid_width(points, stride) for points, stride in zip(locations, strides)]
    heights = [len(points) // w for points, w in zip(locations, widths)]
    coords = torch.cat([points[:w, 0] for points, w in zip(locations, widths)]
                       + [points[::w, 1] for points, w in zip(locations, widths)])  # (K,)
    per_coordinate = _per_coordinate(coords, widths + heights, list(strides) * 2,
                                     list(size_ranges) * 2)
    is_y = torch.arange(len(coords), device=coords.device) >= sum(widths)    # (K,)
    x1, y1, x2, y2 = boxes[..., None].unbind(2)                                # (B, M, 1) each
    ok, big = _axis_tests(coords, torch.where(is_y, y1, x1), torch.where(is_y, y2, x2),
                          *per_coordinate, center_sampling_radius)            # (B, M, K)
    # As bit masks (all ones for True) the final test is a bitwise AND whose result is the
    # box's rank where the box claims the location and 0 elsewhere; the largest rank over
    # the boxes is then the smallest box that claims it.
    ok, big = ok.to(dtype).neg_(), big.to(dtype).neg_()
    ok_x, ok_y = ok.split([sum(widths), sum(heights)], dim=2)
    big_x, big_y = big.split([sum(widths), sum(heights)], dim=2)
    ok_y &= rank
    claims = []
    for oy, by, ox, bx, (lo, _) in zip(ok_y.split(heights, 2), big_y.split(heights, 2),
                                       ok_x.split(widths, 2), big_x.split(widths, 2),
                                       size_ranges):
        claim = oy[..., None] & ox[:, :, None]                               # (B, M, H, W)
        if lo > 0:  # with lo <= 0, every point inside a box has its farthest side beyond lo
            claim &= by[..., None] | bx[:, :, None]
        claims.append(claim.amax(dim=1).flatten(1))                          # (B, H·W)
    claim = torch.cat(claims, dim=1)                                         # (B, L)
    first = (M - claim.long()).clamp_(max=M - 1)
    return torch.where(claim > 0, order.gather(1, first), -1)


def _grid_width(points: Tensor, stride: int) -> int:
    """The number of columns of a level's row-major (H·W, 2) grid of locations."""
    width = int((points[:, 1] == points[0, 1]).sum())                       # points in row 0
    if len(points) % width:
        raise ValueError(f"the {len(points)} locations of the stride-{stride} level are not "
                         "a row-major (H, W) grid; build them as the model does")
    return width


def _per_coordinate(coords: Tensor, counts: list[int], strides: Sequence[int],
                    size_ranges: Sequence[tuple[float, float]]) -> tuple[Tensor, Tensor, Tensor]:
    """Each coordinate's level stride, and lower and upper size bounds: (K,) each."""
    table = [(s, lo, hi) for n, s, (lo, hi) in zip(counts, strides, size_ranges) for _ in range(n)]
    return torch.tensor(table, dtype=coords.dtype, device=coords.device).unbind(1)


def gather_targets(matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor]:
    """The label and box that each location must predict.

    Args:
        matched: (B, L) box index per location, -1 for background (from :func:`assign_targets`).
        gt_boxes: (B, M, 4) xyxy pixels; gt_labels: (B, M) int64.

    Returns:
        ``labels`` (B, L) int64, -1 for background; ``boxes`` (B, L, 4) xyxy pixels, zeros for
        background.
    """
    positive = matched >= 0
    index = matched.clamp(min=0)
    if gt_labels.shape[1] == 0:  # no box in the whole batch: nothing to gather
        return matched.clone(), gt_boxes.new_zeros(*matched.shape, 4)
    labels = torch.where(positive, gt_labels.gather(1, index), -1)
    boxes = gt_boxes.gather(1, index[..., None].expand(-1, -1, 4)) * positive[..., None]
    return labels, boxes
