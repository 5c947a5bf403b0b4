"""The losses, checked against torchvision's FCOS (same configuration: P3-P7, center sampling
1.5, GIoU, its scale ranges, points at i * stride), by hand (L1, normalization), and in a
two-process distributed run."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.ops import sigmoid_focal_loss

from fcos_lib import losses as losses_module
from fcos_lib.losses import fcos_loss, focal_loss, focal_loss_plain, num_positives
from fcos_lib.pieces import flat
from fcos_lib.targets import assign_targets, default_size_ranges, pad_targets
from fcos_lib.torchvision_port import from_torchvision

# torchvision infers a level's stride as image size // feature size: at sizes not divisible
# by 128 its P6/P7 anchors leave the i * stride grid (160 px wide: a P6 "stride" of 53 px).
# Parity therefore uses sizes divisible by 128.
H, W, C = 128, 256, 5
KEYS = ("classification", "bbox_regression", "bbox_ctrness")


@pytest.fixture(scope="module")
def tv():
    """torchvision's FCOS with an identity transform (no resize, no normalization)."""
    torch.manual_seed(0)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=C,
                              image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                              min_size=H, max_size=W)
    return model.train()


def random_boxes(gen, n, lo, hi, integer=False):
    """n boxes with sides in [lo, hi) px, clipped to the image, dropping empty ones."""
    wh = lo + torch.rand(n, 2, generator=gen) * (hi - lo)
    xy = torch.rand(n, 2, generator=gen) * (torch.tensor([W, H]) - wh * 0.5)
    boxes = torch.cat([xy, xy + wh], 1)
    if integer:  # sides on whole pixels: distances hit the range bounds exactly
        boxes = boxes.round()
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, W)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, H)
    return boxes[(boxes[:, 2:] > boxes[:, :2]).all(1)]


def random_batch(seed):
    """Four images: no box; tiny boxes; boxes larger than half the image (one the whole
    image); many overlapping boxes with integer sides."""
    gen = torch.Generator().manual_seed(seed)
    nested = torch.tensor([[20.0, 20, 100, 100], [40, 40, 80, 80], [50, 30, 130, 90]])
    boxes = [torch.zeros(0, 4), random_boxes(gen, 10, 2, 12),
             torch.cat([random_boxes(gen, 3, 70, 160), torch.tensor([[0.0, 0, W, H]])]),
             torch.cat([random_boxes(gen, 25, 8, 90, integer=True), nested])]
    targets = [{"boxes": b, "labels": torch.randint(0, C, (len(b),), generator=gen)}
               for b in boxes]
    return torch.randn(4, 3, H, W, generator=gen), targets


