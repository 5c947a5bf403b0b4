"""Target assignment, worked by hand in the course configuration (P3-P5, points at cell
centres, no center sampling), plus the edge cases: strict range bounds, ties, padding, empty
images, non-square grids, bad input. Parity with torchvision lives in test_losses.py."""
import doctest
import math

import pytest
import torch

from fcos_lib import targets as T
from fcos_lib.pieces import batched
from fcos_lib.targets import (
    assign_targets,
    assign_targets_plain,
    centerness_target,
    decode_boxes,
    default_size_ranges,
    encode_boxes,
    gather_targets,
    pad_targets,
)

STRIDES = [8, 16, 32]


def course_levels(height: int, width: int, strides=STRIDES, offset: float = 0.5):
    """Locations of each level, written out independently of the library."""
    levels = []
    for s in strides:
        rows, cols = math.ceil(height / s), math.ceil(width / s)
        levels.append(torch.tensor([[(j + offset) * s, (i + offset) * s]
                                    for i in range(rows) for j in range(cols)]))
    return levels


def positives_per_level(matched, levels):
    """Matched box per location, split by level, as {level: {(x, y): box}} for image 0."""
    out, start = {}, 0
    for k, points in enumerate(levels):
        part = matched[0, start:start + len(points)]
        out[k] = {tuple(points[i].tolist()): int(part[i]) for i in range(len(points))
                  if part[i] >= 0}
        start += len(points)
    return out


@pytest.fixture(params=["fast", "plain"])
def assign(request):
    """Each hand-worked case runs on both assignments: the one training uses and the plain
    one notebook 05 teaches."""
    return {"fast": assign_targets, "plain": batched(assign_targets_plain)}[request.param]


def assign_one(assign, boxes, size=64, radius=None, labels=None, width=None):
    levels = course_levels(size, width or size)
    boxes = torch.tensor([boxes], dtype=torch.float32)
    labels = torch.arange(boxes.shape[1])[None] if labels is None else torch.tensor([labels])
    matched = assign(boxes, labels, levels, STRIDES, default_size_ranges(STRIDES), radius)
    return positives_per_level(matched, levels), matched, levels


