"""The checks of the "Your turn" exercises are themselves tested: each passes the library's
own function, and catches the mistakes students make, each with the hint that names it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms, box_iou, nms

from fcos_lib import checks
from fcos_lib.data.voc import voc_to_xyxy
from fcos_lib.evaluate import average_precision
from fcos_lib.fpn import FPN
from fcos_lib.losses import focal_loss_plain
from fcos_lib.model import level_locations
from fcos_lib.optim import lr_factor
from fcos_lib.targets import assign_targets_plain, centerness_target, decode_boxes, encode_boxes


# ------------------------------------------------------------------ right answers

def assign_right(levels, boxes, ranges):
    labels = torch.zeros(1, len(boxes), dtype=torch.long)
    return assign_targets_plain(boxes[None], labels, levels, [1] * len(levels), ranges)[0]


def focal_right(logits, labels, alpha=0.25, gamma=2.0):
    return focal_loss_plain([logits[None]], labels[None], alpha, gamma)


def ap_right(recall, precision):
    return float(average_precision(recall[None], precision[None], "area")[0])


def ceil_sizes(h, w):
    return [(math.ceil(h / s), math.ceil(w / s)) for s in (8, 16, 32)]


# ------------------------------------------------------------------ wrong answers, by piece

def top_down_bilinear(ls):
    out = [ls[-1]]
    for lat in reversed(ls[:-1]):
        out.insert(0, lat + F.interpolate(out[0], size=lat.shape[-2:], mode="bilinear"))
    return out


def top_down_factor_two(ls):
    out = [ls[-1]]
    for lat in reversed(ls[:-1]):
        out.insert(0, lat + F.interpolate(out[0], scale_factor=2, mode="nearest"))
    return out


def top_down_no_carry(ls):  # adds the lateral map above, so C5 never reaches M3
    return [ls[0] + F.interpolate(ls[1], size=ls[0].shape[-2:]),
            ls[1] + F.interpolate(ls[2], size=ls[1].shape[-2:]), ls[2]]


def locations_yx(h, w, s, o):
    return level_locations(h, w, s, o).flip(1)


def locations_column_major(h, w, s, o):
    return level_locations(h, w, s, o).reshape(h, w, 2).transpose(0, 1).reshape(-1, 2)


def locations_no_offset(h, w, s, o):
    return level_locations(h, w, s, 0.0)


def centerness_no_sqrt(d):
    return centerness_target(d) ** 2


def centerness_wrong_pairs(d):
    return torch.sqrt(d[:, :2].amin(1) / d[:, :2].amax(1) * d[:, 2:].amin(1) / d[:, 2:].amax(1))


def centerness_max_over_min(d):
    return 1 / centerness_target(d)


def assign_variant(inside_eq=False, closed=False, largest=False, ignore_range=False):
    def assign(levels, boxes, ranges):
        points = torch.cat(levels)
        if len(boxes) == 0:
            return torch.full((len(points),), -1)
        lo = torch.cat([torch.full((len(p),), r[0]) for p, r in zip(levels, ranges)])[:, None]
        hi = torch.cat([torch.full((len(p),), r[1]) for p, r in zip(levels, ranges)])[:, None]
        x, y = points[:, :1], points[:, 1:]
        d = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)
        ok = d.min(-1).values >= 0 if inside_eq else d.min(-1).values > 0
        far = d.max(-1).values
        if not ignore_range:
            ok = ok & ((far >= lo) & (far <= hi) if closed else (far > lo) & (far < hi))
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        score = torch.where(ok, area if largest else -area, -math.inf)
        return torch.where(ok.any(1), score.argmax(1), -1)
    return assign


def focal_variant(alpha_swapped=False, no_gamma=False, mean=False, naive_log=False):
    def loss(logits, labels, alpha=0.25, gamma=2.0):
        t = torch.zeros_like(logits)
        t[labels >= 0, labels[labels >= 0]] = 1
        p = logits.sigmoid()
        p_t = torch.where(t == 1, p, 1 - p)
        a = (1 - alpha) if alpha_swapped else alpha
        a_t = torch.where(t == 1, torch.tensor(a), torch.tensor(1 - a))
        ce = -torch.log(p_t) if naive_log else F.binary_cross_entropy_with_logits(
            logits, t, reduction="none")
        values = a_t * (1 if no_gamma else (1 - p_t) ** gamma) * ce
        return values.mean() if mean else values.sum()
    return loss


def lr_variant(strict=False, single_drop=False):
    def factor(step, cfg):
        warm = 1.0
        if step < cfg.warmup_steps:
            a = step / cfg.warmup_steps
            warm = cfg.warmup_factor + (1 - cfg.warmup_factor) * a
        drops = [step > int(m * cfg.steps) if strict else step >= int(m * cfg.steps)
                 for m in cfg.milestones]
        return warm * cfg.gamma ** (int(any(drops)) if single_drop else sum(drops))
    return factor


def lr_warmup_off_by_one(step, cfg):
    warm = 1.0
    if step <= cfg.warmup_steps and cfg.warmup_steps:
        a = step / (cfg.warmup_steps + 1)
        warm = cfg.warmup_factor + (1 - cfg.warmup_factor) * a
    return warm * cfg.gamma ** sum(step >= int(m * cfg.steps) for m in cfg.milestones)


def iou_variant(plus_one=False, no_clamp=False, no_subtract=False):
    def iou(a, b):
        e = 1.0 if plus_one else 0.0
        w = torch.min(a[:, None, 2], b[None, :, 2]) - torch.max(a[:, None, 0], b[None, :, 0]) + e
        h = torch.min(a[:, None, 3], b[None, :, 3]) - torch.max(a[:, None, 1], b[None, :, 1]) + e
        if not no_clamp:
            w, h = w.clamp(min=0), h.clamp(min=0)
        inter = w * h
        area_a = (a[:, 2] - a[:, 0] + e) * (a[:, 3] - a[:, 1] + e)
        area_b = (b[:, 2] - b[:, 0] + e) * (b[:, 3] - b[:, 1] + e)
        union = area_a[:, None] + area_b[None, :] - (0 if no_subtract else inter)
        return inter / union
    return iou


def nms_all_classes(boxes, scores, labels, t):
    return nms(boxes, scores, t)


def nms_greedy(boxes, scores, labels, t, strict_keep=False, index_order=False):
    keep = []
    for i in scores.argsort(descending=True).tolist():
        same = [k for k in keep if labels[k] == labels[i]]
        if same:
            overlap = box_iou(boxes[i][None], boxes[same])[0]
            if (overlap >= t).any() if strict_keep else (overlap > t).any():
                continue
        keep.append(i)
    out = torch.tensor(keep, dtype=torch.long)
    return out.sort().values if index_order else out


def ap_no_interpolation(r, p):
    return float(np.sum(np.diff(np.r_[0.0, r]) * p))


def ap_eleven_points(r, p):
    return float(average_precision(r[None], p[None], "11point")[0])


def ap_no_start(r, p):
    env = np.maximum.accumulate(p[::-1])[::-1]
    return float(np.sum(np.diff(r) * env[1:]))


CHECKS = {
    "check_voc_to_xyxy": (voc_to_xyxy, [
        (lambda b: b.float(), "shift the first corner by -1"),
        (lambda b: b.float() - 1, "only xmin and ymin move by -1"),
        (lambda b: torch.cat([b[:, :2] - 1, b[:, 2:] + 1], 1).float(), "x2 = xmax, not xmax + 1"),
    ]),
    "check_feature_sizes": (ceil_sizes, [
        (lambda h, w: [(h // s, w // s) for s in (8, 16, 32)], "odd sizes round up"),
        (lambda h, w: [(math.ceil(w / s), math.ceil(h / s)) for s in (8, 16, 32)],
         "(height, width) pairs"),
        (lambda h, w: [(math.ceil(h / s), math.ceil(w / s)) for s in (4, 8, 16)],
         "strides 8, 16 and 32"),
    ]),
    "check_top_down": (FPN([4, 4, 4], 4).top_down, [
        (top_down_bilinear, "nearest neighbour"),
        (top_down_factor_two, "7 rows are not twice 4"),
        (top_down_no_carry, "add the MERGED map above"),
        (lambda ls: top_down_no_carry(ls)[::-1], ""),  # caught, whatever the hint
    ]),
    "check_locations": (level_locations, [
        (locations_yx, "x first"),
        (locations_column_major, "row by row"),
        (locations_no_offset, "add the offset"),
    ]),
    "check_encode": (encode_boxes, [
        (lambda b, p, s: torch.cat([b[:, 2:] - p, p - b[:, :2]], 1) / s[:, None],
         "l and r swapped"),
        (lambda b, p, s: torch.cat([p - b[:, :2], b[:, 2:] - p], 1), "divide the distances"),
        (lambda b, p, s: torch.cat([b[:, :2] - p, p - b[:, 2:]], 1) / s[:, None],
         "signs are reversed"),
        (lambda b, p, s: torch.cat([p - b[:, :2], b[:, 2:] - p], 1) / 8, ""),
    ]),
    "check_decode": (decode_boxes, [
        (lambda d, p, s: torch.cat([p - d[:, :2], p + d[:, 2:]], 1), "multiply them by the stride"),
        (lambda d, p, s: torch.cat([p + d[:, :2] * s[:, None], p - d[:, 2:] * s[:, None]], 1),
         "subtract l and t"),
        (lambda d, p, s: torch.cat([p - d[:, 2:] * s[:, None], p + d[:, :2] * s[:, None]], 1),
         "(l, t) give the top-left corner"),
    ]),
    "check_centerness": (centerness_target, [
        (centerness_no_sqrt, "missing the square root"),
        (centerness_wrong_pairs, "pair l with r"),
        (centerness_max_over_min, "min over max"),
    ]),
    "check_assign": (assign_right, [
        (assign_variant(inside_eq=True), "not inside: use l, t, r, b > 0"),
        (assign_variant(closed=True), "the size range is open"),
        (assign_variant(largest=True), "the SMALLEST box wins"),
        (assign_variant(ignore_range=True), "each level takes only boxes of its size"),
    ]),
    "check_focal_loss": (focal_right, [
        (focal_variant(alpha_swapped=True), "alpha weights the POSITIVE targets"),
        (focal_variant(no_gamma=True), "(1 - p_t)^gamma is missing"),
        (focal_variant(mean=True), "sum over every location and class"),
        (focal_variant(naive_log=True), "underflows to -inf"),
    ]),
    "check_lr_factor": (lr_factor, [
        (lr_variant(strict=True), "drops AT the milestone step"),
        (lr_variant(single_drop=True), "multiplies by gamma again"),
        (lr_warmup_off_by_one, "warm-up"),
    ]),
    "check_box_iou": (box_iou, [
        (iou_variant(no_clamp=True), "clamp the overlap"),
        (iou_variant(no_subtract=True), "MINUS the intersection"),
        (iou_variant(plus_one=True), "no + 1"),
        (lambda a, b: box_iou(a, b).diagonal() if len(a) == len(b) else box_iou(a, b)[:, 0], ""),
    ]),
    "check_nms": (batched_nms, [
        (nms_all_classes, "class by class"),
        (lambda *a: nms_greedy(*a, strict_keep=True), "ABOVE the threshold"),
        (lambda *a: nms_greedy(*a, index_order=True), "best score first"),
    ]),
    "check_average_precision": (ap_right, [
        (ap_no_interpolation, "interpolate first"),
        (ap_no_start, "start the area at recall 0"),
        (ap_eleven_points, ""),
    ]),
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_library_passes(name, capsys):
    right, _ = CHECKS[name]
    assert getattr(checks, name)(right) is True
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: all ") and "cases pass" in out


@pytest.mark.parametrize("name, index", [(n, i) for n in sorted(CHECKS)
                                         for i in range(len(CHECKS[n][1]))])
def test_a_mistake_is_caught_with_its_hint(name, index, capsys):
    wrong, hint = CHECKS[name][1][index]
    assert getattr(checks, name)(wrong) is False
    out = capsys.readouterr().out
    assert f"{name}: FAILED on " in out and "expected" in out and "received" in out
    assert hint in out, out
    assert "Traceback" not in out


def test_every_check_has_three_mistakes_or_more():
    assert set(CHECKS) == set(checks.__all__)
    assert all(len(mistakes) >= 3 for _, mistakes in CHECKS.values())


def test_a_stub_is_not_done_yet_and_a_crash_is_reported(capsys):
    def stub(*args):
        raise NotImplementedError("your turn")

    assert checks.check_centerness(stub) is False
    assert capsys.readouterr().out.strip() == (
        "check_centerness: not done yet (your function still raises NotImplementedError).")
    assert checks.check_nms(lambda *args: args[0][100]) is False
    out = capsys.readouterr().out
    assert "raised IndexError" in out and "boxes" in out and "Traceback" not in out


def test_a_function_that_edits_its_input_does_not_spoil_the_next_case(capsys):
    def centerness_in_place(ltrb):
        right = centerness_target(ltrb.clone())
        ltrb.zero_()
        return right

    assert checks.check_centerness(centerness_in_place) is True