def our_layout(head, features, anchors):
    """torchvision's raw head outputs split per level into fcos_lib's layout."""
    sizes = [f.shape[2] * f.shape[3] for f in features]
    strides = [H // f.shape[2] for f in features]
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    return {"cls_logits": list(head["cls_logits"].split(sizes, 1)),
            "box_deltas": list(head["bbox_regression"].split(sizes, 1)),
            "centerness": list(head["bbox_ctrness"][..., 0].split(sizes, 1)),
            "locations": list(centres.split(sizes)), "strides": strides}


def tv_run(tv, images, targets):
    """torchvision's loss dict in training mode, its matches, and its head outputs."""
    captured = {}
    original = tv.head.compute_loss

    def spy(targets, head_outputs, anchors, matched_idxs):
        captured.update(head=head_outputs, anchors=anchors[0], matched=torch.stack(matched_idxs))
        return original(targets, head_outputs, anchors, matched_idxs)

    tv.head.compute_loss = spy
    try:
        with torch.no_grad():
            losses = tv(list(images), [dict(t) for t in targets])
    finally:
        del tv.head.compute_loss
    return losses, captured


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_and_losses_equal_torchvision(tv, seed):
    images, targets = random_batch(seed)
    tv_losses, cap = tv_run(tv, images, targets)
    with torch.no_grad():
        features = list(tv.backbone(images).values())
    outputs = our_layout(cap["head"], features, cap["anchors"])
    # Our locations (offset 0) are torchvision's anchor centres, i * stride.
    for points, s, f in zip(outputs["locations"], outputs["strides"], features):
        ys, xs = torch.meshgrid(torch.arange(f.shape[2]), torch.arange(f.shape[3]), indexing="ij")
        assert torch.equal(points, torch.stack([xs, ys], -1).reshape(-1, 2).float() * s)

    boxes, labels = pad_targets(targets, C)
    ours = assign_targets(boxes, labels, outputs["locations"], outputs["strides"],
                          default_size_ranges(outputs["strides"]), 1.5)
    assert torch.equal(ours, cap["matched"])
    assert (ours[0] == -1).all() and (ours[1:] >= 0).sum(1).min() > 0

    losses = fcos_loss(outputs, targets, box_loss="giou", center_sampling_radius=1.5)
    for key in KEYS:
        assert losses[key].item() == pytest.approx(tv_losses[key].item(), rel=1e-4, abs=1e-5)
    assert losses["total"].item() == pytest.approx(sum(losses[k].item() for k in KEYS), rel=1e-6)


def test_gradients_equal_torchvision(tv):
    """Same losses, same gradients with respect to the raw head outputs."""
    images, targets = random_batch(3)
    _, cap = tv_run(tv, images, targets)
    with torch.no_grad():
        features = list(tv.backbone(images).values())
    sizes = [f.shape[2] * f.shape[3] for f in features]
    grads = []
    for ours in (False, True):
        head = {k: v.detach().clone().requires_grad_() for k, v in cap["head"].items()}
        if ours:
            losses = fcos_loss(our_layout(head, features, cap["anchors"]), targets,
                               box_loss="giou", center_sampling_radius=1.5)
        else:
            losses = tv.compute_loss(targets, head, [cap["anchors"]] * 4, sizes)
        sum(losses[k] for k in KEYS).backward()
        grads.append([head[k].grad for k in ("cls_logits", "bbox_regression", "bbox_ctrness")])
    for theirs, ours in zip(*grads):
        assert ours.abs().sum() > 0
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-7)


def _freeze_batchnorm(model):
    """Training mode, but BatchNorm on running statistics, so that two models agree."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()
    return model


def test_end_to_end_through_from_torchvision(tv):
    """fcos_lib's model built from torchvision's, in training mode: the same loss dict."""
    ours = _freeze_batchnorm(from_torchvision(tv))
    _freeze_batchnorm(tv)
    try:
        images, targets = random_batch(4)
        tv_losses, _ = tv_run(tv, images, targets)
        with torch.no_grad():
            losses = ours(images, targets)
    finally:
        tv.train()
    assert set(losses) == {*KEYS, "total"}
    for key in KEYS:
        assert losses[key].item() == pytest.approx(tv_losses[key].item(), rel=1e-4, abs=1e-5)


def test_area_ties_differ_from_torchvision_as_documented(tv):
    """torchvision ranks boxes by 1e8 - area in float32, which cannot tell areas 4 px² apart
    (float32 spacing is 8 at 1e8): it keeps the first box; we keep the truly smaller one."""
    big, small = torch.tensor([[60.0, 60, 66, 66]]), torch.tensor([[61.0, 60, 66, 66.8]])
    big_area, small_area = 36.0, 5.0 * 6.8
    key = torch.tensor([1e8 - big_area, 1e8 - small_area], dtype=torch.float32)
    assert key[0] == key[1]  # the quantization, shown
    images = torch.zeros(1, 3, H, W)
    targets = [{"boxes": torch.cat([big, small]), "labels": torch.tensor([0, 1])}]
    _, cap = tv_run(tv, images, targets)
    outputs = our_layout(cap["head"], list(tv.backbone(images).values()), cap["anchors"])
    boxes, labels = pad_targets(targets, C)
    ours = assign_targets(boxes, labels, outputs["locations"], outputs["strides"],
                          default_size_ranges(outputs["strides"]), 1.5)
    shared = (ours >= 0) & (cap["matched"] >= 0)
    assert shared.any()
    assert (cap["matched"][shared] == 0).all() and (ours[shared] == 1).all()


def toy_outputs(gen, batch=2, num_classes=3, height=64, width=64, strides=(8, 16, 32),
                offset=0.5):
    """Random raw outputs in fcos_lib's layout, for the course configuration."""
    out = {k: [] for k in ("cls_logits", "box_deltas", "centerness", "locations")}
    for s in strides:
        rows, cols = math.ceil(height / s), math.ceil(width / s)
        ys, xs = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
        out["locations"].append((torch.stack([xs, ys], -1).reshape(-1, 2) + offset) * s)
        n = rows * cols
        out["cls_logits"].append(torch.randn(batch, n, num_classes, generator=gen))
        out["box_deltas"].append(torch.rand(batch, n, 4, generator=gen) * 3)
        out["centerness"].append(torch.randn(batch, n, generator=gen))
    out["strides"] = list(strides)
    return out


