"""mAP against pycocotools (coco101) and against a line-by-line VOC devkit reference.

The problems are random and adversarial: scores with ties, images without predictions,
classes without ground truth, crowded images with many overlapping boxes, difficult boxes,
and boxes on a coarse grid so that IoUs hit the thresholds exactly.
"""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from fcos_lib.evaluate import average_precision, format_table, mean_average_precision

NUM_CLASSES = 5
SEEDS = {"random": 11, "ties": 12, "crowded": 13, "grid": 14}


def make_problem(seed: int, images: int = 30, crowded: bool = False, grid: bool = False,
                 tie_scores: bool = False, difficult: bool = True) -> tuple[list, list]:
    """Random predictions near random ground truth; see the module docstring."""
    gen = torch.Generator().manual_seed(seed)

    def boxes(n: int) -> torch.Tensor:
        if grid:  # coordinates on a grid of 4 px: many IoUs are equal or hit 0.5 exactly
            xy = torch.randint(0, 20, (n, 2), generator=gen) * 4.0
            wh = torch.randint(2, 11, (n, 2), generator=gen) * 4.0
        else:
            xy = torch.rand(n, 2, generator=gen) * 80
            wh = torch.rand(n, 2, generator=gen) * 40 + 4
        return torch.cat([xy, xy + wh], 1)

    predictions, targets = [], []
    for i in range(images):
        n_gt = int(torch.randint(0, 25 if crowded else 6, (1,), generator=gen))
        if i == 1:
            n_gt = 0  # an image with no ground truth at all
        gt_boxes = boxes(n_gt)
        # class 4 never has ground truth (predictions of it are all false positives)
        gt_labels = torch.randint(0, NUM_CLASSES - 1, (n_gt,), generator=gen)
        target = {"boxes": gt_boxes, "labels": gt_labels}
        if difficult:
            target["difficult"] = torch.rand(n_gt, generator=gen) < 0.15
        targets.append(target)
        if i % 7 == 3:  # images without predictions
            predictions.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                "labels": torch.zeros(0, dtype=torch.long)})
            continue
        # jittered copies of the ground truth (some with a wrong class) plus random boxes
        copies = gt_boxes.repeat(int(torch.randint(1, 4, (1,), generator=gen)), 1)
        jitter = torch.randn(copies.shape, generator=gen) * (0 if grid else 4)
        if grid:
            jitter = torch.randint(-1, 2, copies.shape, generator=gen) * 4.0
        copies = copies + jitter
        copies[:, 2:] = torch.maximum(copies[:, 2:], copies[:, :2] + 1)
        copy_labels = gt_labels.repeat(len(copies) // max(n_gt, 1))
        flip = torch.rand(len(copy_labels), generator=gen) < 0.1
        copy_labels = torch.where(flip, torch.randint(0, NUM_CLASSES, copy_labels.shape,
                                                      generator=gen), copy_labels)
        extra = int(torch.randint(0, 40 if crowded else 8, (1,), generator=gen))
        pred_boxes = torch.cat([copies, boxes(extra)])
        pred_labels = torch.cat([copy_labels, torch.randint(0, NUM_CLASSES, (extra,),
                                                            generator=gen)])
        if tie_scores:  # few distinct values: ties within and across images
            scores = torch.randint(1, 5, (len(pred_boxes),), generator=gen) / 4
        else:
            scores = torch.rand(len(pred_boxes), generator=gen)
        predictions.append({"boxes": pred_boxes, "scores": scores, "labels": pred_labels})
    return predictions, targets


# ------------------------------------------------------------------ pycocotools


def coco_reference(predictions, targets, iou_type_thresholds: str) -> np.ndarray:
    """Per-class AP from pycocotools' COCOeval (NaN for classes without ground truth).

    Difficult boxes become "ignored" ground truth through the area range: they carry an
    ``area`` above COCO's "all" range (pycocotools reads ``area`` from the annotation, and
    computes IoU from the box), so they are matched like any box but counted neither way.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1, "width": 200, "height": 200})
        difficult = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool))
        for box, label, hard in zip(t["boxes"].double().tolist(), t["labels"].tolist(),
                                    difficult.tolist()):
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": label + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": 1e11 if hard else (x2 - x1) * (y2 - y1),
                                "iscrowd": 0})
        for box, label, score in zip(p["boxes"].double().tolist(), p["labels"].tolist(),
                                     p["scores"].double().tolist()):
            x1, y1, x2, y2 = box
            results.append({"image_id": i + 1, "category_id": label + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(NUM_CLASSES)]}
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        if iou_type_thresholds == "0.5":
            ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # (T, R, K): area "all", maxDets 100
    ap = precision.mean(axis=1)                        # (T, K)
    ap[(precision == -1).all(axis=1)] = np.nan
    return ap


@pytest.mark.parametrize("iou", ["0.5", "coco"])
@pytest.mark.parametrize("kind", ["random", "ties", "crowded", "grid"])
def test_coco101_equals_pycocotools(kind, iou):
    predictions, targets = make_problem(seed=SEEDS[kind], crowded=kind == "crowded",
                                        grid=kind == "grid", tie_scores=kind in ("ties", "grid"))
    expected = coco_reference(predictions, targets, iou)
    ours = mean_average_precision(predictions, targets, 0.5 if iou == "0.5" else "coco",
                                  "coco101", num_classes=NUM_CLASSES, max_detections=100)
    np.testing.assert_allclose(ours["ap"], expected, atol=1e-6, equal_nan=True)
    assert ours["map"] == pytest.approx(np.nanmean(expected), abs=1e-6)
    assert 4 not in ours["per_class"] and np.isnan(ours["ap"][:, 4]).all()  # no ground truth
    assert 0.05 < ours["map"] < 0.95  # a problem where matching matters, not a trivial one


def test_coco101_max_detections_as_pycocotools():
    # one crowded image with 150 detections of one class: pycocotools keeps the best 100
    gen = torch.Generator().manual_seed(3)
    gt = torch.rand(60, 2, generator=gen) * 100
    gt_boxes = torch.cat([gt, gt + 10], 1)
    pred = {"boxes": torch.cat([gt_boxes, gt_boxes + 1, gt_boxes + 3])[:150],
            "scores": torch.rand(150, generator=gen), "labels": torch.zeros(150, dtype=torch.long)}
    target = {"boxes": gt_boxes, "labels": torch.zeros(60, dtype=torch.long)}
    expected = coco_reference([pred], [target], "coco")
    capped = mean_average_precision([pred], [target], "coco", "coco101", num_classes=NUM_CLASSES,
                                    max_detections=100)
    np.testing.assert_allclose(capped["ap"], expected, atol=1e-6, equal_nan=True)
    uncapped = mean_average_precision([pred], [target], "coco", "coco101")
    assert uncapped["map"] != pytest.approx(capped["map"], abs=1e-6)


# ------------------------------------------------------------------ VOC devkit reference


def voc_reference(predictions, targets, iou: float, use_07_metric: bool) -> np.ndarray:
    """Per-class AP following the VOC devkit's ``voc_eval`` and ``voc_ap``, one detection at
    a time (NaN for classes without non-difficult ground truth).

    Differences from the devkit, on purpose: no "+1" in widths and heights (float pixel
    corners, as the library), and a stable sort of the scores (the devkit's quicksort
    leaves the order of ties unspecified).
    """
    aps = np.full(NUM_CLASSES, np.nan)
    for c in range(NUM_CLASSES):
        gts = {}
        npos = 0
        for i, t in enumerate(targets):
            mask = (t["labels"] == c).numpy()
            hard = t.get("difficult", torch.zeros(len(mask), dtype=torch.bool)).numpy()[mask]
            gts[i] = {"boxes": t["boxes"].double().numpy()[mask], "difficult": hard,
                      "det": [False] * int(mask.sum())}
            npos += int((~hard).sum())
        if npos == 0:
            continue
        image_ids, confidence, boxes = [], [], []
        for i, p in enumerate(predictions):
            mask = (p["labels"] == c).numpy()
            image_ids += [i] * int(mask.sum())
            confidence += p["scores"].double().numpy()[mask].tolist()
            boxes += p["boxes"].double().numpy()[mask].tolist()
        order = np.argsort(-np.array(confidence), kind="mergesort")
        nd = len(order)
        tp, fp = np.zeros(nd), np.zeros(nd)
        for d, k in enumerate(order):
            r = gts[image_ids[k]]
            bb = np.array(boxes[k])
            ovmax = -np.inf
            bbgt = r["boxes"]
            if bbgt.size > 0:
                ixmin = np.maximum(bbgt[:, 0], bb[0])
                iymin = np.maximum(bbgt[:, 1], bb[1])
                ixmax = np.minimum(bbgt[:, 2], bb[2])
                iymax = np.minimum(bbgt[:, 3], bb[3])
                iw = np.maximum(ixmax - ixmin, 0.0)
                ih = np.maximum(iymax - iymin, 0.0)
                inters = iw * ih
                uni = ((bb[2] - bb[0]) * (bb[3] - bb[1])
                       + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inters)
                overlaps = inters / uni
                ovmax = np.max(overlaps)
                jmax = np.argmax(overlaps)
            if ovmax > iou:
                if not r["difficult"][jmax]:
                    if not r["det"][jmax]:
                        tp[d] = 1.0
                        r["det"][jmax] = True
                    else:
                        fp[d] = 1.0
            else:
                fp[d] = 1.0
        fp, tp = np.cumsum(fp), np.cumsum(tp)
        rec = tp / float(npos)
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[c] = voc_ap(rec, prec, use_07_metric)
    return aps


def voc_ap(rec, prec, use_07_metric):
    """The devkit's ``voc_ap``: 11-point mean, or the area under the precision envelope."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("method", ["11point", "area"])
@pytest.mark.parametrize("kind", ["random", "ties", "crowded", "grid"])
def test_voc_methods_equal_devkit_reference(kind, method):
    predictions, targets = make_problem(seed=7 + len(kind), crowded=kind == "crowded",
                                        grid=kind == "grid", tie_scores=kind in ("ties", "grid"))
    for iou in (0.5, 0.7):
        expected = voc_reference(predictions, targets, iou, method == "11point")
        ours = mean_average_precision(predictions, targets, iou, method,
                                      num_classes=NUM_CLASSES)
        np.testing.assert_allclose(ours["ap"][0], expected, atol=1e-9, equal_nan=True)
        assert ours["map"] == pytest.approx(np.nanmean(expected), abs=1e-9)


def test_voc_and_coco_matching_differ_where_the_devkit_says():
    # Two boxes; the second detection's best box is taken already. The devkit calls it a
    # miss; pycocotools lets it take the other box (IoU 0.6 > 0.5).
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 6]]),
              "labels": torch.tensor([0, 0])}
    pred = {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]),
            "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}
    voc = mean_average_precision([pred], [target], 0.5, "area", matching="voc")
    coco = mean_average_precision([pred], [target], 0.5, "area", matching="coco")
    assert voc["map"] == pytest.approx(0.5) and coco["map"] == pytest.approx(1.0)


