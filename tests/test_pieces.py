"""The student's pieces inside the detector: the exercises' functions, swapped in with
``model.use(from_student(...))``, give the library's losses and detections; a piece that is
wrong changes them, so the swap is real."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from fcos_lib.data import ShapesDataset, collate
from fcos_lib.model import FCOS
from fcos_lib.pieces import Pieces, from_student


def assign(levels, boxes, size_ranges):
    """Notebook 05's contract, written plainly."""
    owner = []
    for points, (lo, hi) in zip(levels, size_ranges):
        for x, y in points.tolist():
            best, best_area = -1, math.inf
            for m, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
                d = (x - x0, y - y0, x1 - x, y1 - y)
                area = (x1 - x0) * (y1 - y0)
                if min(d) > 0 and lo < max(d) < hi and area < best_area:
                    best, best_area = m, area
            owner.append(best)
    return torch.tensor(owner)


def focal_loss(logits, labels, alpha=0.25, gamma=2.0):
    target = torch.zeros_like(logits)
    target[labels >= 0, labels[labels >= 0]] = 1.0
    p = logits.sigmoid()
    p_t = torch.where(target == 1, p, 1 - p)
    alpha_t = torch.where(target == 1, alpha, 1 - alpha)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def nms(boxes, scores, labels, threshold):
    keep = []
    for i in scores.argsort(descending=True).tolist():
        rivals = [k for k in keep if labels[k] == labels[i]]
        if rivals and (box_iou(boxes[i:i + 1], boxes[rivals]) > threshold).any():
            continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


def detect_image(cls_logits, box_deltas, centerness, locations, strides, image_size,
                 score_thresh, nms_thresh, topk, max_detections):
    """Notebook 07's contract, written plainly: candidates level by level, then the nms above."""
    height, width = image_size
    found = []                                                  # (score, label, box)
    for logits, deltas, ctr, points, stride in zip(cls_logits, box_deltas, centerness,
                                                   locations, strides):
        score = (logits.sigmoid() * ctr.sigmoid()[:, None]).sqrt()
        level = [(score[i, k], k, i) for i, k in (score > score_thresh).nonzero().tolist()]
        for sc, k, i in sorted(level, key=lambda c: -c[0].item())[:topk]:
            (x, y), (l, t, r, b) = points[i].tolist(), (deltas[i] * stride).tolist()
            box = [min(max(x - l, 0), width), min(max(y - t, 0), height),
                   min(max(x + r, 0), width), min(max(y + b, 0), height)]
            found.append((sc, k, box))
    boxes = torch.tensor([f[2] for f in found]).reshape(-1, 4)
    scores = torch.stack([f[0] for f in found]) if found else torch.zeros(0)
    labels = torch.tensor([f[1] for f in found], dtype=torch.long)
    keep = nms(boxes, scores, labels, nms_thresh)[:max_detections]
    return [boxes[keep], scores[keep], labels[keep]]


@pytest.fixture(scope="module")
def batch():
    data = ShapesDataset("train", image_size=64, length=4)
    torch.manual_seed(0)         # the training split's flips: the same batch in any test order
    return collate([data[i] for i in range(4)])


def test_the_students_pieces_give_the_librarys_losses_and_detections(batch):
    images, targets = batch
    torch.manual_seed(0)
    library = FCOS(6).train()
    student = FCOS(6).train()
    student.load_state_dict(library.state_dict())
    student.use(from_student(assign=assign, focal_loss=focal_loss, nms=nms))
    ours, theirs = student(images, targets), library(images, targets)
    for key in theirs:
        assert ours[key].item() == pytest.approx(theirs[key].item(), rel=1e-5), key
    mine, lib = student.predict(images), library.predict(images)   # scores above 0.05
    assert sum(len(p["boxes"]) for p in lib) > 0
    for a, b in zip(mine, lib):
        assert torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(a["boxes"], b["boxes"])


def test_a_wrong_piece_changes_what_the_model_computes(batch):
    images, targets = batch
    torch.manual_seed(0)
    model = FCOS(6).train()
    right = model(images, targets)
    model.use(from_student(assign=lambda levels, boxes, ranges: torch.full(
        (sum(len(p) for p in levels),), -1)))
    wrong = model(images, targets)
    assert right["bbox_regression"] > 0 and wrong["bbox_regression"] == 0
    model.use(from_student(nms=lambda boxes, scores, labels, t: torch.zeros(0, dtype=torch.long)))
    assert all(len(p["boxes"]) == 0 for p in model.predict(images))
    model.use(Pieces())
    assert model(images, targets)["total"].item() == pytest.approx(right["total"].item())


