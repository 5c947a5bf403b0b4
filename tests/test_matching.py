"""The plain matching (one detection at a time) against the fast one (scatters over all
detections and thresholds at once), detection by detection, and against pycocotools' own
record of which box each detection took.

The problems are random and adversarial (``make_problem`` of ``test_evaluate``): crowded
images, scores with ties, boxes on a coarse grid so that IoUs tie and hit the thresholds
exactly, difficult boxes, images without ground truth or without detections. Small cases by
hand pin down each rule where the two benchmarks part.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from test_evaluate import NUM_CLASSES, make_problem
from torchvision.ops import box_iou

from fcos_lib.matching import match_coco, match_coco_plain, match_voc, match_voc_plain

COCO_THRESHOLDS = torch.linspace(0.5, 0.95, 10, dtype=torch.float64)
PLAIN = {"voc": match_voc_plain, "coco": match_coco_plain}


def flatten(predictions: list, targets: list) -> dict[str, torch.Tensor]:
    """The dataset as the matchers take it: detections in score order (stable), each with its
    group (image * C + class) and its rank within the group; the ground truth likewise."""
    det_group = torch.cat([i * NUM_CLASSES + p["labels"] for i, p in enumerate(predictions)])
    scores = torch.cat([p["scores"] for p in predictions]).double()
    order = torch.argsort(-scores, stable=True)
    det_group = det_group[order].long()
    seen: dict[int, int] = {}
    rank = []
    for g in det_group.tolist():
        rank.append(seen.get(g, 0))
        seen[g] = rank[-1] + 1
    return {"det_group": det_group, "det_rank": torch.tensor(rank, dtype=torch.long),
            "det_boxes": torch.cat([p["boxes"] for p in predictions]).double()[order],
            "order": order,
            "gt_group": torch.cat([i * NUM_CLASSES + t["labels"]
                                   for i, t in enumerate(targets)]).long(),
            "gt_boxes": torch.cat([t["boxes"] for t in targets]).double(),
            "difficult": torch.cat([t.get("difficult", torch.zeros(len(t["labels"]),
                                                                 dtype=torch.bool))
                                    for t in targets]).bool()}


def both(rule: str, flat: dict, thresholds: torch.Tensor) -> tuple[dict, dict]:
    """The plain result, one threshold at a time, stacked to (T, N), and the fast one."""
    args = [flat[k] for k in ("det_group", "det_boxes", "gt_group", "gt_boxes", "difficult")]
    rows = [PLAIN[rule](*args, float(t)) for t in thresholds]
    plain = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
    if rule == "voc":
        fast = match_voc(*args, thresholds, with_matched=True)
        short = match_voc(*args, thresholds)
    else:
        fast = match_coco(flat["det_group"], flat["det_rank"], *args[1:], thresholds,
                          with_matched=True)
        short = match_coco(flat["det_group"], flat["det_rank"], *args[1:], thresholds)
    assert len(short) == 2 and torch.equal(short[0], fast[0]) and torch.equal(short[1], fast[1])
    return plain, dict(zip(("hit", "miss", "matched"), fast))


def assert_plain_equals_fast(rule: str, flat: dict, thresholds: torch.Tensor) -> dict:
    """Plain and fast agree on every detection at every threshold, and the plain result
    is consistent with itself; returns the plain result, (T, N) each."""
    plain, fast = both(rule, flat, thresholds)
    for key in ("matched", "hit", "miss"):
        assert torch.equal(plain[key], fast[key]), f"{rule}: {key} differs"
    # Exactly one verdict per detection, and the flags say what ``matched`` says.
    assert torch.equal(plain["hit"].long() + plain["miss"].long() + plain["ignored"].long(),
                       torch.ones_like(plain["matched"]))
    assert torch.equal(plain["miss"], plain["matched"] < 0)
    # A detection takes a box of its own image and class; a box is hit once at most.
    t_idx, d_idx = (plain["matched"] >= 0).nonzero(as_tuple=True)
    assert torch.equal(flat["gt_group"][plain["matched"][t_idx, d_idx]], flat["det_group"][d_idx])
    for hits, row in zip(plain["hit"], plain["matched"]):
        assert len(row[hits].unique()) == int(hits.sum())
    return plain


def exact_ties_and_thresholds(flat: dict, thresholds: torch.Tensor) -> tuple[int, int]:
    """How many (detection, box) pairs of a group sit exactly on a threshold, and how many
    detections overlap two boxes of their group most, at the same IoU."""
    iou = box_iou(flat["det_boxes"], flat["gt_boxes"])
    iou[flat["det_group"][:, None] != flat["gt_group"][None]] = 0
    on_threshold = int(sum((iou == float(t)).sum() for t in thresholds))
    best = iou.amax(1, keepdim=True) if iou.shape[1] else iou.new_zeros(len(iou), 1)
    ties = int(((iou == best) & (best > 0)).sum(1).gt(1).sum())
    return on_threshold, ties


PROBLEMS = [(kind, seed) for kind in ("random", "ties", "crowded", "grid")
            for seed in (101, 202, 303)]


@pytest.mark.parametrize("rule", ["voc", "coco"])
@pytest.mark.parametrize("kind,seed", PROBLEMS)
def test_plain_and_fast_match_alike(rule, kind, seed):
    predictions, targets = make_problem(seed, images=20, crowded=kind == "crowded",
                                        grid=kind == "grid", tie_scores=kind in ("ties", "grid"))
    flat = flatten(predictions, targets)
    thresholds = torch.cat([torch.tensor([0.3, 0.5, 0.7, 1.0], dtype=torch.float64),
                            COCO_THRESHOLDS[1::3]])
    plain = assert_plain_equals_fast(rule, flat, thresholds)
    # Problems where matching has work to do: every verdict occurs.
    assert plain["hit"].any() and plain["miss"].any() and plain["ignored"].any()
    if kind == "grid":
        assert exact_ties_and_thresholds(flat, thresholds)[0] > 0


@pytest.mark.parametrize("rule", ["voc", "coco"])
@pytest.mark.parametrize("seed", range(6))
def test_plain_and_fast_in_dense_crowds(rule, seed):
    """One image, two classes, 30 boxes on a 2-px grid inside 24 x 24 px, 60 detections:
    every detection overlaps many boxes, many at equal IoU."""
    gen = torch.Generator().manual_seed(seed)

    def boxes(n):
        xy = torch.randint(0, 6, (n, 2), generator=gen) * 2.0
        return torch.cat([xy, xy + torch.randint(2, 7, (n, 2), generator=gen) * 2.0], 1)

    target = {"boxes": boxes(30), "labels": torch.randint(0, 2, (30,), generator=gen),
              "difficult": torch.rand(30, generator=gen) < 0.2}
    prediction = {"boxes": boxes(60), "labels": torch.randint(0, 2, (60,), generator=gen),
                  "scores": torch.randint(0, 4, (60,), generator=gen) / 4}
    flat = flatten([prediction], [target])
    thresholds = torch.tensor([0.25, 0.5, 0.6, 0.75], dtype=torch.float64)
    assert_plain_equals_fast(rule, flat, thresholds)
    on_threshold, ties = exact_ties_and_thresholds(flat, thresholds)
    assert on_threshold > 0 and ties > 0


@pytest.mark.parametrize("rule", ["voc", "coco"])
def test_nothing_to_match(rule):
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "scores": torch.zeros(0), "difficult": torch.zeros(0, dtype=torch.bool)}
    some = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1]),
            "scores": torch.tensor([0.5]), "difficult": torch.tensor([False])}
    t = torch.tensor([0.5, 0.75], dtype=torch.float64)
    for predictions, targets, misses in [([empty], [empty], 0),    # no detection, no box
                                         ([empty], [some], 0),     # no detection at all
                                         ([some], [empty], 1),     # no ground truth at all
                                         ([empty, some], [some, empty], 1)]:
        plain = assert_plain_equals_fast(rule, flatten(predictions, targets), t)
        assert plain["matched"].shape == (2, misses) and plain["miss"].all()


def one_image(det_boxes: list, gt_boxes: list, difficult: list | None = None) -> dict:
    """One image, one class, detections listed in score order."""
    g = len(gt_boxes)
    n = len(det_boxes)
    return flatten([{"boxes": torch.tensor(det_boxes, dtype=torch.float64),
                     "labels": torch.zeros(n, dtype=torch.long),
                     "scores": torch.linspace(1, 0.5, n)}],
                   [{"boxes": torch.tensor(gt_boxes, dtype=torch.float64).reshape(g, 4),
                     "labels": torch.zeros(g, dtype=torch.long),
                     "difficult": torch.tensor(difficult or [False] * g)}])


@pytest.mark.parametrize("rule", ["voc", "coco"])
def test_hand_cases_where_the_rules_part(rule):
    t = torch.tensor([0.5], dtype=torch.float64)
    cases = {
        # IoU exactly 0.5: the devkit wants more (>), pycocotools as much (>=)
        "at the threshold": (one_image([[0.0, 0, 10, 10]], [[0.0, 0, 10, 5]]),
                             {"voc": [-1], "coco": [0]}),
        # IoU 0.6 with both boxes: the devkit takes the first, pycocotools the last; the
        # second detection, a perfect copy of box 0, then hits under COCO only
        "equal IoUs": (one_image([[2.5, 0, 12.5, 10], [0, 0, 10, 10]],
                                 [[0.0, 0, 10, 10], [5, 0, 15, 10]]),
                       {"voc": [0, -1], "coco": [1, 0]}),
        # the devkit looks only at the box it overlaps most, taken already; COCO looks on
        "best box taken": (one_image([[0.0, 0, 10, 10], [0, 0, 10, 10]],
                                     [[0.0, 0, 10, 10], [0, 0, 10, 6]]),
                           {"voc": [0, -1], "coco": [0, 1]}),
        # difficult box 0 (IoU 1) and easy box 1 (IoU 0.6): the devkit ignores the detection,
        # pycocotools prefers the easy box; the devkit never takes a difficult box, so a
        # second detection on it is ignored again, where COCO gives it the difficult box
        "difficult": (one_image([[0.0, 0, 10, 10], [0, 0, 10, 10]],
                                [[0.0, 0, 10, 10], [0, 0, 10, 6]], [True, False]),
                      {"voc": [0, 0], "coco": [1, 0]}),
    }
    for name, (flat, expected) in cases.items():
        plain = assert_plain_equals_fast(rule, flat, t)
        assert plain["matched"][0].tolist() == expected[rule], name
    difficult = assert_plain_equals_fast(rule, cases["difficult"][0], t)
    assert difficult["ignored"][0].tolist() == ({"voc": [True, True], "coco": [False, True]}
                                                [rule])


def test_a_threshold_of_one_as_pycocotools_caps_it():
    """pycocotools matches at IoU >= min(t, 1 - 1e-10): at t = 1, a box perfect but for
    rounding (IoU 1 - 1e-13) still counts; the devkit wants IoU > 1, never true."""
    t = torch.tensor([1.0], dtype=torch.float64)
    for gt in ([0.0, 0, 10, 10], [0.0, 0, 10, 10 + 1e-12]):
        flat = one_image([[0.0, 0, 10, 10]], [gt])
        assert assert_plain_equals_fast("coco", flat, t)["hit"].tolist() == [[True]]
        assert assert_plain_equals_fast("voc", flat, t)["miss"].tolist() == [[True]]


# ------------------------------------------------------------------ pycocotools' own record


def pycocotools_matched(predictions: list, targets: list, thresholds: torch.Tensor
                        ) -> torch.Tensor:
    """(T, N) the box (index into the concatenated ground truth, -1 for none) that
    pycocotools' ``evaluateImg`` gave each detection, detections in input order. Difficult
    boxes are ignored ground truth by an area above COCO's "all" range."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1})
        for box, label, hard in zip(t["boxes"].double().tolist(), t["labels"].tolist(),
                                    t["difficult"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": label + 1, "iscrowd": 0,
                                "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                                "area": 1e11 if hard else 1.0})
        for box, label, score in zip(p["boxes"].double().tolist(), p["labels"].tolist(),
                                     p["scores"].double().tolist()):
            results.append({"image_id": i + 1, "category_id": label + 1, "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c + 1} for c in range(NUM_CLASSES)]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.iouThrs = thresholds.numpy()
        ev.params.maxDets = [10_000]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    matched = np.full((len(thresholds), len(results)), -1)
    for record in filter(None, ev.evalImgs):
        ids = np.array(record["dtIds"], dtype=int) - 1           # loadRes numbers them 1..N
        matched[:, ids] = record["dtMatches"].astype(int) - 1  # annotation id - 1, or -1
    return torch.from_numpy(matched)


@pytest.mark.parametrize("kind,seed", [("grid", 7), ("crowded", 8), ("ties", 9)])
def test_coco_matched_boxes_are_pycocotools(kind, seed):
    predictions, targets = make_problem(seed, images=12, crowded=kind == "crowded",
                                        grid=kind == "grid", tie_scores=kind in ("ties", "grid"))
    flat = flatten(predictions, targets)
    plain, _ = both("coco", flat, COCO_THRESHOLDS)
    expected = pycocotools_matched(predictions, targets, COCO_THRESHOLDS)[:, flat["order"]]
    assert torch.equal(plain["matched"], expected)
    assert (expected >= 0).any() and (expected < 0).any()