def test_docstring_example_runs():
    result = doctest.testmod(T, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 3 and result.failed == 0


def test_default_size_ranges_paper_rule():
    assert default_size_ranges([8, 16, 32]) == [(0.0, 64.0), (64.0, 128.0), (128.0, math.inf)]
    assert default_size_ranges([8, 16, 32, 64, 128]) == [
        (0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf)]


def test_small_box_on_p3_by_hand(assign):
    # Box (10, 20, 50, 44): P3 points at 4 + 8k strictly inside are x in {12..44}, y in {28, 36}.
    # Farthest side <= 38 px < 64, so all ten stay on P3; no P4/P5 point has a side > 64 px.
    pos, matched, levels = assign_one(assign, [[10, 20, 50, 44]])
    expected = {(x, y) for x in (12.0, 20.0, 28.0, 36.0, 44.0) for y in (28.0, 36.0)}
    assert set(pos[0]) == expected and pos[1] == {} and pos[2] == {}
    # Row-major indices on the 8x8 P3 grid: rows 3 and 4, columns 1..5.
    assert (matched[0, :64] >= 0).nonzero().flatten().tolist() == [25, 26, 27, 28, 29,
                                                                    33, 34, 35, 36, 37]


def test_regression_and_centerness_targets_by_hand(assign):
    pos, matched, levels = assign_one(assign, [[10, 20, 50, 44]], labels=[4])
    boxes = torch.tensor([[[10.0, 20, 50, 44]]])
    labels, per_loc = gather_targets(matched, boxes, torch.tensor([[4]]))
    locations = torch.cat(levels)
    strides = torch.cat([torch.full((len(p),), float(s)) for p, s in zip(levels, STRIDES)])
    i = 25  # the P3 point (12, 28)
    assert locations[i].tolist() == [12.0, 28.0] and labels[0, i] == 4
    ltrb = encode_boxes(per_loc, locations, strides)[0, i]
    # l = (12-10)/8, t = (28-20)/8, r = (50-12)/8, b = (44-28)/8
    assert ltrb.tolist() == [0.25, 1.0, 4.75, 2.0]
    expected = math.sqrt((0.25 / 4.75) * (1.0 / 2.0))
    assert centerness_target(ltrb).item() == pytest.approx(expected, rel=1e-6)
    assert labels[0, 0] == -1 and per_loc[0, 0].tolist() == [0, 0, 0, 0]


def test_whole_image_box_goes_to_p4_only(assign):
    # A 128x128 box on a 128x128 image: P3 points are >= 68 px from a side (>= 64: too big),
    # every P4 point's farthest side is 72..120 px (in (64, 128)), P5's >= 80 (not > 128).
    pos, _, levels = assign_one(assign, [[0, 0, 128, 128]], size=128)
    assert pos[0] == {} and pos[2] == {}
    assert len(pos[1]) == len(levels[1]) == 64


def test_range_bounds_are_strict(assign):
    # Box (0, 0, 100, 100): the P3 point (36, 36) is exactly 64 px from the right and bottom
    # sides, the upper end of P3's range, so it is not a positive (torchvision: strict <).
    pos, _, _ = assign_one(assign, [[0, 0, 100, 100]], size=128)
    assert set(pos[0]) == {(x, y) for x in (44.0, 52.0, 60.0) for y in (44.0, 52.0, 60.0)}
    assert (36.0, 36.0) not in pos[0]


def test_inside_is_strict(assign):
    # A point on the box's side is not inside: box (4, 4, 20, 20) has P3 points (4|12, ...) and
    # only (12, 12) lies strictly inside.
    pos, _, _ = assign_one(assign, [[4, 4, 20, 20]])
    assert set(pos[0]) == {(12.0, 12.0)}


def test_center_sampling_by_hand(assign):
    # Box (0, 0, 64, 64), centre (32, 32), radius 1.5 on P3: |x - 32| < 12 keeps x in {28, 36};
    # x = 20 and 44 are exactly 12 away and drop out. Without it: all 64 P3 points.
    pos, _, _ = assign_one(assign, [[0, 0, 64, 64]], radius=1.5)
    assert set(pos[0]) == {(x, y) for x in (28.0, 36.0) for y in (28.0, 36.0)}
    pos, _, _ = assign_one(assign, [[0, 0, 64, 64]])
    assert len(pos[0]) == 64


def test_center_sampling_is_clipped_to_the_box(assign):
    # A thin box (0, 25, 64, 31), centre (32, 28): the 1.5-stride square around the centre
    # holds rows y = 20, 28, 36 (|y - 28| = 8 < 12), but only row 28 is inside the box.
    pos, _, _ = assign_one(assign, [[0, 25, 64, 31]], radius=1.5)
    assert set(pos[0]) == {(28.0, 28.0), (36.0, 28.0)}


def test_smallest_box_wins_and_ties_go_to_the_first(assign):
    # Box 0 (0, 0, 40, 40) contains box 1 (8, 8, 24, 24): shared points go to box 1.
    pos, _, _ = assign_one(assign, [[0, 0, 40, 40], [8, 8, 24, 24]])
    assert pos[0][(12.0, 12.0)] == 1 and pos[0][(20.0, 20.0)] == 1
    assert pos[0][(4.0, 4.0)] == 0 and pos[0][(36.0, 28.0)] == 0
    # Equal areas (16x16): the box listed first wins the shared points.
    for first, second in ([0, 1], [1, 0]):
        boxes = [[0, 0, 16, 16], [8, 8, 24, 24]]
        pos, _, _ = assign_one(assign, [boxes[first], boxes[second]])
        assert pos[0][(12.0, 12.0)] == 0


def test_padding_and_empty_images(assign):
    levels = course_levels(64, 64)
    ranges = default_size_ranges(STRIDES)
    box = [0.0, 0, 40, 40]
    boxes = torch.tensor([[box, [0, 0, 0, 0]], [box, box]])  # image 1: one real, one padded
    labels = torch.tensor([[2, -1], [-1, -1]])               # image 1 has no real box
    matched = assign(boxes, labels, levels, STRIDES, ranges)
    assert (matched[0] >= 0).sum() == 25 and set(matched[0].unique().tolist()) == {-1, 0}
    assert (matched[1] == -1).all()
    empty = assign(torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), levels,
                           STRIDES, ranges)
    assert empty.shape == (2, 64 + 16 + 4) and (empty == -1).all()
    lab, bx = gather_targets(empty, torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long))
    assert (lab == -1).all() and bx.shape == (2, 84, 4) and (bx == 0).all()