def test_l1_centerness_and_focal_by_definition():
    """Course configuration (P3-P5, cell centres, no center sampling, L1), each loss
    recomputed location by location from its definition."""
    gen = torch.Generator().manual_seed(0)
    out = toy_outputs(gen)
    targets = [{"boxes": torch.tensor([[10.0, 20, 50, 44], [0, 0, 64, 64]]),
                "labels": torch.tensor([2, 0])},
               {"boxes": torch.tensor([[30.0, 5, 41, 17]]), "labels": torch.tensor([1])}]
    losses = fcos_loss(out, targets)  # the defaults: l1, no center sampling, paper ranges
    boxes, labels = pad_targets(targets, 3)
    matched = assign_targets(boxes, labels, out["locations"], out["strides"],
                             default_size_ranges(out["strides"]))
    locations = torch.cat(out["locations"])
    strides = torch.cat([torch.full((len(p),), float(s))
                         for p, s in zip(out["locations"], out["strides"])])
    deltas, ctr = torch.cat(out["box_deltas"], 1), torch.cat(out["centerness"], 1)
    logits = torch.cat(out["cls_logits"], 1)
    l1 = bce = 0.0
    one_hot = torch.zeros_like(logits)
    positives = 0
    for b in range(2):
        for i in range(len(locations)):
            m = int(matched[b, i])
            if m < 0:
                continue
            positives += 1
            (x, y), s = locations[i].tolist(), strides[i].item()
            x1, y1, x2, y2 = boxes[b, m].tolist()
            ltrb = torch.tensor([x - x1, y - y1, x2 - x, y2 - y]) / s
            l1 += (deltas[b, i] - ltrb).abs().mean().item()
            c = math.sqrt(min(ltrb[0], ltrb[2]) / max(ltrb[0], ltrb[2])
                          * min(ltrb[1], ltrb[3]) / max(ltrb[1], ltrb[3]))
            p = torch.sigmoid(ctr[b, i]).item()
            bce += -(c * math.log(p) + (1 - c) * math.log(1 - p))
            one_hot[b, i, labels[b, m]] = 1.0
    assert positives > 20
    focal = sigmoid_focal_loss(logits, one_hot, alpha=0.25, gamma=2, reduction="sum").item()
    assert losses["bbox_regression"].item() == pytest.approx(l1 / positives, rel=1e-5)
    assert losses["bbox_ctrness"].item() == pytest.approx(bce / positives, rel=1e-5)
    assert losses["classification"].item() == pytest.approx(focal / positives, rel=1e-5)


