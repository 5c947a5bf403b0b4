"""PASCAL VOC: a reader of any VOC-format folder, and the course's VOC2007DetectionTiny.

A VOC-format folder holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
``ImageSets/Main/<split>.txt`` (one image id per line). Each XML names the objects with a
class name, a ``difficult`` flag and a ``bndbox`` in VOC's pixel coordinates (see
:func:`parse_voc_xml` for how they become our boxes).

Why this module is longer than 300 lines: what a VOC folder can hold that is wrong (broken
XML, boxes that are no boxes or lie outside, images too large to decode) is refused or
dropped next to the step that reads it, with a message naming the file.
"""
from __future__ import annotations

import os
import sys
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from fcos_lib.data.transforms import (
    Target,
    finish_sample,
    resize_and_center_crop,
    rgb_pixels,
    select_objects,
)
from fcos_lib.validate import proper_boxes

VOC_CLASSES: list[str] = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


MAX_PIXELS = 50_000_000   # per image: far more than a detector of a few hundred pixels uses


def check_pixels(image: Image.Image, name: object) -> None:
    """Refuse an image of more than :data:`MAX_PIXELS` before decoding it (``Image.open``
    reads only its size; Pillow's own limit, 179 megapixels, lets a 17 KB PNG take gigabytes).

    Raises:
        ValueError: one line naming the image (``name``), its size and what to do.
    """
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ValueError(f"{name}: {width} x {height} pixels ({width * height / 1e6:.0f} "
                         f"megapixels) is more than the {MAX_PIXELS // 10**6} megapixels read "
                         "here; the detector sees a few hundred pixels: shrink it first, e.g. "
                         "to 2000 pixels on its longer side")


def voc_to_xyxy(boxes: Tensor) -> Tensor:
    """VOC's boxes, 1-based and inclusive, as pixel edges counted from 0 (see
    :func:`parse_voc_xml`): ``(xmin - 1, ymin - 1, xmax, ymax)``.

    Args:
        boxes: (N, 4) ``(xmin, ymin, xmax, ymax)`` as written in a VOC annotation.

    Returns:
        (N, 4) float32 ``(x1, y1, x2, y2)``.
    """
    boxes = boxes.float()
    return torch.cat([boxes[:, :2] - 1, boxes[:, 2:]], dim=1)


def voc_from_xyxy(box: Tensor) -> list[float]:
    """One xyxy box back as VOC writes it, ``[xmin, ymin, xmax, ymax]`` (for messages)."""
    x1, y1, x2, y2 = box.tolist()
    return [x1 + 1, y1 + 1, x2, y2]


