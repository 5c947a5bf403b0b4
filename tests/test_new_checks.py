"""The checks of the pieces that tie the detector together (notebook 04's head pass, notebook
05's loss assembly, notebook 07's detection from raw outputs), tested as tests/test_checks.py
tests the others: each passes the library's own function, catches the mistakes students make
with the hint that names them, and fails wrong versions of every kind (types, edited inputs,
empty inputs). The wrong versions here are written for these tests, not taken from the checks'
own list."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from checking import failed as check_failed
from checking import type_named_before_maths
from torchvision.ops import box_iou, nms, sigmoid_focal_loss

from fcos_lib import checks
from fcos_lib.checks.core import STUB_MESSAGE, example
from fcos_lib.head import head_level_plain
from fcos_lib.inference import detect_plain
from fcos_lib.losses import loss_terms_plain

NEW = ["check_head", "check_losses", "check_detect"]


def failed(check, fn, capsys) -> str:
    """The report of a check that must fail (these checks show more inputs: 20 lines)."""
    return check_failed(check, fn, capsys, lines=20)


# ------------------------------------------------------------------ the head (notebook 04)

def head_einsum(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x, *, ctr_on_cls=False,
                box_on_cls=False, cls_on_box=False, no_relu=False, relu_all=False,
                sigmoid=False, columns=False, no_permute=False):
    """One level, flattened with flatten(2).transpose(1, 2); the flags make the mistakes."""
    c, b = cls_stem(x), box_stem(x)
    logits = cls_conv(b if cls_on_box else c)
    deltas = box_conv(c if box_on_cls else b)
    ctr = ctr_conv(c if ctr_on_cls else b)
    if not no_relu:
        deltas = deltas.clamp(min=0)
    if relu_all:
        logits, ctr = logits.clamp(min=0), ctr.clamp(min=0)
    if sigmoid:
        logits = logits.sigmoid()

    def flat(m):
        if columns:
            m = m.transpose(2, 3)
        if no_permute:
            return m.reshape(m.shape[0], m.shape[2] * m.shape[3], m.shape[1])
        return m.flatten(2).transpose(1, 2)

    return [flat(logits), flat(deltas), flat(ctr).squeeze(-1)]


def head_variant(**how):
    return lambda *a: head_einsum(*a, **how)


# ------------------------------------------------------------------ the losses (notebook 05)

def losses_tv(cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets, positive, *,
              per_location=False, unclamped=False, per_image=False, sum_sides=False,
              squared=False, box_everywhere=False, ctr_everywhere=False, cls_positives=False,
              cls_mean=False, ctr_sigmoid=False, no_division=False):
    """torchvision's focal loss on one-hot targets, masks instead of indexing; the flags make
    the mistakes."""
    one_hot = F.one_hot(labels.clamp(min=0), cls_logits.shape[-1]).float() * positive[..., None]
    focal = sigmoid_focal_loss(cls_logits, one_hot, reduction="none").sum(-1)    # (B, L)
    if cls_positives:
        focal = focal * positive
    pos = positive.float()
    box_mask = torch.ones_like(pos) if box_everywhere else pos
    ctr_mask = torch.ones_like(pos) if ctr_everywhere else pos
    diff = box_deltas - box_targets
    per_side = diff ** 2 if squared else diff.abs()
    box = (per_side.sum(-1) if sum_sides else per_side.mean(-1)) * box_mask       # (B, L)
    if ctr_sigmoid:
        bce = F.binary_cross_entropy(centerness.sigmoid(), ctr_targets, reduction="none")
    else:
        bce = F.binary_cross_entropy_with_logits(centerness, ctr_targets, reduction="none")
    ctr = bce * ctr_mask
    if per_image and len(labels):
        n = pos.sum(1).clamp(min=1)[:, None]
        return [(x / n).sum(1).mean() for x in (focal, box, ctr)]
    if per_location:
        n = max(labels.numel(), 1)
    elif no_division:
        n = 1
    else:
        n = pos.sum() if unclamped else pos.sum().clamp(min=1)
    cls = focal.sum() / (max(cls_logits.numel(), 1) if cls_mean else 1)
    return [cls / n, box.sum() / n, ctr.sum() / n]


def losses_variant(**how):
    return lambda *a: losses_tv(*a, **how)


# ------------------------------------------------------------------ detection (notebook 07)

def detect_flat(cls_logits, box_deltas, centerness, locations, strides, image_size,
                score_thresh=0.05, nms_thresh=0.6, topk=1000, max_detections=100, *,
                product=False, no_ctr=False, pixels=True, clip=True, swap_clip=False,
                agnostic=False, global_topk=False, at_least=False, argmax=False,
                cut_first=False, nms_per_level=False):
    """One image, all levels flattened into one table first; torchvision's plain ``nms``
    class by class. The flags make the mistakes."""
    rows = []                                          # (score, label, level, box)
    for level, (c, d, z, p, s) in enumerate(zip(cls_logits, box_deltas, centerness,
                                                locations, strides)):
        prob = c.sigmoid() if no_ctr else c.sigmoid() * z.sigmoid()[:, None]
        score = prob if product else prob.sqrt()
        if argmax:
            score = torch.where(torch.nn.functional.one_hot(score.argmax(1), c.shape[1]) > 0,
                                score, torch.zeros(()))
        ok = score >= score_thresh if at_least else score > score_thresh
        picked = [(float(score[i, k]), k, level, i) for i, k in ok.nonzero().tolist()]
        picked.sort(key=lambda r: -r[0])
        if not global_topk:
            picked = picked[:topk]
        for sc, k, lv, i in picked:
            h, w = image_size
            scale = s if pixels else 1
            x, y = p[i].tolist()
            l, t, r, b = (d[i] * scale).tolist()
            box = [x - l, y - t, x + r, y + b]
            if clip:
                hx, wy = (h, w) if swap_clip else (w, h)
                box = [min(max(box[0], 0), hx), min(max(box[1], 0), wy),
                       min(max(box[2], 0), hx), min(max(box[3], 0), wy)]
            rows.append((sc, k, lv, box))
    rows.sort(key=lambda r: -r[0])
    if global_topk:
        rows = rows[:topk]
    if cut_first:
        rows = rows[:max_detections]
    boxes = torch.tensor([r[3] for r in rows], dtype=torch.float32).reshape(-1, 4)
    scores = torch.tensor([r[0] for r in rows], dtype=torch.float32)
    labels = torch.tensor([r[1] for r in rows], dtype=torch.long)
    levels = torch.tensor([r[2] for r in rows], dtype=torch.long)
    keep = []
    groups = torch.zeros_like(labels) if agnostic else labels
    groups = groups * 10 + levels if nms_per_level else groups
    for g in groups.unique().tolist():
        index = (groups == g).nonzero()[:, 0]
        keep += index[nms(boxes[index], scores[index], nms_thresh)].tolist()
    keep = sorted(keep, key=lambda i: -scores[i].item())[:max_detections]
    keep = torch.tensor(keep, dtype=torch.long)
    return [boxes[keep], scores[keep], labels[keep]]


def variant(**how):
    return lambda *a: detect_flat(*a, **how)


CHECKS = {
    "check_head": (head_level_plain, [
        (head_variant(ctr_on_cls=True), "centerness is computed from the BOX stem"),
        (head_variant(box_on_cls=True), "the distances come from the box stem"),
        (head_variant(cls_on_box=True), "class logits come from the classification stem"),
        (head_variant(no_relu=True), "the distances go through a ReLU"),
        (head_variant(relu_all=True), "only the distances get the ReLU"),
        (head_variant(sigmoid=True), "class LOGITS, not probabilities"),
        (head_variant(columns=True), "flatten row by row, x fastest"),
        (head_variant(no_permute=True), "reshape alone mixes channels and locations"),
    ]),
    "check_losses": (loss_terms_plain, [
        (losses_variant(per_location=True), "not by all locations"),
        (losses_variant(no_division=True), "divided by the number of positives of the batch"),
        (losses_variant(unclamped=True), "at least 1"),
        (losses_variant(per_image=True), "not image by image"),
        (losses_variant(sum_sides=True), "averages the L1 error over the four sides"),
        (losses_variant(squared=True), "not their squares"),
        (losses_variant(box_everywhere=True), "box loss counts the POSITIVE locations only"),
        (losses_variant(ctr_everywhere=True), "centerness loss counts the POSITIVE"),
        (losses_variant(cls_positives=True), "counts EVERY location"),
        (losses_variant(cls_mean=True), "SUM over every location and class"),
        (losses_variant(ctr_sigmoid=True), "binary_cross_entropy_with_logits"),
    ]),
    "check_detect": (detect_plain, [
        (variant(product=True), "geometric mean"),
        (variant(no_ctr=True), "put the centerness in the score"),
        (variant(pixels=False), "the distances are in strides"),
        (variant(clip=False), "clip the boxes to the image"),
        (variant(swap_clip=True), "image_size is (H, W)"),
        (variant(agnostic=True), "NMS runs class by class"),
        (variant(global_topk=True), "top-k is per level"),
        (variant(at_least=True), "strictly ABOVE the threshold"),
        (variant(argmax=True), "every (location, class) pair is a candidate"),
        (variant(cut_first=True), "AFTER NMS"),
        (variant(nms_per_level=True), "all levels at once"),
    ]),
}


@pytest.mark.parametrize("name, right", [("check_head", head_einsum),
                                         ("check_losses", losses_tv),
                                         ("check_detect", detect_flat)])
def test_the_written_out_versions_are_right(name, right, capsys):
    """The wrong versions above differ from the right one by their flag alone."""
    assert getattr(checks, name)(right) is True
    assert "cases pass." in capsys.readouterr().out


@pytest.mark.parametrize("name", NEW)
def test_the_library_passes(name, capsys):
    right, _ = CHECKS[name]
    assert getattr(checks, name)(right) is True
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: all ") and "cases pass" in out


@pytest.mark.parametrize("name, index", [(n, i) for n in NEW for i in range(len(CHECKS[n][1]))])
def test_a_mistake_is_caught_with_its_hint(name, index, capsys):
    wrong, hint = CHECKS[name][1][index]
    out = failed(getattr(checks, name), wrong, capsys)
    assert "expected" in out and "received" in out
    assert hint in out, out


def test_every_new_check_is_exported_with_its_spec_and_known_mistakes():
    for name in NEW:
        spec = checks.SPECS[name]()
        assert spec.title == name and spec.hint and spec.returns
        assert len(spec.mistakes) >= 3 and len(CHECKS[name][1]) >= 3
        assert all(case.hint or spec.hint for case in spec.cases)
        assert any(len(c.args) and _empty(c.args) for c in spec.cases), name


def _empty(args) -> bool:
    """Whether some tensor among ``args`` (lists included) has no elements."""
    if torch.is_tensor(args):
        return args.numel() == 0
    if isinstance(args, (list, tuple)):
        return any(_empty(a) for a in args)
    return False


@pytest.mark.parametrize("wrong, words", [
    (lambda *a: tuple(detect_plain(*a)), "got a Python tuple"),
    (lambda *a: dict(zip(("boxes", "scores", "labels"), detect_plain(*a))), "a list of 3"),
    (lambda *a: [t.double() if t.is_floating_point() else t for t in detect_plain(*a)],
     "float64"),
    (lambda *a: detect_plain(*a)[:2] + [detect_plain(*a)[2].float()], "got float32"),
    (lambda *a: [t.numpy() for t in detect_plain(*a)], "NumPy"),
    (lambda *a: [t.tolist() for t in detect_plain(*a)], "Python list"),
])
def test_detect_a_wrong_type_is_named_before_any_maths(wrong, words, capsys):
    type_named_before_maths("check_detect", wrong, words, capsys, lines=20)


def test_detect_edited_inputs_are_named(capsys):
    def sigmoid_in_place(cls_logits, *rest):
        for level in cls_logits:
            level.sigmoid_()
            level.logit_()                              # the same numbers, almost
        return detect_plain(cls_logits, *rest)

    assert "changed its input `cls_logits`" in failed(checks.check_detect, sigmoid_in_place,
                                                      capsys)

    def scale_in_place(cls_logits, box_deltas, centerness, locations, strides, *rest):
        for deltas, stride in zip(box_deltas, strides):
            deltas.mul_(stride)
        return detect_plain(cls_logits, [d / s for d, s in zip(box_deltas, strides)],
                            centerness, locations, strides, *rest)

    assert "changed its input `box_deltas`" in failed(checks.check_detect, scale_in_place,
                                                      capsys)

    def strides_popped(cls_logits, box_deltas, centerness, locations, strides, *rest):
        answer = detect_plain(cls_logits, box_deltas, centerness, locations, list(strides),
                              *rest)
        strides.pop()
        return answer

    assert "changed its input `strides`" in failed(checks.check_detect, strides_popped, capsys)


@pytest.mark.parametrize("wrong, words", [
    (lambda *a: detect_plain(*a) if len(detect_plain(*a)[0]) else
     [torch.zeros(0, 4), torch.zeros(0), torch.zeros(0)], "no detections"),
    (lambda *a: detect_plain(*a) if len(detect_plain(*a)[0]) else
     [torch.zeros(1, 4), torch.zeros(1), torch.zeros(1, dtype=torch.long)], "no detections"),
    (lambda c, *a: detect_plain(c, *a) if all(len(x) for x in c) else
     [torch.stack(x) for x in zip(*[detect_plain([l], *[[v[i]] for v in a[:4]], *a[4:])
                                    for i, l in enumerate(c) if len(l)])],
     "no locations"),
])
def test_detect_empty_inputs_are_tried(wrong, words, capsys):
    assert words in failed(checks.check_detect, wrong, capsys)


STUDENT_DETECT = '''
def nms(boxes, scores, labels, iou_threshold):
    raise NotImplementedError("{stub}")

def detect_image(cls_logits, box_deltas, centerness, locations, strides, image_size,
                 score_thresh, nms_thresh, topk, max_detections):
    boxes, scores, labels = [], [], []
    for c, d, z, p, s in zip(cls_logits, box_deltas, centerness, locations, strides):
        score = torch.sqrt(c.sigmoid() * z.sigmoid()[:, None])
        where, label = (score {op} score_thresh).nonzero(as_tuple=True)
        score = score[where, label]
        best = score.argsort(descending=True)[:topk]
        where, label, score = where[best], label[best], score[best]
        box = torch.cat([p[where] - d[where, :2] * s, p[where] + d[where, 2:] * s], 1)
        h, w = image_size
        box = torch.stack([box[:, 0].clamp(0, w), box[:, 1].clamp(0, h),
                           box[:, 2].clamp(0, w), box[:, 3].clamp(0, h)], 1)
        boxes.append(box); scores.append(score); labels.append(label)
    boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
    keep = nms(boxes, scores, labels, nms_thresh)[:max_detections]
    return [boxes[keep], scores[keep], labels[keep]]
'''


@pytest.mark.parametrize("op", [">", ">="])
def test_detect_is_not_hidden_by_the_nms_stub(op, capsys):
    namespace = {"torch": torch}
    exec(STUDENT_DETECT.format(stub=STUB_MESSAGE, op=op), namespace)
    assert checks.check_detect(namespace["detect_image"]) is False
    out = capsys.readouterr().out
    if op == ">":
        cases = len(checks.SPECS["check_detect"]().cases)
        assert f"all {cases} cases pass with the library's nms standing in" in out
    else:
        assert "FAILED on a score exactly at the threshold" in out and "ABOVE" in out
    with pytest.raises(NotImplementedError):                    # the student's own is untouched
        namespace["nms"](torch.zeros(1, 4), torch.zeros(1), torch.zeros(1), 0.5)


def test_detect_with_the_students_own_nms_passes(capsys):
    """Notebook 07's situation: detect_image calls the nms written above it."""
    def student_nms(boxes, scores, labels, t):
        keep = []
        for i in scores.argsort(descending=True).tolist():
            rivals = [k for k in keep if labels[k] == labels[i]]
            if rivals and (box_iou(boxes[i:i + 1], boxes[rivals]) > t).any():
                continue
            keep.append(i)
        return torch.tensor(keep, dtype=torch.long)

    namespace = {"torch": torch, "nms": student_nms}
    exec(STUDENT_DETECT.format(stub=STUB_MESSAGE, op=">"), namespace)
    namespace["nms"] = student_nms
    assert checks.check_detect(namespace["detect_image"]) is True
    assert "standing in" not in capsys.readouterr().out


