"""The checks of the "Your turn" exercises are themselves tested: each passes the library's
own function, and catches the mistakes students make, each with the hint that names it."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checking import failed, type_named_before_maths
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

assign_right = assign_targets_plain       # the library's plain pieces: the exercises' contracts
focal_right = focal_loss_plain


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


def focal_indexing_background(logits, labels, alpha=0.25, gamma=2.0):
    t = torch.zeros_like(logits)
    t[torch.arange(len(labels)), labels] = 1                # -1 sets the last column
    p = logits.sigmoid()
    p_t = torch.where(t == 1, p, 1 - p)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    return (torch.where(t == 1, alpha, 1 - alpha) * (1 - p_t) ** gamma * ce).sum()


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
        (focal_indexing_background, "marks the LAST class"),
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


# The pieces that tie the detector together (the head's pass, the loss assembly, detection)
# are tested the same way in tests/test_new_checks.py.
WHOLE_PIECES = {"check_head", "check_losses", "check_detect"}


def test_every_check_has_three_mistakes_or_more():
    assert set(CHECKS) | WHOLE_PIECES == set(checks.__all__) == set(checks.SPECS)
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


# ------------------------------------------------------------------ beyond the maths: the kinds
# of mistake that no hint names. Each kind is tried on several checks, with wrong versions
# written for these tests (not the checks' own list).

def test_a_piece_that_loses_its_gradient_fails(capsys):
    item = lambda x, y, **k: focal_right(x, y, **k).item()                 # noqa: E731
    out = failed(checks.check_focal_loss, item, capsys)
    assert "0-d" in out and ".item()" in out
    detached = lambda x, y, **k: focal_right(x, y, **k).detach()           # noqa: E731
    out = failed(checks.check_focal_loss, detached, capsys)
    assert "carries no gradient" in out and "learns nothing" in out
    rebuilt = lambda x, y, **k: torch.tensor(focal_right(x, y, **k).item())  # noqa: E731
    assert "carries no gradient" in failed(checks.check_focal_loss, rebuilt, capsys)

    def weight_detached(logits, labels, alpha=0.25, gamma=2.0):      # same value, other grad
        t = torch.zeros_like(logits)
        t[labels >= 0, labels[labels >= 0]] = 1
        p = logits.sigmoid()
        p_t = torch.where(t == 1, p, 1 - p)
        a_t = torch.where(t == 1, alpha, 1 - alpha)
        ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        return (a_t * ((1 - p_t) ** gamma).detach() * ce).sum()

    assert "gradient of input 1 is not" in failed(checks.check_focal_loss, weight_detached,
                                                   capsys)

    def top_down_detached(ls):
        out = [ls[-1]]
        for lat in reversed(ls[:-1]):
            out.insert(0, lat + F.interpolate(out[0].detach(), size=lat.shape[-2:]))
        return out

    assert "gradient" in failed(checks.check_top_down, top_down_detached, capsys)
    numpy_decode = lambda d, p, s: torch.from_numpy(                          # noqa: E731
        decode_boxes(d, p, s).detach().numpy().copy())
    assert "carries no gradient" in failed(checks.check_decode, numpy_decode, capsys)


def test_a_function_that_edits_its_inputs_fails_on_the_first_case_naming_the_input(capsys):
    def centerness_in_place(ltrb):
        right = centerness_target(ltrb.clone())
        ltrb.clamp_(max=1.0)
        return right

    out = failed(checks.check_centerness, centerness_in_place, capsys)
    assert "changed its input `ltrb` in place" in out and "a point at the centre" in out

    def assign_shifting_levels(levels, boxes, ranges):               # right answer, edits
        answer = assign_right([p.clone() for p in levels], boxes, ranges)
        for points in levels:
            points += 0.5
        return answer

    out = failed(checks.check_assign, assign_shifting_levels, capsys)
    assert "FAILED on a point exactly on a box's side" in out      # the first case, not later
    assert "changed its input `levels`" in out

    def top_down_into_the_list(ls):
        merged = FPN([4, 4, 4], 4).top_down(ls)
        ls[0] = merged[0]                                              # rebinds the caller's item
        return merged

    assert "changed its input `laterals`" in failed(checks.check_top_down,
                                                    top_down_into_the_list, capsys)

    def top_down_add_(ls):                                              # in place on a leaf
        out = [ls[-1]]
        for lat in reversed(ls[:-1]):
            out.insert(0, lat.add_(F.interpolate(out[0], size=lat.shape[-2:])))
        return out

    assert "in place" in failed(checks.check_top_down, top_down_add_, capsys)

    def ap_sorting_in_place(recall, precision):
        np.maximum.accumulate(precision[::-1], out=precision[::-1])
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    assert "changed its input `precision`" in failed(checks.check_average_precision,
                                                     ap_sorting_in_place, capsys)


@pytest.mark.parametrize("name, wrong, expected_words", [
    ("check_voc_to_xyxy", lambda b: torch.from_numpy(voc_to_xyxy(b).numpy().astype(np.float64)),
     "float64: computed in NumPy"),
    ("check_voc_to_xyxy", lambda b: torch.cat([b[:, :2] - 1, b[:, 2:]], 1), "got int64"),
    ("check_voc_to_xyxy", lambda b: voc_to_xyxy(b).numpy(), "NumPy"),
    ("check_feature_sizes", lambda h, w: [(math.ceil(h / s) * 1.0, math.ceil(w / s) * 1.0)
                                          for s in (8, 16, 32)], "Python int"),
    ("check_feature_sizes", lambda h, w: torch.tensor(ceil_sizes(h, w)), "list of 3"),
    ("check_locations", lambda h, w, s, o: level_locations(h, w, s, o).double(), "float64"),
    ("check_centerness", lambda d: centerness_target(d).numpy(), "NumPy"),
    ("check_box_iou", lambda a, b: box_iou(a, b).tolist(), "Python list"),
    ("check_nms", lambda *a: batched_nms(*a).int(), "int32"),
    ("check_nms", lambda *a: batched_nms(*a).tolist(), "Python list"),
    ("check_nms", lambda *a: torch.tensor(batched_nms(*a).tolist()) if len(a[0]) else
     torch.tensor([]), "empty"),
    ("check_average_precision", lambda r, p: torch.tensor(ap_right(r, p)), "Python float"),
    ("check_average_precision", lambda r, p: np.float32(ap_right(r, p)), "float(...)"),
    ("check_average_precision", lambda r, p: np.array([ap_right(r, p)]), "NumPy"),
    ("check_lr_factor", lambda step, cfg: torch.tensor(lr_factor(step, cfg)), "Python float"),
    ("check_focal_loss", lambda x, y, **k: focal_right(x, y, **k).double(), "float64"),
    ("check_focal_loss", lambda x, y, **k: focal_right(x, y, **k).reshape(1), "0-d"),
])
def test_a_wrong_type_is_named_before_any_maths(name, wrong, expected_words, capsys):
    type_named_before_maths(name, wrong, expected_words, capsys)


@pytest.mark.parametrize("name, wrong", [
    ("check_box_iou", lambda a, b: box_iou(a, b) if len(a) and len(b) else torch.zeros(1, 1)),
    ("check_box_iou", lambda a, b: box_iou(a, b) / box_iou(a, b).max().clamp(min=1)),
    ("check_average_precision", lambda r, p: ap_right(r, p) if len(r) else float(p[0])),
    ("check_encode", lambda b, p, s: encode_boxes(b, p, s) if len(b) else torch.zeros(1, 4)),
    ("check_centerness", lambda d: centerness_target(d) if len(d) else torch.ones(1)),
    ("check_focal_loss", lambda x, y, **k: focal_right(x, y, **k) / max(len(y), 1) * len(y)
     if len(y) else x.sum() * float("nan")),
    ("check_assign", lambda lv, b, r: assign_right(lv, b, r) if all(len(p) for p in lv)
     else torch.cat(lv).new_full((0,), -1).long()),
])
def test_empty_inputs_are_tried(name, wrong, capsys):
    out = failed(getattr(checks, name), wrong, capsys)
    assert any(w in out for w in ("no boxes", "no detections", "no locations", "none",
                                  "without points")), out


@pytest.mark.parametrize("name, wrong, hint", [
    ("check_assign", assign_variant(closed=True), "open"),
    ("check_lr_factor", lambda step, cfg: lr_variant()(step, cfg) if step != 32 or
     cfg.steps != 47 else lr_factor(31, cfg), "int(0.7 * 47) = 32"),
    ("check_lr_factor", lambda step, cfg: (lr_factor(step, cfg) if cfg.steps != 47 else
     lr_factor(step, cfg) * (2 if step == 32 else 1)), "rounded DOWN"),
])
def test_both_ends_of_every_range(name, wrong, hint, capsys):
    assert hint in failed(getattr(checks, name), wrong, capsys)


def test_a_closed_lower_size_bound_is_caught(capsys):
    def lower_closed(levels, boxes, ranges):
        points = torch.cat(levels)
        lo = torch.cat([torch.full((len(p),), r[0]) for p, r in zip(levels, ranges)])
        hi = torch.cat([torch.full((len(p),), r[1]) for p, r in zip(levels, ranges)])
        out = torch.full((len(points),), -1, dtype=torch.long)
        for i, (x, y) in enumerate(points.tolist()):
            best = math.inf
            for m, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
                d = (x - x0, y - y0, x1 - x, y1 - y)
                area = (x1 - x0) * (y1 - y0)
                if min(d) > 0 and lo[i] <= max(d) < hi[i] and area < best:
                    out[i], best = m, area
        return out

    out = failed(checks.check_assign, lower_closed, capsys)
    assert "LOWER bound" in out and "open at its LOWER end" in out


@pytest.mark.parametrize("size", ["perimeter", "longer", "width"])
def test_smallest_box_means_smallest_area(size, capsys):
    def assign(levels, boxes, ranges):
        points = torch.cat(levels)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        key = {"perimeter": 2 * (w + h), "longer": torch.maximum(w, h), "width": w}[size]
        out = []
        for (x, y), (lo, hi) in zip(points.tolist(), [r for p, r in zip(levels, ranges)
                                                      for _ in range(len(p))]):
            d = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x,
                             boxes[:, 3] - y], 1) if len(boxes) else torch.zeros(0, 4)
            ok = (d.amin(1) > 0) & (d.amax(1) > lo) & (d.amax(1) < hi)
            out.append(int(torch.where(ok, key, math.inf).argmin()) if ok.any() else -1)
        return torch.tensor(out, dtype=torch.long)

    out = failed(checks.check_assign, assign, capsys)
    assert "smallest AREA wins" in out


def test_nms_chain_only_kept_boxes_suppress(capsys):
    def nms_against_all_better(boxes, scores, labels, t):
        order = scores.argsort(descending=True)
        keep = []
        for rank, i in enumerate(order.tolist()):
            better = [k for k in order[:rank].tolist() if labels[k] == labels[i]]
            if better and (box_iou(boxes[i][None], boxes[better]) > t).any():
                continue
            keep.append(i)
        return torch.tensor(keep, dtype=torch.long)

    out = failed(checks.check_nms, nms_against_all_better, capsys)
    assert "a chain" in out and "only a KEPT box removes others" in out


def test_nearest_exact_is_named(capsys):
    def exact(ls):
        out = [ls[-1]]
        for lat in reversed(ls[:-1]):
            out.insert(0, lat + F.interpolate(out[0], size=lat.shape[-2:], mode="nearest-exact"))
        return out

    out = failed(checks.check_top_down, exact, capsys)
    assert "nearest-exact" in out and "odd sizes" in out     # passes the square maps, not 7x5


def test_a_report_names_the_first_difference_and_stays_short(capsys):
    def one_wrong_point(h, w, s, o):
        points = level_locations(h, w, s, o)
        if len(points) > 12:
            points[13, 1] += 1
        return points

    out = failed(checks.check_locations, one_wrong_point, capsys)
    assert "1 of 32 differ, the first at [13, 1]" in out
    assert "flat values 23..31" in out                       # shown around index 27

    def numpy_sizes(h, w):                                     # a big NumPy result, wrong
        return np.arange(250.0)

    assert "NumPy" in failed(checks.check_feature_sizes, numpy_sizes, capsys)


def test_every_case_has_a_hint():
    for name, build in checks.SPECS.items():
        spec = build()
        assert spec.hint and spec.returns, name
        assert all(case.hint or spec.hint for case in spec.cases), name


def test_a_wrong_random_case_gets_the_contract_as_hint(capsys):
    def wrong_on_many(d):                                          # right on the hand cases
        out = centerness_target(d)
        return out * 0.5 if len(d) > 4 else out

    out = failed(checks.check_centerness, wrong_on_many, capsys)
    assert "eight random points" in out and "hint: centerness = sqrt(min(l, r)" in out


STUDENT_CELL = '''
def box_iou(boxes1, boxes2):
    raise NotImplementedError("{stub}")

def nms(boxes, scores, labels, iou_threshold):
    keep = []
    for i in scores.argsort(descending=True).tolist():
        rivals = [k for k in keep if labels[k] == labels[i]]
        if rivals and (box_iou(boxes[i:i + 1], boxes[rivals]) {op} iou_threshold).any():
            continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.long)
'''


@pytest.mark.parametrize("op", [">", ">="])
def test_a_check_is_not_hidden_by_another_exercises_stub(op, capsys):
    from fcos_lib.checks.core import STUB_MESSAGE
    namespace = {"torch": torch}
    exec(STUDENT_CELL.format(stub=STUB_MESSAGE, op=op), namespace)
    assert checks.check_nms(namespace["nms"]) is False
    out = capsys.readouterr().out
    if op == ">":
        assert f"all {len(checks.SPECS['check_nms']().cases)} cases pass with the library's box_iou standing in" in out
    else:
        assert "FAILED on an IoU exactly at the threshold" in out and "ABOVE" in out
    assert "your function still raises" not in out
    with pytest.raises(NotImplementedError):                    # the student's own is untouched
        namespace["box_iou"](torch.zeros(1, 4), torch.zeros(1, 4))


def test_examples_for_the_student_copies_are_real_cases():
    from fcos_lib.checks.core import example
    lines = example(checks.SPECS["check_centerness"]())
    assert lines[0] == "Example (a point at the centre of its box):"
    assert lines[1].split("=", 1)[1].strip().startswith("[[2, 2, 2, 2]]")
    assert lines[-1].split()[:2] == ["returns", "[1]"]