def test_no_boxes_anywhere_and_gradients_flow():
    gen = torch.Generator().manual_seed(1)
    out = toy_outputs(gen)
    for level in out["cls_logits"] + out["box_deltas"] + out["centerness"]:
        level.requires_grad_()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = fcos_loss(out, empty, box_loss="giou", center_sampling_radius=1.5)
    # No positives: the normalizer is 1, the box terms are 0, the focal term is the plain sum.
    all_logits = torch.cat(out["cls_logits"], 1)
    expected = sigmoid_focal_loss(all_logits, torch.zeros_like(all_logits), reduction="sum")
    assert losses["classification"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert losses["bbox_regression"].item() == 0 and losses["bbox_ctrness"].item() == 0
    losses["total"].backward()
    assert all(g.grad is not None for g in out["cls_logits"])
    assert out["cls_logits"][0].grad.abs().sum() > 0


def focal_inputs(gen, dtype=torch.float32):
    """Per-level logits laid out as the head makes them (a permuted NCHW map, not contiguous),
    with extreme values, and labels with about one positive location in eight."""
    shapes = [(6, 10), (3, 5), (1, 1)]
    levels = []
    for h, w in shapes:
        nchw = torch.randn(2, C, h, w, generator=gen, dtype=dtype) * 4 - 3
        levels.append(nchw.permute(0, 2, 3, 1).flatten(1, 2))                # (2, h·w, C)
    extremes = torch.tensor([-200.0, -100, -88, -30, 17, 30, 88, 100, 200], dtype=dtype)
    levels[0][0, :len(extremes), 0] = extremes
    levels[0][1, :len(extremes), 1] = extremes
    total = sum(h * w for h, w in shapes)
    labels = torch.randint(0, C, (2, total), generator=gen)
    labels[torch.rand(2, total, generator=gen) > 0.125] = -1
    labels[1, :len(extremes)] = 1  # extreme logits on positives, at their own class
    return levels, labels


def torchvision_focal(levels, labels, alpha=0.25, gamma=2.0):
    """torchvision's focal loss on the concatenated logits and the explicit one-hot targets."""
    logits = torch.cat(levels, 1)
    one_hot = torch.zeros_like(logits)
    img, loc = (labels >= 0).nonzero(as_tuple=True)
    one_hot[img, loc, labels[img, loc]] = 1.0
    return sigmoid_focal_loss(logits, one_hot, alpha=alpha, gamma=gamma, reduction="sum")


@pytest.mark.parametrize("piece", [None, 7])  # None: the default split; 7: many small pieces
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.0, 0.0), (1.0, 1.5), (0.5, 0.5)])
def test_focal_loss_equals_torchvision(monkeypatch, piece, alpha, gamma):
    """Value and gradient equal torchvision's in float64 (the reference; float32 rounds both
    implementations' tiny background gradients differently), layout of the gradient kept."""
    if piece is not None:
        monkeypatch.setattr(losses_module, "_CPU_PIECE", piece)
    levels, labels = focal_inputs(torch.Generator().manual_seed(5))
    reference = [lv.detach().double().requires_grad_() for lv in levels]
    expected = torchvision_focal(reference, labels, alpha, gamma)
    expected_grads = torch.autograd.grad(expected, reference)

    leaves = [lv.detach().clone().requires_grad_() for lv in levels]
    loss = focal_loss(leaves, labels, alpha=alpha, gamma=gamma)
    grads = torch.autograd.grad(loss, leaves)  # as returned by the backward, before any copy
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    with torch.no_grad():  # the path without gradients, as in evaluation
        value = focal_loss(levels, labels, alpha=alpha, gamma=gamma).item()
        assert value == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    for ours, theirs, leaf in zip(grads, expected_grads, leaves):
        assert ours.stride() == leaf.stride()  # the head's layout, not a contiguous copy
        # With gamma < 1, torchvision's gradient is NaN where p^gamma meets p = 0; ours is not.
        assert torch.isfinite(ours).all()
        finite = torch.isfinite(theirs)
        torch.testing.assert_close(ours.double()[finite], theirs[finite], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (0.0, 0.0), (1.0, 1.5), (0.5, 5.0)])
def test_plain_focal_loss_equals_the_fast_one_and_torchvision(alpha, gamma):
    """The formula as notebook 05 teaches it, the fast version training runs, and torchvision
    on its one-hot targets: one value and one gradient (float64)."""
    levels, labels = focal_inputs(torch.Generator().manual_seed(6), torch.float64)
    values, grads = [], []
    for fn in (flat(focal_loss_plain), focal_loss, torchvision_focal):
        leaves = [lv.detach().clone().requires_grad_() for lv in levels]
        value = fn(leaves, labels, alpha, gamma)
        values.append(value.item())
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, leaves)]))
    assert values[0] == pytest.approx(values[1], rel=1e-9)   # plain == fast
    assert values[0] == pytest.approx(values[2], rel=1e-9)   # plain == torchvision
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-7, atol=1e-12)
    # and it is the focal loss: with a wrong alpha or gamma the value moves
    assert flat(focal_loss_plain)(levels, labels, 1 - alpha, gamma).item() != pytest.approx(
        values[0]) or alpha == 0.5
    assert flat(focal_loss_plain)(levels, labels, alpha, gamma + 1).item() != pytest.approx(
        values[0])