def test_detect_stub_is_not_done_yet(capsys):
    def stub(*args):
        raise NotImplementedError(STUB_MESSAGE)

    assert checks.check_detect(stub) is False
    assert capsys.readouterr().out.strip() == (
        "check_detect: not done yet (your function still raises NotImplementedError).")


def test_detect_example_is_a_small_real_case():
    lines = example(checks.SPECS["check_detect"]())
    assert lines[0] == "Example (one level, two locations, two classes):"
    assert lines[-1].split()[0] == "returns" and "(shape (3, 4), float32" in lines[-1]


# ------------------------------------------------------------------ the head beyond the maths

@pytest.mark.parametrize("wrong, words", [
    (lambda *a: tuple(head_level_plain(*a)), "got a Python tuple"),
    (lambda *a: [t.double() for t in head_level_plain(*a)], "float64"),
    (lambda *a: head_level_plain(*a)[:2] + [head_level_plain(*a)[2][..., None]],
     "shape (1, 3, 1), expected (1, 3)"),
    (lambda *a: [t.detach().numpy() for t in head_level_plain(*a)], "NumPy"),
    (lambda *a: [torch.cat([t.flatten(1) for t in head_level_plain(*a)], 1)], "a list of 3"),
])
def test_head_a_wrong_type_is_named_before_any_maths(wrong, words, capsys):
    type_named_before_maths("check_head", wrong, words, capsys, lines=20)