def test_the_students_assign_refuses_center_sampling_and_use_refuses_a_function(batch):
    images, targets = batch
    model = FCOS(6, center_sampling_radius=1.5).use(from_student(assign=assign))
    with pytest.raises(ValueError, match="no center sampling: train with "
                                         "center_sampling_radius=None"):
        model(images, targets)
    with pytest.raises(ValueError, match="use\\(\\) takes a fcos_lib.pieces.Pieces"):
        model.use(assign)


def test_train_uses_the_pieces(tmp_path):
    """The exercises' solutions train exactly the detector of the library's plain pieces (the
    formulas as written: same losses, same weights, bit for bit), and within rounding the one
    of the fast pieces, whose focal loss sums in another order."""
    from fcos_lib.config import get_preset
    from fcos_lib.losses import focal_loss_plain
    from fcos_lib.runlog import read_metrics
    from fcos_lib.targets import assign_targets_plain
    from fcos_lib.train import train

    settings = dict(image_size=64, batch_size=4, steps=4, warmup_steps=1, log_every=1,
                    checkpoint_every=4, eval_images=4, device="cpu",
                    dataset_kwargs={"length": 8})
    runs, weights = {}, {}
    for name, pieces in (("library", None),
                         ("plain", from_student(assign=assign_targets_plain,
                                               focal_loss=focal_loss_plain)),
                         ("student", from_student(assign=assign, focal_loss=focal_loss, nms=nms))):
        cfg = get_preset("shapes", out=str(tmp_path / name), **settings)
        train(cfg, pieces=pieces, progress=False)
        runs[name] = [r["total"] for r in read_metrics(cfg.out) if "total" in r]
        weights[name] = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["model"]
    assert len(runs["student"]) == 4
    assert runs["student"] == runs["plain"]
    assert all(torch.equal(weights["student"][k], weights["plain"][k]) for k in weights["plain"])
    assert runs["student"] == pytest.approx(runs["library"], rel=1e-4)


def test_the_students_detection_gives_the_librarys_detections(batch):
    """model.use(from_student(detect=...)) runs the per-image exercise image by image: the
    same boxes, scores and labels as the library's batch detect, also through
    ``per_image(detect_plain)``; a wrong one changes them; other pieces stay the library's."""
    from fcos_lib.inference import detect_plain

    images, _ = batch
    torch.manual_seed(0)
    model = FCOS(6).eval()
    with torch.no_grad():    # logits near 0: many candidates above 0.3, NMS has work to do
        model.head.cls_logits.bias.fill_(0.0)
    library = model.predict(images, score_thresh=0.3, detections_per_img=50)
    assert sum(len(p["boxes"]) for p in library) > 20
    for student in (detect_image, detect_plain):
        model.use(from_student(detect=student))
        assert model.pieces.nms is Pieces().nms and model.pieces.assign is Pieces().assign
        mine = model.predict(images, score_thresh=0.3, detections_per_img=50)
        assert len(mine) == len(library)
        for a, b in zip(mine, library):
            assert set(a) == {"boxes", "scores", "labels"}      # no levels from the exercise
            torch.testing.assert_close(a["boxes"], b["boxes"])
            torch.testing.assert_close(a["scores"], b["scores"])
            assert torch.equal(a["labels"], b["labels"])
    model.use(from_student(detect=lambda *a: [t[:1] for t in detect_plain(*a)]))
    assert all(len(p["boxes"]) <= 1 for p in model.predict(images, score_thresh=0.3))
    with pytest.raises(ValueError, match="always puts centerness in the score"):
        model.predict(images, centerness_in_score=False)
    model.use(Pieces())
    again = model.predict(images, score_thresh=0.3, detections_per_img=50)
    assert all(torch.equal(a["boxes"], b["boxes"]) for a, b in zip(again, library))


def head_level(cls_stem, box_stem, cls_logits, box_deltas, centerness, features):
    """Notebook 04's contract, written another way: (B, K, H, W) -> (B, H·W, K) by flatten."""
    c, b = cls_stem(features), box_stem(features)
    rows = lambda m: m.flatten(2).transpose(1, 2)                         # noqa: E731
    return [rows(cls_logits(c)), rows(box_deltas(b).clamp(min=0)), centerness(b).flatten(1)]