# ------------------------------------------------------------------ small worked cases


def test_perfect_detections_score_one_and_difficult_counts_neither_way():
    boxes = torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 70]])
    target = {"boxes": boxes, "labels": torch.tensor([0, 1, 1]),
              "difficult": torch.tensor([False, False, True])}
    pred = {"boxes": boxes[:2], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}
    for method in ("11point", "area", "coco101"):
        assert mean_average_precision([pred], [target], 0.5, method)["map"] == pytest.approx(1.0)
    # a confident detection on the difficult box changes nothing either
    pred_hard = {"boxes": boxes, "scores": torch.tensor([0.5, 0.4, 0.99]),
                 "labels": torch.tensor([0, 1, 1])}
    assert mean_average_precision([pred_hard], [target])["map"] == pytest.approx(1.0)
    result = mean_average_precision([pred_hard], [target])
    assert result["num_gt"] == {0: 1, 1: 1}


def test_empty_predictions_and_hand_computed_curve():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]]),
              "labels": torch.tensor([0, 0])}
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
             "labels": torch.zeros(0, dtype=torch.long)}
    assert mean_average_precision([empty], [target])["map"] == 0.0
    # miss (0.9), hit (0.8): precision 0, 1/2; recall 0, 1/2 -> area 0.5 * 0.5 = 0.25
    pred = {"boxes": torch.tensor([[50.0, 50, 60, 60], [0, 0, 10, 10]]),
            "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}
    result = mean_average_precision([pred], [target], 0.5, "area")
    assert result["map"] == pytest.approx(0.25)
    np.testing.assert_allclose(result["curves"][0]["precision"], [0.0, 0.5])
    np.testing.assert_allclose(result["curves"][0]["recall"], [0.0, 0.5])
    # 11-point: precision 0.5 at recall 0, 0.1, ..., 0.5 (6 points) -> 3/11
    assert mean_average_precision([pred], [target], 0.5, "11point")["map"] == pytest.approx(3 / 11)


def test_average_precision_rows_are_independent():
    recall = np.array([[0.5, 1.0], [0.5, 0.5]])
    precision = np.array([[1.0, 1.0], [1.0, 0.5]])
    np.testing.assert_allclose(average_precision(recall, precision, "area"), [1.0, 0.5])


def test_bad_input_is_named():
    target = {"boxes": torch.zeros(1, 4), "labels": torch.tensor([0])}
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        mean_average_precision([target | {"scores": torch.ones(1)}], [target, target])
    with pytest.raises(ValueError, match="has no \\['scores'\\]"):
        mean_average_precision([target], [target])
    with pytest.raises(ValueError, match="method="):
        mean_average_precision([], [], method="voc")
    with pytest.raises(ValueError, match="'coco'"):
        mean_average_precision([target | {"scores": torch.ones(1)}], [target], "coco50")
    scored = target | {"scores": torch.ones(1)}
    with pytest.raises(ValueError, match=r"predictions\[0\]\['boxes'\] has shape \(4, 5\)"):
        mean_average_precision([scored | {"boxes": torch.zeros(4, 5)}], [target])
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\] are floats"):
        mean_average_precision([scored], [target | {"labels": torch.tensor([0.7])}])
    with pytest.raises(ValueError, match="max_detections=0: must be a whole number >= 1"):
        mean_average_precision([scored], [target], max_detections=0)
    result = mean_average_precision([scored], [target | {"labels": torch.tensor([2])}])
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        format_table(result, ["a", "b"])