def test_head_a_lost_or_wrong_gradient_fails(capsys):
    detached = lambda *a: [t.detach() for t in head_level_plain(*a)]           # noqa: E731
    assert "carries no gradient" in failed(checks.check_head, detached, capsys)

    def no_grad(*a):
        with torch.no_grad():
            return head_level_plain(*a)

    assert "carries no gradient" in failed(checks.check_head, no_grad, capsys)

    def numpy_round_trip(*a):
        return [torch.from_numpy(t.detach().numpy().copy()) for t in head_level_plain(*a)]

    assert "carries no gradient" in failed(checks.check_head, numpy_round_trip, capsys)

    def ctr_detached(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x):
        out = head_level_plain(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x)
        out[2] = ctr_conv(box_stem(x.detach())).flatten(1)          # same values, no gradient
        return out

    out = failed(checks.check_head, ctr_detached, capsys)
    assert "the values are right, but the gradient of input 1 is not" in out


def test_head_an_edited_input_is_named(capsys):
    def relu_in_place(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x):
        x.relu_()
        return head_level_plain(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x)

    out = failed(checks.check_head, relu_in_place, capsys)
    assert "in place" in out

    def scaled_copy(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x):
        answer = head_level_plain(cls_stem, box_stem, cls_conv, box_conv, ctr_conv, x)
        x.data.mul_(2)                               # behind autograd's back
        return answer

    assert "changed its input `features` in place" in failed(checks.check_head, scaled_copy,
                                                             capsys)


