"""The best possible recall: by hand, against a restatement on the plain assignment, and
independent of how the images are batched."""
import math

import torch

from fcos_lib.positives import best_possible_recall
from fcos_lib.targets import assign_targets_plain, default_size_ranges

STRIDES = [8, 16, 32]


def grid(size, strides=STRIDES):
    levels = []
    for s in strides:
        n = math.ceil(size / s)
        xs = (torch.arange(n) + 0.5) * s
        levels.append(torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2))
    return levels


def test_a_box_that_loses_every_point_to_a_smaller_one_is_not_recalled():
    # A (0,0,16,16) holds the P3 points (4|12, 4|12); B (2,2,14,14), smaller, holds the same
    # four and wins all of them: A has no location. C, 2 px wide, holds no point at all.
    boxes = torch.tensor([[0.0, 0, 16, 16], [2, 2, 14, 14], [30, 30, 32, 40]])
    result = best_possible_recall([{"boxes": boxes, "labels": torch.tensor([0, 1, 2])}],
                                  grid(64), STRIDES)
    assert result == {"bpr": 1 / 3, "boxes": 3, "recalled": 1, "per_level": [1, 0, 0]}


def restated(targets, levels, strides, radius):
    """Boxes with at least one location, counted on the plain assignment, image by image."""
    ranges = default_size_ranges(strides)
    count = 0
    for t in targets:
        matched = assign_targets_plain(levels, t["boxes"], ranges, strides=strides,
                                       center_sampling_radius=radius)
        count += len(set(matched[matched >= 0].tolist()))
    return count


def test_equals_the_plain_assignment_and_ignores_batching():
    gen = torch.Generator().manual_seed(0)
    targets = []
    for n in (0, 3, 12, 40, 7):
        xy = torch.rand(n, 2, generator=gen) * 200
        wh = torch.rand(n, 2, generator=gen) ** 2 * 180 + 1
        targets.append({"boxes": torch.cat([xy, (xy + wh).clamp(max=256)], 1),
                        "labels": torch.randint(0, 10, (n,), generator=gen)})
    for strides in (STRIDES, [8, 16, 32, 64, 128]):
        levels = grid(256, strides)
        for radius in (None, 1.5):
            whole = best_possible_recall(targets, levels, strides, center_sampling_radius=radius)
            assert whole["boxes"] == 62
            assert whole["recalled"] == restated(targets, levels, strides, radius)
            assert 0 < whole["bpr"] < 1  # the tiny boxes and the contained ones are missed
            one_by_one = best_possible_recall(targets, levels, strides,
                                              center_sampling_radius=radius, batch_size=1)
            assert one_by_one == whole
    assert best_possible_recall([], grid(64), STRIDES)["bpr"] == 1.0
