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


@pytest.fixture(scope="module")
def batch():
    data = ShapesDataset("train", image_size=64, length=4)
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