def test_head_empty_batch_and_single_cell_are_tried(capsys):
    def view_without_batch(*a):                       # breaks on an empty batch
        out = head_level_plain(*a)
        return [t.view(-1, *t.shape[1:]) if len(t) else t.new_zeros(1, *t.shape[1:])
                for t in out]

    assert "an empty batch" in failed(checks.check_head, view_without_batch, capsys)

    def squeezed(*a):                                  # squeeze() drops a 1-cell map's axis
        return [t.squeeze() if t.shape[1] == 1 else t for t in head_level_plain(*a)]

    assert "a single cell" in failed(checks.check_head, squeezed, capsys)


def test_head_example_is_the_first_case():
    lines = example(checks.SPECS["check_head"]())
    assert lines[0].startswith("Example (one 1 x 3 level")
    assert any(line.strip().startswith("features") and "(shape (1, 2, 1, 3)" in line
               for line in lines)


# ------------------------------------------------------------------ the losses beyond the maths

@pytest.mark.parametrize("wrong, words", [
    (lambda *a: tuple(loss_terms_plain(*a)), "got a Python tuple"),
    (lambda *a: [t.item() for t in loss_terms_plain(*a)], ".item()"),
    (lambda *a: [t.double() for t in loss_terms_plain(*a)], "float64"),
    (lambda *a: [t.reshape(1) for t in loss_terms_plain(*a)], "0-d"),
    (lambda *a: torch.stack(loss_terms_plain(*a)), "a list of 3"),
    (lambda *a: loss_terms_plain(*a) + [sum(loss_terms_plain(*a))], "one of 4"),
])
def test_losses_a_wrong_type_is_named_before_any_maths(wrong, words, capsys):
    type_named_before_maths("check_losses", wrong, words, capsys, lines=20)


