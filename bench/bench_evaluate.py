"""mAP evaluation: fcos_lib against pycocotools and faster-coco-eval, on one problem.

5000 images, 20 classes, 100 detections per image (jittered copies of the ground truth,
duplicates, wrong classes, random boxes), 1 to 20 ground-truth boxes per image: the size of an
evaluation of the full VOC2007 test set (4952 images) with a detector capped at 100 boxes.
The metric is COCO's: 101-point AP averaged over IoU 0.50:0.95, maxDets 100, which the
three compute alike; the run checks that the three mAPs agree before printing times.

Each library is timed from its own input format to the mAP: fcos_lib from the lists of
tensors dicts; the COCO tools from the JSON-style dicts (building their indices, loading
the results, ``evaluate`` and ``accumulate``; turning tensors into dicts is not counted).
Times are medians of interleaved runs. The COCO tools run on one core; fcos_lib is timed
with torch's default threads and with one thread (on a machine whose other cores are busy,
torch's threads wait on each other and one thread is faster).

Run: ``python -m bench.bench_evaluate``. Goal: faster than pycocotools, within 2x of
faster-coco-eval.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from bench import median_ms
from fcos_lib.evaluate import mean_average_precision

IMAGES, NUM_CLASSES, DETECTIONS, MAX_GT = 5000, 20, 100, 20


def make_problem(seed: int = 0) -> tuple[list, list]:
    """Predictions and targets as lists of dicts of tensors (see the module docstring).

    Every true box gets one to three predicted copies: the first tight and confident, the
    others looser and lower scored (duplicates); one copy in ten has a wrong class. Random
    boxes with low scores fill each image up to ``DETECTIONS``.
    """
    gen = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for _ in range(IMAGES):
        n = int(torch.randint(1, MAX_GT + 1, (1,), generator=gen))
        xy = torch.rand(n, 2, generator=gen) * 400
        gt = torch.cat([xy, xy + torch.rand(n, 2, generator=gen) * 100 + 8], 1)
        labels = torch.randint(0, NUM_CLASSES, (n,), generator=gen)
        repeats = torch.randint(1, 4, (n,), generator=gen)
        source = torch.repeat_interleave(torch.arange(n), repeats)
        first = torch.ones(len(source), dtype=torch.bool)
        first[1:] = source[1:] != source[:-1]
        size = (gt[source, 2:] - gt[source, :2]).repeat(1, 2)
        spread = torch.where(first, 0.05, 0.15)[:, None]
        copies = gt[source] + torch.randn(len(source), 4, generator=gen) * spread * size
        copies[:, 2:] = torch.maximum(copies[:, 2:], copies[:, :2] + 1)
        copy_scores = torch.where(first, 0.4 + 0.6 * torch.rand(len(source), generator=gen),
                                  0.6 * torch.rand(len(source), generator=gen))
        wrong = torch.rand(len(source), generator=gen) < 0.1
        copy_labels = torch.where(wrong, torch.randint(0, NUM_CLASSES, (len(source),),
                                                       generator=gen), labels[source])
        extra = DETECTIONS - len(source)
        xy = torch.rand(extra, 2, generator=gen) * 400
        noise = torch.cat([xy, xy + torch.rand(extra, 2, generator=gen) * 100 + 8], 1)
        predictions.append({
            "boxes": torch.cat([copies, noise]),
            "scores": torch.cat([copy_scores, 0.5 * torch.rand(extra, generator=gen)]),
            "labels": torch.cat([copy_labels, torch.randint(0, NUM_CLASSES, (extra,),
                                                            generator=gen)])})
        targets.append({"boxes": gt, "labels": labels})
    return predictions, targets


def to_coco(predictions: list, targets: list) -> tuple[dict, list]:
    """The same problem as a COCO ground-truth dataset and a list of results (xywh)."""
    images, annotations, results = [], [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        images.append({"id": i + 1, "width": 512, "height": 512})
        for (x1, y1, x2, y2), c in zip(t["boxes"].double().tolist(), t["labels"].tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": c + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        for (x1, y1, x2, y2), c, s in zip(p["boxes"].double().tolist(), p["labels"].tolist(),
                                          p["scores"].double().tolist()):
            results.append({"image_id": i + 1, "category_id": c + 1,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    dataset = {"images": images, "annotations": annotations,
               "categories": [{"id": c + 1, "name": str(c)} for c in range(NUM_CLASSES)]}
    return dataset, results


def coco_map(module: str, dataset: dict, results: list) -> float:
    """mAP@0.50:0.95 by pycocotools or faster_coco_eval, from the JSON-style dicts."""
    with contextlib.redirect_stdout(io.StringIO()):
        if module == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval as Eval
            gt = COCO()
            gt.dataset = dict(dataset)
            gt.createIndex()
        else:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as Eval
            gt = COCO(dict(dataset))
        ev = Eval(gt, gt.loadRes(list(results)), "bbox")
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, -1]  # area "all", maxDets 100
    return float(precision[precision > -1].mean())


def ours(predictions: list, targets: list) -> float:
    return mean_average_precision(predictions, targets, "coco", "coco101",
                                  num_classes=NUM_CLASSES, max_detections=100)["map"]


def one_thread(fn):
    """``fn`` run with one torch thread, as the COCO tools run."""
    def run():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)
    return run


def main() -> None:
    predictions, targets = make_problem()
    dataset, results = to_coco(predictions, targets)
    fns = {"fcos_lib": lambda: ours(predictions, targets),
           "fcos_lib 1 thread": one_thread(lambda: ours(predictions, targets)),
           "pycocotools": lambda: coco_map("pycocotools", dataset, results),
           "faster-coco-eval": lambda: coco_map("faster_coco_eval", dataset, results)}
    maps = {name: fn() for name, fn in fns.items()}  # also the warm-up
    np.testing.assert_allclose(maps["fcos_lib"], maps["pycocotools"], atol=1e-6)
    np.testing.assert_allclose(maps["fcos_lib"], maps["faster-coco-eval"], atol=1e-4)
    t = {name: ms / 1000 for name, ms in median_ms(fns, repeats=3, warm_up=False).items()}
    print(f"{IMAGES} images x {DETECTIONS} detections, {NUM_CLASSES} classes, "
          f"{len(dataset['annotations'])} boxes; mAP@0.50:0.95 (coco101) = "
          f"{maps['fcos_lib']:.4f} (all agree); torch threads {torch.get_num_threads()}; "
          "median of 3 s")
    for name in fns:
        print(f"{name:>18} {t[name]:7.2f} s   {t[name] / t['fcos_lib']:5.2f}x fcos_lib's time")
    for name in ("fcos_lib", "fcos_lib 1 thread"):
        print(f"{name} is {t['pycocotools'] / t[name]:.1f}x faster than pycocotools (goal > 1) "
              f"and takes {t[name] / t['faster-coco-eval']:.2f}x faster-coco-eval's time "
              "(goal <= 2)")


if __name__ == "__main__":
    main()