def test_focal_loss_gradient_by_finite_differences():
    """The hand-written backward, in float64, against torch.autograd.gradcheck; other alpha
    and gamma too."""
    levels, labels = focal_inputs(torch.Generator().manual_seed(6), dtype=torch.float64)
    levels = [lv.clamp(-20, 20).detach().requires_grad_() for lv in levels]
    for alpha, gamma in ((0.25, 2.0), (0.5, 1.5)):
        assert torch.autograd.gradcheck(
            lambda *xs, a=alpha, g=gamma: focal_loss(list(xs), labels, alpha=a, gamma=g), levels)


def test_focal_loss_backward_twice_and_first_order_only():
    levels, labels = focal_inputs(torch.Generator().manual_seed(8))
    leaves = [lv.detach().clone().requires_grad_() for lv in levels]
    loss = focal_loss(leaves, labels)
    first = torch.autograd.grad(loss, leaves, retain_graph=True)
    second = torch.autograd.grad(loss, leaves)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.autograd.grad(loss, leaves)
    # First order only: the gradient carries no graph, so no gradient penalty through it.
    grads = torch.autograd.grad(focal_loss(leaves, labels), leaves, create_graph=True)
    assert not any(g.requires_grad for g in grads)


def test_focal_loss_explains_bad_arguments():
    levels, labels = focal_inputs(torch.Generator().manual_seed(7))
    with pytest.raises(ValueError, match=r"labels \(2, 75\) for logits of 76 locations"):
        focal_loss(levels, labels[:, :-1])
    with pytest.raises(ValueError, match="labels are torch.float32: pass class indices"):
        focal_loss(levels, labels.float())
    with pytest.raises(ValueError, match=f"labels run from -1 to {C}: classes are 0 to {C - 1}"):
        focal_loss(levels, torch.where(labels == 1, C, labels))
    with pytest.raises(ValueError, match=r"alpha=-1.0: must be a number in \[0, 1\]"):
        focal_loss(levels, labels, alpha=-1.0)
    with pytest.raises(ValueError, match="gamma=-0.5: must be a number >= 0"):
        focal_loss(levels, labels, gamma=-0.5)


def test_bad_arguments_are_explained():
    out = toy_outputs(torch.Generator().manual_seed(2))
    t = [{"boxes": torch.tensor([[0.0, 0, 9, 9]]), "labels": torch.tensor([0])}] * 2
    with pytest.raises(ValueError, match="box_loss='iou'"):
        fcos_loss(out, t, box_loss="iou")
    with pytest.raises(ValueError, match="2 size ranges for 3 levels"):
        fcos_loss(out, t, size_ranges=[(0, 64), (64, math.inf)])


def _rank_inputs(rank):
    """Different data per process: rank 0 one box, rank 1 two."""
    out = toy_outputs(torch.Generator().manual_seed(rank))
    boxes = torch.tensor([[10.0, 20, 50, 44], [0, 0, 64, 64]])[: rank + 1]
    return out, [{"boxes": boxes, "labels": torch.arange(rank + 1)}] * 2


def _distributed_worker(rank, world, init_file, result_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        positive = torch.zeros(2, 10, dtype=torch.bool)
        positive.view(-1)[: 3 * (rank + 1)] = True           # rank 0: 3 positives, rank 1: 6
        losses = fcos_loss(*_rank_inputs(rank))
        torch.save({"normalizer": num_positives(positive).item(),
                    "losses": {k: v.item() for k, v in losses.items()}},
                   os.path.join(result_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_positive_count_is_averaged_across_processes(tmp_path):
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    results = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    assert [r["normalizer"] for r in results] == [4.5, 4.5]
    # Each rank's losses are its sums divided by the mean count over ranks, not its own count.
    counts = []
    for rank in range(2):
        out, t = _rank_inputs(rank)
        boxes, labels = pad_targets(t, 3)
        counts.append((assign_targets(boxes, labels, out["locations"], out["strides"],
                                      default_size_ranges(out["strides"])) >= 0).sum().item())
    assert counts[0] != counts[1]
    mean = sum(counts) / 2
    for rank in range(2):
        alone = fcos_loss(*_rank_inputs(rank))  # not distributed: divided by its own count
        for key in KEYS:
            expected = alone[key].item() * counts[rank] / mean
            assert results[rank]["losses"][key] == pytest.approx(expected, rel=1e-5)
    assert num_positives(torch.zeros(3, dtype=torch.bool)).item() == 1.0