@pytest.mark.parametrize("preset", ["tiny", "course"])
def test_the_students_head_gives_the_librarys_outputs_losses_and_gradients(batch, preset):
    """model.use(from_student(head=...)) runs the one-level exercise on each level with the
    model's own head modules: the outputs, losses and gradients of FCOSHead.forward (with
    the library's plain head_level_plain too); a wrong head changes them."""
    from fcos_lib.head import head_level_plain

    images, targets = batch
    torch.manual_seed(0)
    library = FCOS.from_preset(preset, num_classes=6).train()
    with torch.no_grad():                             # weights that make every output matter
        for p in library.head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    expected = library(images)
    losses = library(images, targets)
    losses["total"].backward()
    grads = {n: p.grad.clone() for n, p in library.named_parameters() if p.grad is not None}
    for student in (head_level, head_level_plain):
        library.zero_grad()
        library.use(from_student(head=student))
        outputs = library(images)
        for key in ("cls_logits", "box_deltas", "centerness"):
            assert len(outputs[key]) == len(expected[key])
            for mine, theirs in zip(outputs[key], expected[key]):
                assert torch.equal(mine, theirs), key
        mine = library(images, targets)
        for key in losses:
            assert mine[key].item() == pytest.approx(losses[key].item(), rel=1e-6), key
        mine["total"].backward()
        for name, grad in grads.items():
            torch.testing.assert_close(dict(library.named_parameters())[name].grad, grad)
    library.use(from_student(head=lambda *a: head_level(*a)[:2] + [-head_level(*a)[2]]))
    assert not torch.equal(library(images)["centerness"][0], expected["centerness"][0])


def test_the_students_head_refuses_the_papers_head(batch):
    images, _ = batch
    for options in (dict(box_activation="exp"), dict(centerness_on="cls")):
        model = FCOS(6, **options).use(from_student(head=head_level))
        with pytest.raises(ValueError, match="ReLU distances and centerness on the box stem"):
            model(images)


def fcos_losses(cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets, positive):
    """Notebook 05's loss assembly, written with masks over every location."""
    n = positive.sum().clamp(min=1)
    cls = focal_loss(cls_logits.reshape(-1, cls_logits.shape[-1]), labels.reshape(-1))
    pos = positive.float()
    box = ((box_deltas - box_targets).abs().mean(-1) * pos).sum()
    ctr = F.binary_cross_entropy_with_logits(centerness, ctr_targets, reduction="none")
    return [cls / n, box / n, (ctr * pos).sum() / n]


@pytest.mark.parametrize("empty_image", [False, True])
def test_the_students_losses_give_the_librarys_losses_and_gradients(batch, empty_image):
    """model.use(from_student(losses=...)) computes the three losses with the exercise's
    function on dense per-location targets (pieces.dense): the library's loss_terms, values
    and gradients, with the plain loss_terms_plain too, also for an image without objects."""
    from fcos_lib.losses import loss_terms_plain

    images, targets = batch
    if empty_image:
        targets = [targets[0], {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0).long()},
                   *targets[2:]]
    torch.manual_seed(0)
    model = FCOS(6).train()
    with torch.no_grad():
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    expected = model(images, targets)
    expected["total"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert expected["bbox_regression"] > 0
    for student in (fcos_losses, loss_terms_plain):
        model.zero_grad()
        model.use(from_student(losses=student))
        mine = model(images, targets)
        for key in expected:
            assert mine[key].item() == pytest.approx(expected[key].item(), rel=1e-5), key
        mine["total"].backward()
        # float32 sums in another order: over 40 batches (flips and an empty image), 1.4e-6 at
        # most beyond rtol, so atol 1e-5; a wrong loss is off by far more
        for name, grad in grads.items():
            torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad,
                                       rtol=1e-4, atol=1e-5)
    model.use(from_student(losses=lambda *a: [t * 2 for t in loss_terms_plain(*a)]))
    assert model(images, targets)["total"].item() == pytest.approx(
        2 * expected["total"].item(), rel=1e-5)


def test_the_students_losses_refuse_giou_and_train(batch, tmp_path):
    from fcos_lib.config import get_preset
    from fcos_lib.runlog import read_metrics
    from fcos_lib.train import train

    images, targets = batch
    with pytest.raises(ValueError, match="your losses use the L1 box loss, the model 'giou'"):
        FCOS(6, box_loss="giou").use(from_student(losses=fcos_losses))(images, targets)
    settings = dict(image_size=64, batch_size=4, steps=3, warmup_steps=1, log_every=1,
                    checkpoint_every=3, eval_images=4, device="cpu",
                    dataset_kwargs={"length": 8})
    runs = {}
    for name, pieces in (("library", None), ("student", from_student(losses=fcos_losses))):
        cfg = get_preset("shapes", out=str(tmp_path / name), **settings)
        train(cfg, pieces=pieces, progress=False)
        runs[name] = [r["total"] for r in read_metrics(cfg.out) if "total" in r]
    assert len(runs["student"]) == 3
    assert runs["student"] == pytest.approx(runs["library"], rel=1e-4)