def test_losses_a_lost_or_wrong_gradient_fails(capsys):
    detached = lambda *a: [t.detach() for t in loss_terms_plain(*a)]           # noqa: E731
    assert "carries no gradient" in failed(checks.check_losses, detached, capsys)

    def rebuilt(*a):
        return [torch.tensor(t.item()) for t in loss_terms_plain(*a)]

    assert "carries no gradient" in failed(checks.check_losses, rebuilt, capsys)

    def ctr_logits_detached(cls_logits, box_deltas, centerness, *rest):
        out = loss_terms_plain(cls_logits, box_deltas, centerness.detach(), *rest)
        return out

    out = failed(checks.check_losses, ctr_logits_detached, capsys)
    assert "no gradient reaches input 3" in out

    def box_loss_off_the_graph(cls_logits, box_deltas, *rest):
        out = loss_terms_plain(cls_logits, box_deltas, *rest)
        out[1] = out[1].detach() + 0 * box_deltas.sum()
        return out

    out = failed(checks.check_losses, box_loss_off_the_graph, capsys)
    assert "the gradient of input 2 is not" in out


def test_losses_an_edited_input_is_named(capsys):
    def zero_background(cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets,
                        positive):
        answer = loss_terms_plain(cls_logits, box_deltas, centerness, labels, box_targets,
                                  ctr_targets, positive)
        labels.clamp_(min=0)                                       # -1 becomes class 0
        return answer

    assert "changed its input `labels` in place" in failed(checks.check_losses,
                                                           zero_background, capsys)

    def mask_in_place(cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets,
                      positive):
        box_deltas.mul_(positive[..., None])                      # a leaf that needs grad
        return loss_terms_plain(cls_logits, box_deltas, centerness, labels, box_targets,
                                ctr_targets, positive)

    assert "in place" in failed(checks.check_losses, mask_in_place, capsys)


