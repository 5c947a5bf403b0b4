"""The generated shapes dataset: deterministic, disjoint splits, tight valid boxes, every class
and every FPN size band present."""
from __future__ import annotations

import hashlib

import pytest
import torch

from fcos_lib.data import (
    SHAPE_CLASSES,
    ShapesDataset,
    build_dataset,
    collate,
    normalize,
    resize_and_center_crop,
)


def loads(data, n):
    return [data.load(i) for i in range(n)]


def digest(image):
    return hashlib.sha1(image.numpy().tobytes()).hexdigest()


def test_deterministic_from_seed_and_index():
    a, b = ShapesDataset("train", 96, seed=3), ShapesDataset("train", 96, seed=3)
    for i in (0, 7, 4999):
        (ia, ta), (ib, tb) = a.load(i), b.load(i)
        assert torch.equal(ia, ib) and torch.equal(ta["boxes"], tb["boxes"])
        assert torch.equal(ta["labels"], tb["labels"]) and ta["image_id"] == i
    assert not torch.equal(a.load(0)[0], ShapesDataset("train", 96, seed=4).load(0)[0])
    assert not torch.equal(a.load(0)[0], a.load(1)[0])


def test_splits_never_share_an_image():
    train = {digest(im) for im, _ in loads(ShapesDataset("train", 64), 300)}
    val = {digest(im) for im, _ in loads(ShapesDataset("val", 64), 300)}
    assert len(train) == len(val) == 300 and not train & val


def test_boxes_inside_valid_and_counts():
    size = 128
    samples = loads(ShapesDataset("val", size), 150)
    counts = []
    for image, target in samples:
        boxes, labels = target["boxes"], target["labels"]
        assert image.shape == (3, size, size) and image.dtype == torch.uint8
        assert boxes.dtype == torch.float32 and labels.dtype == torch.int64
        assert boxes.shape == (len(labels), 4)
        assert (boxes >= 0).all() and (boxes <= size).all()
        assert (boxes[:, 2:] - boxes[:, :2] >= 2).all()  # no degenerate box
        assert ((labels >= 0) & (labels < len(SHAPE_CLASSES))).all()
        counts.append(len(labels))
    assert min(counts) >= 1 and max(counts) <= 8 and len(set(counts)) >= 5


def test_boxes_are_the_tight_extent_of_the_shape():
    # With one object, its pixels are the only saturated ones (backgrounds and clutter are
    # near grey): their extent must be the box exactly.
    data = ShapesDataset("train", 96, min_objects=1, max_objects=1)
    for image, target in loads(data, 60):
        saturation = image.int().amax(0) - image.int().amin(0)
        ys, xs = torch.nonzero(saturation > 70, as_tuple=True)
        extent = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert target["boxes"].tolist() == [[float(v) for v in extent]]


def test_every_class_and_size_band():
    # At 224 px the paper's ranges of the largest regression distance, 0-64, 64-128 and
    # 128-inf pixels (P3, P4, P5), are reached by boxes whose longer side is in those ranges.
    boxes, labels = [], []
    for _, target in loads(ShapesDataset("train", 224), 120):
        boxes.append(target["boxes"])
        labels.append(target["labels"])
    side = (torch.cat(boxes)[:, 2:] - torch.cat(boxes)[:, :2]).amax(1)
    bands = torch.bucketize(side, torch.tensor([64.0, 128.0]))
    assert torch.bincount(bands, minlength=3).min() >= 20
    assert set(torch.cat(labels).tolist()) == set(range(len(SHAPE_CLASSES)))
    # At the demo's 128 px, objects larger than half the image exist, and none below ~7 px.
    small = torch.cat([t["boxes"] for _, t in loads(ShapesDataset("train", 128), 120)])
    small_side = (small[:, 2:] - small[:, :2]).amax(1)
    assert (small_side > 64).sum() >= 10 and small_side.min() >= 7


def test_samples_flip_on_train_only():
    train, val = ShapesDataset("train", 64, length=10), ShapesDataset("val", 64, length=10)
    image, target = val.load(3)
    sample, out = val[3]
    assert torch.equal(sample, normalize(image)) and torch.equal(out["boxes"], target["boxes"])
    image, target = train.load(3)
    mirrored = target["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + \
        torch.tensor([64, 0, 64, 0])
    seen = set()
    torch.manual_seed(0)
    for _ in range(20):
        sample, out = train[3]
        flipped = torch.equal(out["boxes"], mirrored)
        assert flipped or torch.equal(out["boxes"], target["boxes"])
        expect = normalize(image.flip(-1) if flipped else image)
        assert torch.equal(sample, expect)
        seen.add(flipped)
    assert seen == {True, False}


def test_lengths_build_and_errors():
    assert len(ShapesDataset("train")) == 5000 and len(ShapesDataset("val")) == 500
    data = build_dataset("shapes", "val", image_size=64, length=4, seed=1)
    assert len(data) == 4 and data.class_names == SHAPE_CLASSES and len(data.class_names) >= 6
    assert "val" in data.cache_key and "64" in data.cache_key
    images, targets = collate([data[i] for i in range(4)])
    assert images.shape == (4, 3, 64, 64) and len(targets) == 4
    with pytest.raises(IndexError):
        data.load(4)
    with pytest.raises(ValueError, match="split"):
        ShapesDataset("test")
    with pytest.raises(ValueError, match="dataset=.*choose one of"):
        build_dataset("coco", "train")


@pytest.mark.parametrize("image, boxes, size, message", [
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, 4), 4, r"uint8 RGB image \(3, H, W\)"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), torch.zeros(0, 4), 4, r"uint8 RGB image \(3, H, W\)"),
    (torch.zeros(3, 8, 8), torch.zeros(0, 4), 4, r"uint8 RGB image.*got torch.float32"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(1, 4, dtype=torch.int64), 4,
     "floating-point boxes, got torch.int64: convert"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(0, 4), 0, "size must be a positive"),
])
def test_resize_and_center_crop_rejects_bad_input(image, boxes, size, message):
    with pytest.raises(ValueError, match=message):
        resize_and_center_crop(image, boxes, size)


def test_normalize_rejects_float_input():
    image = ShapesDataset("val", 48, length=1).load(0)[0]
    assert normalize(image).dtype == torch.float32
    for already in (normalize(image), image.float() / 255):
        with pytest.raises(ValueError, match="expects uint8 pixels 0..255, got torch.float32"):
            normalize(already)
