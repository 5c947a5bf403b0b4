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

Every test splits into an x part and a y part (inside along x and along y, farthest distance
along x or along y), and the locations of a level form a grid. So the tests are computed on
the grid's columns and rows, (B, M, W) and (B, M, H), and only the final AND of booleans
runs on (B, M, H, W): no Python loop over images or boxes, and little memory.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


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
        ValueError: on a wrong shape, a label out of range or a box with x2 <= x1 or y2 <= y1.
    """
    if len(targets) == 0:
        raise ValueError("targets is empty: pass one dict per image of the batch")
    for i, t in enumerate(targets):
        b, lab = t["boxes"], t["labels"]
        if b.dim() != 2 or b.shape[-1] != 4 or lab.shape != b.shape[:1]:
            raise ValueError(f"image {i}: expected boxes (N, 4) and labels (N,), got boxes "
                             f"{tuple(b.shape)} and labels {tuple(lab.shape)}")
    device = device or targets[0]["boxes"].device
    pad = torch.nn.utils.rnn.pad_sequence
    boxes = pad([t["boxes"].to(device, torch.float32) for t in targets], batch_first=True)
    labels = pad([t["labels"].to(device, torch.int64) for t in targets], batch_first=True,
                 padding_value=-1)
    counts = torch.tensor([len(t["labels"]) for t in targets], device=device)
    real = torch.arange(labels.shape[1], device=device) < counts[:, None]  # (B, M)
    bad_label = real & ((labels < 0) | (labels >= num_classes))
    if bad_label.any():
        i, m = bad_label.nonzero()[0].tolist()
        raise ValueError(f"image {i}, box {m}: label {labels[i, m].item()} is outside "
                         f"[0, {num_classes}); labels are class indices, no background class")
    flat = (boxes[..., 2:] <= boxes[..., :2]).any(dim=-1) & real
    if flat.any():
        i, m = flat.nonzero()[0].tolist()
        raise ValueError(f"image {i}, box {m}: {boxes[i, m].tolist()} has x2 <= x1 or "
                         "y2 <= y1; drop empty boxes (e.g. after cropping) before the loss")
    return boxes, labels


def _axis_tests(coords: Tensor, lo_side: Tensor, hi_side: Tensor, stride: float,
                size_range: tuple[float, float], radius: float | None) -> tuple[Tensor, Tensor]:
    """The tests along one axis, for the columns (or rows) of one level.

    Args:
        coords: (K,) x (or y) of the level's columns (or rows), pixels.
        lo_side, hi_side: (B, 1, M) x1 and x2 (or y1 and y2) of the boxes, pixels.

    Returns:
        ``ok`` (B, K, M): inside along this axis, near the centre (with center sampling) and
        farthest side below the range's upper end; ``big`` (B, K, M): farthest side above its
        lower end. A location passes when ok_x & ok_y & (big_x | big_y).
    """
    coords = coords[:, None]                                  # (K, 1)
    to_lo, to_hi = coords - lo_side, hi_side - coords       # (B, K, M) l and r (or t and b)
    farthest = torch.maximum(to_lo, to_hi)
    ok = (torch.minimum(to_lo, to_hi) > 0) & (farthest < size_range[1])
    if radius is not None:
        centre = (lo_side + hi_side) / 2
        ok &= (coords - centre).abs() < radius * stride
    return ok, farthest > size_range[0]


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
    # Sort each image's boxes by area so that "smallest box wins" becomes "first match wins";
    # padding goes last, and a stable sort keeps the listed order among equal areas.
    order = torch.where(real, areas, math.inf).argsort(dim=1, stable=True)   # (B, M)
    boxes = gt_boxes.gather(1, order[..., None].expand(-1, -1, 4))
    x1, y1, x2, y2 = boxes.transpose(1, 2)[:, :, None].unbind(dim=1)      # each (B, 1, M)
    real = real.gather(1, order)[:, None]                                     # (B, 1, M)
    matched = []
    for points, stride, size_range in zip(locations, strides, size_ranges):
        width = int((points[:, 1] == points[0, 1]).sum())                   # points in row 0
        if len(points) % width:
            raise ValueError(f"the {len(points)} locations of the stride-{stride} level are not "
                             "a row-major (H, W) grid; build them as the model does")
        xs, ys = points[:width, 0], points[::width, 1]                       # (W,), (H,)
        ok_x, big_x = _axis_tests(xs, x1, x2, stride, size_range, center_sampling_radius)
        ok_y, big_y = _axis_tests(ys, y1, y2, stride, size_range, center_sampling_radius)
        ok_x &= real
        claims = (ok_y[:, :, None] & ok_x[:, None]
                  & (big_y[:, :, None] | big_x[:, None])).flatten(1, 2)     # (B, H·W, M)
        # Boxes are sorted by area, so the first box that claims a location is the smallest.
        any_claim, first = claims.max(dim=2)                                 # (B, H·W) each
        matched.append(torch.where(any_claim, order.gather(1, first), -1))
    return torch.cat(matched, dim=1)


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