def test_format_table_lists_every_class():
    predictions, targets = make_problem(seed=1, images=10)
    result = mean_average_precision(predictions, targets, num_classes=NUM_CLASSES)
    table = format_table(result, ["a", "b", "c", "d", "e"])
    lines = table.splitlines()
    assert lines[0].split() == ["class", "AP", "gt", "dets"]
    assert [ln.split()[0] for ln in lines[1:6]] == ["a", "b", "c", "d", "e"]
    assert lines[5].split()[1] == "-"  # class e has no ground truth
    assert f"{result['map']:.3f}" in lines[-1]
    json.dumps({k: v for k, v in result.items() if k not in ("ap", "curves")})


# ------------------------------------------------------------------ command line
# (the `checkpoint` fixture is in tests/conftest.py)


def test_evaluate_command_prints_table_and_writes_json(checkpoint, tmp_path, capsys):
    from fcos_lib.commands import main
    from fcos_lib.data import build_dataset
    from fcos_lib.inference import predict_dataset
    from fcos_lib.model import FCOS

    out = tmp_path / "results.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "shapes",
                 "--max-images", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["images"] == 6 and set(report["per_class"]) == {"circle", "square", "triangle",
                                                                  "star", "ring", "cross"}
    model, _ = FCOS.from_checkpoint(checkpoint)
    predictions, targets = predict_dataset(model, build_dataset("shapes", "val", image_size=64),
                                           max_images=6)
    expected = mean_average_precision(predictions, targets, 0.5, "area", num_classes=6)
    assert report["map"] == pytest.approx(expected["map"])
    assert format_table(expected, list(report["per_class"])) in printed


