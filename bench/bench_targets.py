"""Target assignment + losses: fcos_lib against torchvision's FCOS ``compute_loss``.

Both sides get the same inputs: raw head outputs of 16 images (20 classes, as VOC), up to 40
boxes per image (one image with none), torchvision's anchors and, for fcos_lib, their centres
as locations (offset 0), P3-P7, center sampling 1.5, GIoU: the configuration in which the two
must agree, which the run checks before timing. Times are medians of interleaved runs.

The focal loss (``torchvision.ops.sigmoid_focal_loss`` on both sides, over every location
and class) is the same work on both sides, so its time is printed too: it bounds the ratio.

Run: ``python -m bench.bench_targets``. Goal: fcos_lib at least 5x faster.
"""
from __future__ import annotations


import torch
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.ops import sigmoid_focal_loss

from bench import median_ms
from fcos_lib.losses import fcos_loss
from fcos_lib.targets import assign_targets, default_size_ranges, pad_targets

BATCH, MAX_BOXES, NUM_CLASSES = 16, 40, 20
STRIDES = [8, 16, 32, 64, 128]
SIZES = [(256, 256), (512, 512), (768, 1024)]  # divisible by 128: torchvision's P7 grid is exact


def make_inputs(height: int, width: int, seed: int = 0):
    """Head outputs in both layouts, torchvision's anchors and random targets."""
    gen = torch.Generator().manual_seed(seed)
    grids = [(height // s, width // s) for s in STRIDES]
    counts = [h * w for h, w in grids]
    total = sum(counts)
    head = {"cls_logits": torch.randn(BATCH, total, NUM_CLASSES, generator=gen) - 4,
            "bbox_regression": torch.rand(BATCH, total, 4, generator=gen) * 4,
            "bbox_ctrness": torch.randn(BATCH, total, 1, generator=gen)}
    centres = []
    for (h, w), s in zip(grids, STRIDES):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres.append(torch.stack([xs, ys], -1).reshape(-1, 2).float() * s)
    anchors = torch.cat([torch.cat([c - s / 2, c + s / 2], 1) for c, s in zip(centres, STRIDES)])
    targets = []
    for i in range(BATCH):
        n = MAX_BOXES if i == 0 else 0 if i == 1 else int(torch.randint(1, MAX_BOXES + 1, (1,), generator=gen))
        wh = (torch.rand(n, 2, generator=gen) ** 2) * torch.tensor([width, height]) * 0.7 + 4
        xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(0, NUM_CLASSES, (n,), generator=gen)})
    ours = {"cls_logits": list(head["cls_logits"].split(counts, 1)),
            "box_deltas": list(head["bbox_regression"].split(counts, 1)),
            "centerness": list(head["bbox_ctrness"][..., 0].split(counts, 1)),
            "locations": centres, "strides": STRIDES}
    return head, [anchors] * BATCH, counts, targets, ours


def main() -> None:
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    print(f"batch {BATCH}, up to {MAX_BOXES} boxes, {NUM_CLASSES} classes, P3-P7, "
          f"{torch.get_num_threads()} threads; median ms")
    print(f"{'image':>10} {'torchvision':>12} {'fcos_lib':>9} {'ratio':>6}   "
          f"{'tv match':>9} {'our assign':>10} {'ratio':>6}   {'focal':>6}")
    for height, width in SIZES:
        head, anchors, counts, targets, ours = make_inputs(height, width)
        theirs = tv.compute_loss(targets, head, anchors, counts)
        mine = fcos_loss(ours, targets, box_loss="giou", center_sampling_radius=1.5)
        for key, value in theirs.items():  # same inputs, same numbers: else the timing is moot
            torch.testing.assert_close(mine[key], value, rtol=1e-4, atol=1e-5)

        boxes, labels = pad_targets(targets, NUM_CLASSES)
        zeros = torch.zeros_like(head["cls_logits"])
        ranges = default_size_ranges(STRIDES)

        def tv_matching_only():
            tv.head.compute_loss = lambda *args: {}  # shadows the method: matching loop alone
            try:
                tv.compute_loss(targets, head, anchors, counts)
            finally:
                del tv.head.compute_loss

        t = median_ms({
            "tv": lambda: tv.compute_loss(targets, head, anchors, counts),
            "ours": lambda: fcos_loss(ours, targets, box_loss="giou", center_sampling_radius=1.5),
            "tv_match": tv_matching_only,
            "our_assign": lambda: assign_targets(boxes, labels, ours["locations"], STRIDES,
                                                 ranges, 1.5),
            "focal": lambda: sigmoid_focal_loss(head["cls_logits"], zeros, reduction="sum"),
        }, repeats=15 if height * width <= 512 * 512 else 7)
        print(f"{height:>4}x{width:<5} {t['tv']:>12.1f} {t['ours']:>9.1f} "
              f"{t['tv'] / t['ours']:>5.1f}x   {t['tv_match']:>9.1f} "
              f"{t['our_assign']:>10.1f} {t['tv_match'] / t['our_assign']:>5.1f}x   "
              f"{t['focal']:>6.1f}")


if __name__ == "__main__":
    main()
