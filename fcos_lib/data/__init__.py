"""The data (notebook 01): samples, the generated shapes dataset, PASCAL VOC, the download.

A sample is ``(image, target)``: ``image`` float32 (3, H, W) normalized with ImageNet mean and
std; ``target`` a dict with ``boxes`` (N, 4) float32 xyxy pixels of that image, ``labels`` (N,)
int64 in ``[0, num_classes)``, ``image_id`` (int) and, when a dataset keeps difficult objects,
``difficult`` (N,) bool. Every dataset has ``class_names``, and makes a sample in two stages,
``load`` (slow, deterministic: uint8 pixels at their final size) and ``finish`` (fast: random
flip on training splits, normalization), which :mod:`fcos_lib.data.cache` uses.
"""
from __future__ import annotations

from typing import Any

from fcos_lib.data.download import DownloadError, download_voc2007
from fcos_lib.data.shapes import SHAPE_CLASSES, ShapesDataset
from fcos_lib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    collate,
    denormalize,
    normalize,
    random_horizontal_flip,
    resize_and_center_crop,
)
from fcos_lib.data.voc import VOC_CLASSES, VOC2007DetectionTiny, VOCDataset, parse_voc_xml

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "collate", "denormalize", "normalize",
           "resize_and_center_crop", "random_horizontal_flip", "ShapesDataset", "SHAPE_CLASSES",
           "VOCDataset", "VOC2007DetectionTiny", "VOC_CLASSES", "parse_voc_xml",
           "download_voc2007", "DownloadError", "build_dataset", "check_dataset_arguments",
           "DATASETS"]

DATASETS = ("shapes", "voc2007-tiny")


def check_dataset_arguments(name: str, kwargs: dict) -> None:
    """Refuse an unknown dataset, or arguments its class does not take, naming the ones it
    does (``split`` and ``image_size`` come from the run)."""
    import inspect

    classes = {"shapes": ShapesDataset, "voc2007-tiny": VOC2007DetectionTiny}
    if name not in classes:
        raise ValueError(f"dataset={name!r}: choose one of {DATASETS}")
    taken = [p for p in inspect.signature(classes[name]).parameters
             if p not in ("self", "split", "image_size")]
    unknown = sorted(set(kwargs) - set(taken))
    if unknown:
        raise ValueError(f"dataset_kwargs {unknown} are not arguments of the {name} dataset; "
                         f"it takes {taken}")


def build_dataset(name: str, split: str, image_size: int = 224, **kwargs: Any
                  ) -> ShapesDataset | VOC2007DetectionTiny:
    """A dataset by name, as training configs name them.

    Args:
        name: ``"shapes"`` (:class:`ShapesDataset`) or ``"voc2007-tiny"``
            (:class:`VOC2007DetectionTiny`, ``root`` defaults to ``"data"``).
        split: ``"train"`` (random flips) or ``"val"``; VOC also has ``"trainval"``, ``"test"``.
        image_size: side of the square images, pixels.
        **kwargs: passed on to the dataset (``length``, ``seed``, ``root``, ``download``, ...).

    Raises:
        ValueError: an unknown dataset or argument (:func:`check_dataset_arguments`).
    """
    check_dataset_arguments(name, kwargs)
    if name == "shapes":
        return ShapesDataset(split, image_size=image_size, **kwargs)
    return VOC2007DetectionTiny(split=split, image_size=image_size, **kwargs)