def parse_voc_xml(path: str | os.PathLike) -> dict:
    """Read one VOC annotation file.

    VOC numbers pixels from 1 and its boxes include both end pixels: ``xmin=1, xmax=W``
    spans every column of a W-wide image. Our boxes are pixel *edges* counted from 0, where
    pixel ``k`` (1-based) covers ``[k - 1, k)``. So ``x1 = xmin - 1`` and ``x2 = xmax``
    (likewise for y): the whole-image box ``(1, 1, W, H)`` becomes ``(0, 0, W, H)``, and a
    one-pixel box ``xmin = xmax = 5`` becomes ``x1 = 4, x2 = 5``, one pixel wide.

    Args:
        path: the ``.xml`` file.

    Returns:
        A dict with ``names`` (N class names), ``boxes`` (N, 4) float32 xyxy pixel edges,
        ``difficult`` (N,) bool, ``truncated`` (N,) bool, and ``size`` ``(W, H)`` as written
        in the file (``None`` when missing).
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not a valid VOC annotation ({err}): fix or remove it "
                         "and its line in the split file") from None
    names, boxes, difficult, truncated = [], [], [], []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        name = obj.findtext("name")
        if bnd is None or name is None:
            raise ValueError(f"{path}: an <object> without <name> or <bndbox>; every object "
                             "needs both")
        try:
            xmin, ymin, xmax, ymax = (float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise ValueError(f"{path}: object {name!r} has a <bndbox> without numeric "
                             "xmin/ymin/xmax/ymax") from None
        names.append(name.strip())
        boxes.append([xmin, ymin, xmax, ymax])
        difficult.append(obj.findtext("difficult", "0").strip() == "1")
        truncated.append(obj.findtext("truncated", "0").strip() == "1")
    size = root.find("size")
    wh = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        try:
            wh = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
        except (ValueError, OverflowError):
            raise ValueError(f"{path}: <size> has width {size.findtext('width')!r} and height "
                             f"{size.findtext('height')!r}, not whole numbers of pixels; fix "
                             "them (or remove <size>: it is not needed)") from None
    return {"names": names,
            "boxes": voc_to_xyxy(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)),
            "difficult": torch.tensor(difficult, dtype=torch.bool),
            "truncated": torch.tensor(truncated, dtype=torch.bool), "size": wh}


class VOCDataset(torch.utils.data.Dataset):
    """The images of one split of a VOC-format folder, with their boxes.

    Args:
        root: folder with ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``.
        split: name of the split file, ``ImageSets/Main/<split>.txt``.
        image_size: ``None`` keeps every image as it is (boxes in its original pixels); an
            int resizes the shorter side to it and crops the central square (see
            :func:`~fcos_lib.data.transforms.resize_and_center_crop`), dropping the boxes
            cropped away.
        keep_difficult: keep the objects marked difficult (then targets carry ``difficult``);
            by default they are dropped.
        train: flip images at random in :meth:`finish` (for a training split).
        class_names: the classes, in label order (default: the 20 VOC classes).

    A sample is ``(image float32 (3, H, W) normalized, target)``: ``boxes`` (N, 4) float32
    xyxy pixels of the returned image, ``labels`` (N,) int64, ``image_id`` (position in the
    split) and, with ``keep_difficult``, ``difficult`` (N,) bool. ``ids[i]`` is the file name
    stem of image ``i``. An image without objects gives N = 0.
    """

    key_name = "voc"  # the readable start of ``cache_key``

    def __init__(self, root: str | os.PathLike, split: str, image_size: int | None = None,
                 keep_difficult: bool = False, train: bool = False,
                 class_names: list[str] | None = None):
        self.root = Path(root)
        split_file = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not split_file.is_file():
            raise FileNotFoundError(
                f"no split file {split_file}: a VOC-format folder needs Annotations/, "
                f"JPEGImages/ and ImageSets/Main/{split}.txt (one image id per line)")
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels or None, "
                             f"got {image_size}")
        self.split, self.image_size = split, image_size
        self.keep_difficult, self.train = keep_difficult, train
        self.class_names = list(class_names or VOC_CLASSES)
        index = {name: i for i, name in enumerate(self.class_names)}
        text = split_file.read_text(encoding="utf-8-sig")   # a byte-order mark is no id
        self.ids = [line.split()[0] for line in text.splitlines() if line.strip()]
        self.invalid: list[str] = []    # objects dropped for boxes that are no boxes
        self.annotations = [self._read_annotation(i, index) for i in self.ids]
        if self.invalid:
            print(f"{split_file}: {len(self.invalid)} object(s) dropped, their boxes NaN, "
                  f"infinite, inverted (xmin > xmax or ymin > ymax) or wholly outside the "
                  f"image; the first: {self.invalid[0]} (all in .invalid)", file=sys.stderr)
        # Everything that changes a cached sample: pixels (folder, split, size) and targets
        # (class list, difficult objects); cache.cache_key hashes it into a file name.
        self.cache_key = (f"{self.key_name}-{split}-{image_size or 'orig'}px-"
                          f"{'difficult' if keep_difficult else 'nodifficult'}-"
                          f"{self.root.resolve()}-{','.join(self.class_names)}")

    def sources(self) -> list[Path]:
        """The files the samples are made from: the split file, each image and annotation
        (a cache checks their sizes and times, :class:`fcos_lib.data.cache.DecodedCache`)."""
        return [self.root / "ImageSets" / "Main" / f"{self.split}.txt"] + [
            self.root / folder / f"{i}{suffix}" for i in self.ids
            for folder, suffix in (("JPEGImages", ".jpg"), ("Annotations", ".xml"))]

    def _read_annotation(self, image_id: str, index: dict[str, int]) -> Target:
        path = self.root / "Annotations" / f"{image_id}.xml"
        if not path.is_file():
            raise FileNotFoundError(f"image {image_id!r} of split {self.split!r} has no "
                                    f"annotation file {path}")
        ann = parse_voc_xml(path)
        unknown = sorted(set(ann["names"]) - set(index))
        if unknown:
            raise ValueError(f"{path}: class(es) {unknown} are not in class_names; pass "
                             "class_names=[...] with every class of your data")
        labels = torch.tensor([index[n] for n in ann["names"]], dtype=torch.int64)
        target = {"boxes": ann["boxes"], "labels": labels, "difficult": ann["difficult"]}
        boxes = ann["boxes"]          # NaN, infinite, inverted, outside: dropped, counted
        valid = proper_boxes(boxes)
        reasons = ["NaN, infinite or inverted"] * len(boxes)
        if ann["size"] is not None:   # the image's size, as the file gives it
            width, height = ann["size"]
            outside = valid & ((boxes[:, 0] >= width) | (boxes[:, 1] >= height)
                               | (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0))
            for k in outside.nonzero().flatten().tolist():
                reasons[k], valid[k] = f"wholly outside the {width} x {height} image", False
        for k in (~valid).nonzero().flatten().tolist():
            self.invalid.append(f"{path}: {ann['names'][k]} {voc_from_xyxy(boxes[k])} "
                                f"({reasons[k]})")
        target = select_objects(target, valid)
        if not self.keep_difficult:
            target = select_objects(target, ~target["difficult"])
            del target["difficult"]
        return target

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        return self.finish(*self.load(index))

    def load(self, index: int) -> tuple[Tensor, Target]:
        """Decode image ``index`` (RGB), resize and crop it: ``(uint8 (3, H, W), target)``."""
        path = self.root / "JPEGImages" / f"{self.ids[index]}.jpg"
        try:      # PIL decodes (torchvision.io's decoders are deprecated since 0.29)
            with warnings.catch_warnings():    # (Pillow's warning of a size refused here)
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                file = Image.open(path)
            with file:
                check_pixels(file, f"image {path}")
                image = rgb_pixels(file)            # (3, H, W) uint8 RGB, whatever the mode
        except Image.DecompressionBombError as err:
            raise ValueError(f"image {path} is too large to decode safely ({err}): shrink "
                               "it, e.g. to 2000 pixels on its longer side") from None
        except OSError as err:  # missing, truncated or not an image
            raise ValueError(f"cannot read image {path} ({err}): the file is missing, cut "
                             "short or no image; replace it (for VOC 2007: delete the VOCdevkit "
                             "folder and download again)") from None
        target = {**self.annotations[index], "image_id": index}
        h, w = image.shape[-2:]
        # Boxes past the border (a few in VOC) are clipped to the image.
        boxes = target["boxes"].clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        self._outside(index, keep, w, h)
        target, boxes = {**select_objects(target, keep), "boxes": boxes[keep]}, boxes[keep]
        if self.image_size is None:
            return image, target
        image, boxes, keep = resize_and_center_crop(image, boxes, self.image_size)
        return image, {**select_objects(target, keep), "boxes": boxes}

    def _outside(self, index: int, inside: Tensor, width: int, height: int) -> None:
        """Name, once each, the objects of image ``index`` that are dropped for lying wholly
        outside its real ``width`` x ``height`` pixels (its XML's size was missing or wrong)."""
        ann = self.annotations[index]
        for k in (~inside).nonzero().flatten().tolist():
            said = (f"{self.root / 'Annotations' / self.ids[index]}.xml: "
                    f"{self.class_names[ann['labels'][k]]} {voc_from_xyxy(ann['boxes'][k])}")
            if said not in self.invalid:
                self.invalid.append(said)
                print(f"{said}: wholly outside its {width} x {height} image, dropped",
                      file=sys.stderr)

    def finish(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        """Random horizontal flip (when ``train``), then normalize."""
        return finish_sample(image, target, flip=self.train)


def voc2007_folder(root: str | os.PathLike) -> Path:
    """Where VOC 2007 lives under a data folder: ``<root>/VOCdevkit/VOC2007``."""
    return Path(root) / "VOCdevkit" / "VOC2007"


class VOC2007DetectionTiny(VOCDataset):
    """PASCAL VOC 2007 as in EECS 498-007 assignment A4: 20 classes, the shorter side resized
    to ``image_size`` then the central square, random horizontal flips on the training split.

    Objects marked *difficult* (tiny, heavily occluded, hard to name) are dropped from the
    training splits, as the course does. On the evaluation splits (``val``, ``test``) they are
    kept, with the ``difficult`` flag, so that the mAP follows the VOC devkit: a detection of a
    difficult object counts neither as a hit nor as a miss, and missing one costs nothing. The
    course drops them there too, so that such a detection counts as a false positive; pass
    ``keep_difficult=False`` for its number.

    Args:
        root: the data folder; the images are in ``<root>/VOCdevkit/VOC2007``.
        split: ``"train"`` or ``"val"`` (the official halves of trainval), ``"trainval"``, or
            ``"test"`` (needs the test archive: ``download_voc2007(root, test=True)``).
        download: fetch and extract VOC 2007 first when it is missing or its extraction
            did not finish (no marker file from :func:`~fcos_lib.data.download.download_voc2007`).
        image_size: side of the square images, pixels.
        keep_difficult: None (kept on ``val`` and ``test``, dropped on ``train`` and
            ``trainval``), or True or False on every split.
    """

    SPLITS = ("train", "val", "trainval", "test")
    key_name = "voc2007-tiny"

    def __init__(self, root: str | os.PathLike = "data", split: str = "train",
                 download: bool = False, image_size: int = 224,
                 keep_difficult: bool | None = None):
        if split not in self.SPLITS:
            raise ValueError(f"unknown split {split!r}: VOC2007DetectionTiny has {self.SPLITS}")
        folder = voc2007_folder(root)
        present = (folder / "ImageSets" / "Main" / f"{split}.txt").is_file()
        if download:
            from fcos_lib.data import download as fetch

            archive = fetch.VOC2007_TEST if split == "test" else fetch.VOC2007_TRAINVAL
            # The split file alone does not prove the tree complete (an interrupted merge of
            # the test archive leaves it): download_voc2007 writes its marker only at the end.
            if not (present and fetch.marker(root, archive).is_file()):
                fetch.download_voc2007(root, test=split == "test")
        elif not present:
            test = " --test" if split == "test" else ""
            raise FileNotFoundError(
                f"VOC 2007 ({split}) is not in {folder}. Download it with\n"
                f"    python -m fcos_lib download voc2007 --root {root}{test}\n"
                f"or pass download=True (460 MB for trainval, 451 MB for test).")
        training = split in ("train", "trainval")
        if keep_difficult is None:
            keep_difficult = not training
        super().__init__(folder, split, image_size=image_size, keep_difficult=keep_difficult,
                         train=training)