def test_losses_empty_batch_and_no_positives_are_tried(capsys):
    def mean_over_images(*a):                                   # nan on an empty batch
        out = loss_terms_plain(*a)
        return out if len(a[3]) else [t * float("nan") for t in out]

    assert "an empty batch" in failed(checks.check_losses, mean_over_images, capsys)

    def divides_by_positives(*a):                               # right unless none is positive
        out = loss_terms_plain(*a)
        return out if a[6].any() else [t / 0 for t in out]

    assert "no positives at all" in failed(checks.check_losses, divides_by_positives, capsys)


STUDENT_LOSSES = '''
def focal_loss(logits, labels, alpha=0.25, gamma=2.0):
    raise NotImplementedError("{stub}")

def fcos_losses(cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets, positive):
    n = positive.sum().clamp(min={least})
    cls = focal_loss(cls_logits.flatten(0, 1), labels.flatten())
    box = F.l1_loss(box_deltas[positive], box_targets[positive], reduction="sum") / 4
    ctr = F.binary_cross_entropy_with_logits(centerness[positive], ctr_targets[positive],
                                             reduction="sum")
    return [cls / n, box / n, ctr / n]
'''


@pytest.mark.parametrize("least", [1, 0])
def test_losses_is_not_hidden_by_the_focal_loss_stub(least, capsys):
    namespace = {"torch": torch, "F": F}
    exec(STUDENT_LOSSES.format(stub=STUB_MESSAGE, least=least), namespace)
    assert checks.check_losses(namespace["fcos_losses"]) is False
    out = capsys.readouterr().out
    if least == 1:
        cases = len(checks.SPECS["check_losses"]().cases)
        assert f"all {cases} cases pass with the library's focal_loss standing in" in out
    else:
        assert "FAILED on no positives at all" in out and "at least 1" in out


def test_losses_example_is_the_first_case():
    lines = example(checks.SPECS["check_losses"]())
    assert lines[0].startswith("Example (one image, two locations")
    assert lines[-1].split()[0] == "returns" and lines[-1].count("(shape (), float32)") == 3