def test_batch_equals_one_image_at_a_time(assign):
    torch.manual_seed(0)
    levels, ranges = course_levels(96, 160), default_size_ranges(STRIDES)
    targets = []
    for n in (5, 0, 12, 1):
        xy = torch.rand(n, 2) * torch.tensor([150.0, 90.0])
        wh = torch.rand(n, 2) * 80 + 2
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 3, (n,))})
    boxes, labels = pad_targets(targets, num_classes=3)
    batch = assign(boxes, labels, levels, STRIDES, ranges, 1.5)
    for i, t in enumerate(targets):
        one = assign(t["boxes"][None], t["labels"][None], levels, STRIDES, ranges, 1.5)
        assert torch.equal(batch[i], one[0])
    assert (batch >= 0).any()


@pytest.mark.parametrize("radius", [None, 1.5])
@pytest.mark.parametrize("counts", [(60, 0, 40), (255, 7), (256, 7)])  # ranks: 1 or 2 bytes
def test_fast_equals_plain_on_five_levels_and_many_boxes(radius, counts):
    """Paper levels P3-P7 (ranges that start above 0), up to 256 boxes in one image (more
    than a byte can rank), whole-pixel boxes that hit range bounds, repeated boxes (ties)."""
    gen = torch.Generator().manual_seed(3)
    strides = [8, 16, 32, 64, 128]
    levels, ranges = course_levels(256, 384, strides), default_size_ranges(strides)
    targets = []
    for n in counts:
        xy = (torch.rand(n, 2, generator=gen) * torch.tensor([360.0, 230.0])).round()
        wh = (torch.rand(n, 2, generator=gen) ** 2 * 300 + 2).round()
        b = torch.cat([xy, xy + wh], 1)
        if n >= 10:
            b[n // 2: n // 2 + 5] = b[:5]  # equal areas: the box listed first wins
        targets.append({"boxes": b, "labels": torch.randint(0, 4, (n,), generator=gen)})
    boxes, labels = pad_targets(targets, num_classes=4)
    ours = assign_targets(boxes, labels, levels, strides, ranges, radius)
    plain = batched(assign_targets_plain)(boxes, labels, levels, strides, ranges, radius)
    assert torch.equal(ours, plain)
    sizes = [len(p) for p in levels]
    assert all((part >= 0).any() for part in ours[0].split(sizes)[:3])  # boxes on P3-P5


def test_non_square_grid(assign):
    # 64 wide, 32 tall: P3 is 4 rows x 8 columns. Box (40, 0, 64, 16): x in {44, 52, 60}, y in {4, 12}.
    pos, _, levels = assign_one(assign, [[40, 0, 64, 16]], size=32, width=64)
    assert len(levels[0]) == 32
    assert set(pos[0]) == {(x, y) for x in (44.0, 52.0, 60.0) for y in (4.0, 12.0)}


def test_encode_decode_round_trip():
    torch.manual_seed(1)
    locations, strides = torch.rand(7, 2) * 100, torch.tensor([8.0, 8, 16, 16, 32, 64, 128])
    boxes = torch.cat([locations - torch.rand(7, 2) * 50, locations + torch.rand(7, 2) * 50], 1)
    deltas = encode_boxes(boxes[None], locations, strides)
    assert (deltas > 0).all()
    assert torch.allclose(decode_boxes(deltas, locations, strides)[0], boxes, atol=1e-4)


def test_pad_targets_shapes_and_errors():
    targets = [{"boxes": torch.tensor([[0.0, 0, 5, 5]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
               {"boxes": torch.tensor([[1.0, 1, 3, 3], [2, 2, 9, 9]]), "labels": torch.tensor([0, 2])}]
    boxes, labels = pad_targets(targets, num_classes=3)
    assert boxes.shape == (3, 2, 4) and labels.tolist() == [[1, -1], [-1, -1], [0, 2]]
    bad = [{"boxes": torch.tensor([[5.0, 0, 5, 9]]), "labels": torch.tensor([0])}]
    with pytest.raises(ValueError, match="image 0, box 0.*x2 <= x1"):
        pad_targets(bad, num_classes=3)
    bad = [{"boxes": torch.tensor([[0.0, 0, 5, 9]]), "labels": torch.tensor([3])}]
    with pytest.raises(ValueError, match="label 3 is outside"):
        pad_targets(bad, num_classes=3)
    bad = [{"boxes": torch.tensor([0.0, 0, 5, 9]), "labels": torch.tensor([0])}]
    with pytest.raises(ValueError, match="expected boxes"):
        pad_targets(bad, num_classes=3)
    with pytest.raises(ValueError, match="not a row-major"):
        assign_targets(boxes, labels, [torch.tensor([[0.0, 0], [8, 0], [0, 8]])], [8],
                       [(0, math.inf)])