def test_evaluate_command_errors(checkpoint, tmp_path, capsys):
    from fcos_lib.commands.evaluate import main

    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--dataset", "shapes"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    base = ["--checkpoint", str(checkpoint), "--dataset", "shapes"]
    for flag, value, message in [("--iou", "abc", "'abc' is not a number"),
                                 ("--iou", "1.5", "1.5 is not strictly between 0 and 1"),
                                 ("--max-images", "0", "0 is less than 1")]:
        with pytest.raises(SystemExit):  # argparse: before anything is loaded
            main(base + [flag, value])
        assert message in capsys.readouterr().err
    # Errors after loading: one line on stderr, exit status 2, no traceback.
    assert main(base + ["--split", "nosuch", "--max-images", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nosuch" in err and "Traceback" not in err
    assert main(["--checkpoint", str(checkpoint), "--dataset", "voc2007-tiny",
                 "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "python -m fcos_lib download voc2007" in err


def test_equal_iou_ties_follow_each_benchmark():
    """A detection overlapping two true boxes with IoU 0.6 each: the VOC devkit takes the
    first box (so the second detection, a perfect match of that same box, is a duplicate);
    pycocotools the last (so both detections hit)."""
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10]]),
                "labels": torch.tensor([0, 0])}]
    predictions = [{"boxes": torch.tensor([[2.5, 0, 12.5, 10], [0, 0, 10, 10]]),
                    "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 0])}]
    voc = mean_average_precision(predictions, targets, 0.5, "area")
    coco = mean_average_precision(predictions, targets, 0.5, "coco101")
    assert voc["map"] == pytest.approx(0.5) and coco["map"] == pytest.approx(1.0)


def test_evaluate_model_passes_the_detector_settings(checkpoint):
    """The course grades with score_thresh=0.4 and nms_thresh=0.6: evaluate_model takes them."""
    from fcos_lib.data import ShapesDataset
    from fcos_lib.evaluate import evaluate_model
    from fcos_lib.inference import predict_dataset
    from fcos_lib.model import FCOS

    model, _ = FCOS.from_checkpoint(checkpoint)
    data = ShapesDataset("val", image_size=64, length=6)
    for settings in ({}, {"score_thresh": 0.1, "nms_thresh": 0.3}, {"score_thresh": 0.99}):
        predictions, targets = predict_dataset(model, data, **settings)
        expected = mean_average_precision(predictions, targets, num_classes=6)
        got = evaluate_model(model, data, **settings)
        assert got["map"] == expected["map"] and got["images"] == 6
    assert sum(len(p["boxes"]) for p in predict_dataset(model, data, score_thresh=0.99)[0]) \
        < sum(len(p["boxes"]) for p in predict_dataset(model, data)[0])
