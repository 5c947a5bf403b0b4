"""VOC reading and the transforms: boxes checked against hand-computed values and pixels."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from vocfake import EXPECTED, IMAGES, make_voc_tree

from fcos_lib.data import (
    VOC_CLASSES,
    VOC2007DetectionTiny,
    VOCDataset,
    build_dataset,
    collate,
    denormalize,
    normalize,
    parse_voc_xml,
    random_horizontal_flip,
    resize_and_center_crop,
)
from fcos_lib.data.cache import cache_key


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """The data folder of a small VOC 2007 tree (``<root>/VOCdevkit/VOC2007``)."""
    root = tmp_path_factory.mktemp("data")
    make_voc_tree(root)
    return root


def expected_target(image_id):
    boxes = [box for _, box in EXPECTED[image_id]]
    labels = [VOC_CLASSES.index(name) for name, _ in EXPECTED[image_id]]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels)


def test_parse_converts_one_based_inclusive_to_pixel_edges(voc):
    ann = parse_voc_xml(voc / "VOCdevkit/VOC2007/Annotations/000001.xml")
    assert ann["names"] == ["dog", "person", "car"] and ann["size"] == (60, 40)
    assert ann["boxes"].tolist() == [[10, 4, 30, 20], [30, 0, 40, 10], [0, 0, 60, 40]]
    assert ann["difficult"].tolist() == [False, True, False]
    assert ann["truncated"].tolist() == [False, False, True]


def test_original_size_boxes_difficult_dropped(voc):
    data = VOCDataset(voc / "VOCdevkit/VOC2007", "trainval")
    assert data.ids == list(IMAGES) and data.class_names == VOC_CLASSES
    for i, image_id in enumerate(data.ids):
        image, target = data.load(i)
        w, h = IMAGES[image_id][:2]
        assert image.shape == (3, h, w) and image.dtype == torch.uint8  # greyscale -> RGB too
        boxes, labels = expected_target(image_id)
        assert torch.equal(target["boxes"], boxes) and torch.equal(target["labels"], labels)
        assert target["image_id"] == i and "difficult" not in target
        assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    image, target = data[2]  # the image without objects
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert image.dtype == torch.float32


def test_keep_difficult(voc):
    data = VOCDataset(voc / "VOCdevkit/VOC2007", "val", keep_difficult=True)
    _, target = data.load(1)  # 000004: person, difficult chair
    assert target["difficult"].tolist() == [False, True]
    assert target["boxes"].tolist() == [[20, 0, 40, 40], [1, 1, 8, 8]]
    assert target["labels"].tolist() == [VOC_CLASSES.index("person"), VOC_CLASSES.index("chair")]


def test_empty_split_and_bad_folders(voc, tmp_path):
    assert len(VOCDataset(voc / "VOCdevkit/VOC2007", "empty")) == 0
    with pytest.raises(FileNotFoundError, match="ImageSets/Main/nosuch.txt"):
        VOCDataset(voc / "VOCdevkit/VOC2007", "nosuch")
    with pytest.raises(ValueError, match="class_names"):
        VOCDataset(voc / "VOCdevkit/VOC2007", "train", class_names=["dog"])
    with pytest.raises(FileNotFoundError, match="python -m fcos_lib download voc2007"):
        VOC2007DetectionTiny(tmp_path, "val")


def test_tiny_resizes_crops_and_drops_boxes(voc):
    # 000002, 50x80: x0.4 -> 20x32, crop rows 6..26. cat (0,60,50,80) -> (0,24,20,32)
    # -> (0,18,20,26) -> clipped (0,18,20,20); bird (4,4,5,9) -> 0.4 px wide, cropped away.
    # 000004, 40x40: x0.5, no crop: person (20,0,40,40) -> (10,0,20,20).
    # The val split keeps difficult objects, flagged (the VOC protocol): 000004's chair
    # (1,1,8,8) -> (0.5,0.5,4,4).
    val = VOC2007DetectionTiny(voc, "val", image_size=20)
    assert val.cache_key.startswith("voc2007-tiny-val-20px-difficult-") and not val.train
    images, targets = collate([val[0], val[1]])
    assert images.shape == (2, 3, 20, 20)
    assert targets[0]["boxes"].tolist() == [[0, 18, 20, 20]]
    assert targets[0]["labels"].tolist() == [VOC_CLASSES.index("cat")]
    assert targets[1]["boxes"].tolist() == [[10, 0, 20, 20], [0.5, 0.5, 4, 4]]
    assert targets[1]["difficult"].tolist() == [False, True]
    course = VOC2007DetectionTiny(voc, "val", image_size=20, keep_difficult=False)
    assert course.load(1)[1]["boxes"].tolist() == [[10, 0, 20, 20]]
    # 000001, 60x40: x0.5 -> 30x20, crop columns 5..25: dog (10,4,30,20) -> (0,2,10,10),
    # car (whole image) -> (0,0,20,20).
    train = build_dataset("voc2007-tiny", "train", image_size=20, root=voc)
    assert train.train and not train.keep_difficult  # the course trains without them
    _, target = train.load(0)
    assert target["boxes"].tolist() == [[0, 2, 10, 10], [0, 0, 20, 20]]
    image, empty = train[1]  # 000003 has no objects
    assert image.shape == (3, 20, 20) and empty["boxes"].shape == (0, 4)
    # Difficult flags travel with their boxes: 000004's chair (1,1,8,8) -> (0.5,0.5,4,4).
    kept = VOCDataset(voc / "VOCdevkit/VOC2007", "val", image_size=20, keep_difficult=True)
    _, target = kept.load(1)
    assert target["boxes"].tolist() == [[10, 0, 20, 20], [0.5, 0.5, 4, 4]]
    assert target["difficult"].tolist() == [False, True]


def test_resize_and_crop_hand_computed():
    # 30x45 -> x2/3 -> 20x30, crop columns 5..25.
    image = torch.zeros(3, 30, 45, dtype=torch.uint8)
    boxes = torch.tensor([[3, 3, 30, 27], [0, 0, 7.5, 30], [10, 5, 10, 20]])
    out, kept, keep = resize_and_center_crop(image, boxes, 20)
    assert out.shape == (3, 20, 20) and out.dtype == torch.uint8
    assert keep.tolist() == [True, False, False]  # left strip cropped away; zero width
    torch.testing.assert_close(kept, torch.tensor([[0.0, 2, 15, 18]]))


def bright_extent(image):
    """xyxy pixel edges of the pixels brighter than half."""
    ys, xs = torch.nonzero(image[0] > 127, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_boxes_follow_the_pixels():
    image = torch.zeros(3, 40, 80, dtype=torch.uint8)
    image[:, 8:24, 20:40] = 255  # box (20, 8, 40, 24)
    box = torch.tensor([[20.0, 8, 40, 24]])
    out, moved, _ = resize_and_center_crop(image, box, 20)
    assert moved.tolist() == [[0, 4, 10, 12]] == [bright_extent(out)]
    flipped_image, flipped = random_horizontal_flip(image, box, p=1.0)
    assert flipped.tolist() == [[40, 8, 60, 24]] == [bright_extent(flipped_image)]
    same_image, same = random_horizontal_flip(image, box, p=0.0)
    assert torch.equal(same_image, image) and torch.equal(same, box)


def test_training_flip_is_random_and_seeded(voc):
    train = VOC2007DetectionTiny(voc, "train", image_size=20)
    image, target = train.load(0)

    def flips(seed):
        torch.manual_seed(seed)
        return [train.finish(image, target)[1]["boxes"][0, 0].item() for _ in range(40)]

    first = flips(0)
    assert first == flips(0) and set(first) == {0.0, 10.0}  # dog (0,2,10,10) or (10,2,20,10)
    val = VOC2007DetectionTiny(voc, "val", image_size=20)
    image, target = val.load(0)
    assert all(torch.equal(val.finish(image, target)[0], normalize(image)) for _ in range(10))


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 3, 5, 7)])
def test_denormalize_inverts_normalize(shape):
    pixels = torch.randint(0, 256, shape, dtype=torch.uint8)
    normalized = normalize(pixels)
    assert normalized.dtype == torch.float32 and normalized.min() < 0
    torch.testing.assert_close(denormalize(normalized), pixels.float() / 255)
    assert denormalize(normalized.to("meta")).device.type == "meta"


def test_collate_errors():
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="image_size"):
        collate([(torch.zeros(3, 4, 4), {}), (torch.zeros(3, 4, 5), {})])


def test_cache_key_names_everything_that_changes_a_sample(voc, tmp_path):
    """Folder, split, size, difficult objects and class list: two datasets that differ in
    any of them must not share a decoded cache (labels are cached with the pixels)."""
    import shutil

    folder = voc / "VOCdevkit/VOC2007"
    other = tmp_path / "copy"
    shutil.copytree(voc, other)
    keys = [VOCDataset(folder, "train", image_size=20).cache_key,
            VOCDataset(folder, "val", image_size=20).cache_key,
            VOCDataset(folder, "train", image_size=24).cache_key,
            VOCDataset(folder, "train", image_size=20, keep_difficult=True).cache_key,
            VOCDataset(folder, "train", image_size=20,
                       class_names=list(reversed(VOC_CLASSES))).cache_key,
            VOCDataset(other / "VOCdevkit/VOC2007", "train", image_size=20).cache_key,
            VOC2007DetectionTiny(voc, "train", image_size=20).cache_key,
            VOC2007DetectionTiny(other, "train", image_size=20).cache_key]
    assert len({cache_key(SimpleNamespace(cache_key=k)) for k in keys}) == len(keys)


def test_the_voc_protocol_ignores_difficult_objects(voc):
    """A detection of a difficult object neither helps nor hurts the mAP of the evaluation
    splits; the course's view (difficult objects dropped) counts it as a false positive.

    trainval has a person in 000004 and a difficult person in 000001. A detector finds both,
    the difficult one with the higher score: with the flags its detection is set aside
    (AP 1); without them it ranks first as a false positive (precision 1/2 at full recall).
    """
    from fcos_lib.evaluate import mean_average_precision

    flagged = VOC2007DetectionTiny(voc, "trainval", image_size=40, keep_difficult=True)
    course = VOC2007DetectionTiny(voc, "trainval", image_size=40, keep_difficult=False)
    person = VOC_CLASSES.index("person")
    targets = [flagged.load(i)[1] for i in range(len(flagged))]
    assert sum(int(t["difficult"][t["labels"] == person].sum()) for t in targets) == 1
    finds_all = [{"boxes": t["boxes"], "labels": t["labels"],
                  "scores": torch.where(t["difficult"], 0.95, 0.9)} for t in targets]
    skips_difficult = [{k: v[~t["difficult"]] for k, v in p.items()}
                       for p, t in zip(finds_all, targets)]

    def ap(predictions, targets):
        return mean_average_precision(predictions, targets, 0.5, "area")["per_class"][person]

    assert ap(finds_all, targets) == 1.0          # found: no reward, no penalty
    assert ap(skips_difficult, targets) == 1.0    # missed: no penalty
    course_targets = [course.load(i)[1] for i in range(len(course))]
    assert ap(finds_all, course_targets) == pytest.approx(0.5)
    assert ap(skips_difficult, course_targets) == 1.0

