"""Target assignment + losses: fcos_lib against torchvision's FCOS ``compute_loss``.

Both sides get the same inputs: raw head outputs of 16 images (20 classes, as VOC), up to 40
boxes per image (one image with none), torchvision's anchors and, for fcos_lib, their centres
as locations (offset 0), P3-P7, center sampling 1.5, GIoU: the configuration in which the two
must agree, which the run checks before timing. Times are medians of interleaved runs, of the
forward alone (the goal) and of forward and backward (what a training step pays); then of two
parts: the matching (torchvision's per-image loop against ``assign_targets``), and the focal
loss, forward and backward (``sigmoid_focal_loss`` on a one-hot target, as torchvision's
``compute_loss`` calls it, against ``focal_loss``), on the same labels.

Run: ``python -m bench.bench_targets``. Goal: fcos_lib at least 5x faster.
"""
from __future__ import annotations

import torch
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.ops import sigmoid_focal_loss

from bench import median_ms
from fcos_lib.losses import fcos_loss, focal_loss
from fcos_lib.targets import assign_targets, default_size_ranges, pad_targets

BATCH, MAX_BOXES, NUM_CLASSES = 16, 40, 20
STRIDES = [8, 16, 32, 64, 128]
SIZES = [(256, 256), (512, 512), (768, 1024)]  # divisible by 128: torchvision's P7 grid is exact
REPEATS = {256 * 256: 41, 512 * 512: 21, 768 * 1024: 9}  # about 5 s per size


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
        n = (MAX_BOXES if i == 0 else 0 if i == 1
             else int(torch.randint(1, MAX_BOXES + 1, (1,), generator=gen)))
        wh = (torch.rand(n, 2, generator=gen) ** 2) * torch.tensor([width, height]) * 0.7 + 4
        xy = torch.rand(n, 2, generator=gen) * (torch.tensor([width, height]) - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(0, NUM_CLASSES, (n,), generator=gen)})
    ours = dict(split_levels(head, counts), locations=centres, strides=STRIDES)
    return head, [anchors] * BATCH, counts, targets, ours


def split_levels(head: dict, counts: list[int]) -> dict:
    """torchvision's concatenated head outputs as fcos_lib's per-level lists (views)."""
    return {"cls_logits": list(head["cls_logits"].split(counts, 1)),
            "box_deltas": list(head["bbox_regression"].split(counts, 1)),
            "centerness": list(head["bbox_ctrness"][..., 0].split(counts, 1))}


def with_backward(loss_fn, leaves):
    """Forward and backward of ``loss_fn``, gradients reset so that they do not accumulate."""
    def run():
        for leaf in leaves:
            leaf.grad = None
        losses = loss_fn()
        sum(losses[k] for k in ("classification", "bbox_regression", "bbox_ctrness")).backward()
    return run


def measure(tv, height: int, width: int) -> str:
    """One row of the table: the medians and ratios at one image size."""
    head, anchors, counts, targets, ours = make_inputs(height, width)
    theirs = tv.compute_loss(targets, head, anchors, counts)
    mine = fcos_loss(ours, targets, box_loss="giou", center_sampling_radius=1.5)
    for key, value in theirs.items():  # same inputs, same numbers: else the timing is moot
        torch.testing.assert_close(mine[key], value, rtol=1e-4, atol=1e-5)

    boxes, labels = pad_targets(targets, NUM_CLASSES)
    ranges = default_size_ranges(STRIDES)
    matched = assign_targets(boxes, labels, ours["locations"], STRIDES, ranges, 1.5)
    location_labels = torch.where(matched >= 0, labels.gather(1, matched.clamp(min=0)), -1)
    img, loc = (location_labels >= 0).nonzero(as_tuple=True)
    leaves = list(head.values())
    for leaf in leaves:
        leaf.requires_grad_()
    with_grad = dict(ours, **split_levels(head, counts))  # views made after requires_grad

    def tv_matching_only():
        tv.head.compute_loss = lambda *args: {}  # shadows the method: matching loop alone
        try:
            tv.compute_loss(targets, head, anchors, counts)
        finally:
            del tv.head.compute_loss

    def theirs():
        return tv.compute_loss(targets, head, anchors, counts)

    def tv_focal():
        head["cls_logits"].grad = None
        one_hot = torch.zeros_like(head["cls_logits"])
        one_hot[img, loc, location_labels[img, loc]] = 1.0
        sigmoid_focal_loss(head["cls_logits"], one_hot, reduction="sum").backward()

    def our_focal():
        head["cls_logits"].grad = None
        focal_loss(with_grad["cls_logits"], location_labels).backward()

    def mine(outputs=ours):
        return fcos_loss(outputs, targets, box_loss="giou", center_sampling_radius=1.5)

    grads = []  # the same gradients too: the backward timing compares equal work
    for run in (with_backward(theirs, leaves), with_backward(lambda: mine(with_grad), leaves)):
        run()
        grads.append([leaf.grad.clone() for leaf in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)

    with torch.no_grad():
        forward = median_ms({"tv": theirs, "ours": mine},
                            repeats=REPEATS[height * width])
    t = median_ms({
        "tv": with_backward(theirs, leaves),
        "ours": with_backward(lambda: mine(with_grad), leaves),
        "tv_match": tv_matching_only,
        "our_assign": lambda: assign_targets(boxes, labels, ours["locations"], STRIDES,
                                             ranges, 1.5),
        "tv_focal": tv_focal, "our_focal": our_focal,
    }, repeats=REPEATS[height * width])
    for leaf in leaves:
        leaf.requires_grad_(False)
        leaf.grad = None
    pairs = [(forward["tv"], forward["ours"], 11), (t["tv"], t["ours"], 11),
             (t["tv_match"], t["our_assign"], 9), (t["tv_focal"], t["our_focal"], 11)]
    return f"{height:>4}x{width:<5} " + "   ".join(
        f"{theirs:>{w}.1f} {ours:>8.1f} {theirs / ours:>4.1f}x" for theirs, ours, w in pairs)


def main() -> None:
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    threads = torch.get_num_threads()
    print(f"batch {BATCH}, up to {MAX_BOXES} boxes, {NUM_CLASSES} classes, P3-P7; "
          "median ms; ratio = torchvision / fcos_lib")
    for count in sorted({1, threads}):  # one thread: the cost in CPU time, without threading
        torch.set_num_threads(count)
        print(f"\n{count} thread{'s' * (count > 1)}")
        print(f"{'':>10} {'forward':^26}   {'forward + backward':^26}   {'matching':^24}   "
              f"{'focal loss, fwd + bwd':^24}")
        print(f"{'image':>10} " + f"{'torchvision':>11} {'fcos_lib':>8} {'ratio':>5}   " * 2
              + f"{'tv loop':>9} {'assign':>8} {'ratio':>5}   "
              + f"{'torchvision':>11} {'fcos_lib':>8} {'ratio':>5}")
        for height, width in SIZES:
            print(measure(tv, height, width), flush=True)
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
