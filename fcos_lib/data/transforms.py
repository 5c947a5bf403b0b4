"""What happens to an image and its boxes between the file and the model.

Every dataset of :mod:`fcos_lib.data` produces a sample in two stages (see
:mod:`fcos_lib.data.cache`): ``load`` makes a uint8 image (3, H, W) at its final size, and
:func:`finish_sample` flips it at random (training split only) and normalizes it. The geometric
steps use ``torchvision.transforms.v2`` on a ``tv_tensors.BoundingBoxes``, so the boxes move
with the pixels by the same code that moves the pixels.

Boxes are ``xyxy`` in pixel edges: a box covering a whole W x H image is ``(0, 0, W, H)``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Target = dict[str, Any]


def rgb_pixels(image: Any) -> Tensor:
    """A Pillow image of any mode as the uint8 RGB (3, H, W) the model expects, its values
    scaled into 0..255, never clipped: 16-bit greys (``I;16``, ``I;16B``...) divided by 257;
    ``I`` (32-bit integers) and ``F`` (floats) as below; transparency (``RGBA``, ``LA``, a
    ``P`` palette with a transparent colour...) laid on white, as a viewer shows it; every
    other mode (``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``...) by Pillow's own conversion.

    Raises:
        ValueError: a mode Pillow cannot turn into RGB.

    >>> from PIL import Image
    >>> rgb_pixels(Image.new("I;16", (2, 1), 65535))[:, 0, 0].tolist()
    [255, 255, 255]
    """
    import numpy as np

    if image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.float64) / 257          # 65535 -> 255
    elif image.mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        # The range of a type, where the values fit one: 0..1 (floats only: fractions, the
        # usual float convention), 0..255 (8 bits), 0..65535 (16 bits: what a 16-bit PNG or
        # TIFF may open as). Otherwise the image's own min..max, stretched to 0..255: a
        # 32-bit or float image beyond those has no range of its own to go by.
        ranges = (1.0, 255.0, 65535.0) if image.mode == "F" else (255.0, 65535.0)
        fits = [top for top in ranges if lo >= 0 and hi <= top]
        if fits:
            lo, hi = 0.0, fits[0]
        grey = (np.nan_to_num(values, nan=lo, posinf=hi, neginf=lo) - lo) / max(hi - lo, 1e-12)
        grey = grey * 255
    else:
        if {"A", "a"} & set(image.getbands()) or "transparency" in image.info:
            from PIL import Image

            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        rgb = np.asarray(image.convert("RGB"))
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()
    grey = torch.from_numpy(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    return grey.expand(3, *grey.shape).contiguous()


def select_objects(target: Target, keep: Tensor) -> Target:
    """The target with only the objects where ``keep`` (N,) bool is true.

    Every per-object tensor (``boxes``, ``labels``, ``difficult``, ...) is indexed together;
    other entries (``image_id``) are kept as they are.
    """
    n = len(keep)
    return {k: v[keep] if isinstance(v, Tensor) and v.dim() >= 1 and len(v) == n else v
            for k, v in target.items()}


def resize_and_center_crop(image: Tensor, boxes: Tensor, size: int,
                           min_size: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Resize the shorter side to ``size``, then cut the central ``size`` x ``size`` square.

    The boxes are scaled with the image, shifted by the crop's offset and clipped to the crop.
    A box with less than ``min_size`` pixels of width or height left (cropped away, or
    degenerate from the start) is dropped: ``keep`` says which survived.

    Args:
        image: uint8 (3, H, W).
        boxes: (N, 4) float32, xyxy pixels of ``image``.
        size: side of the output square, pixels.
        min_size: smallest width and height a kept box has, pixels.

    Returns:
        ``(image (3, size, size) uint8, boxes (K, 4) float32 xyxy pixels of the new image,
        keep (N,) bool)``.

    Raises:
        ValueError: ``image`` is not uint8 (3, H, W), ``boxes`` are not floating point, or
            ``size`` is below 1.
    """
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"resize_and_center_crop needs one uint8 RGB image (3, H, W), got "
                         f"{image.dtype} {tuple(image.shape)}: pass a dataset's load() output, "
                         "one image at a time, before normalize")
    if not boxes.is_floating_point():
        raise ValueError(f"resize_and_center_crop needs floating-point boxes, got {boxes.dtype}: "
                         "convert them with boxes.float() (scaled boxes are fractional)")
    if size < 1:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    h, w = image.shape[-2:]
    box_tv = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w))
    # v2.Resize with an int resizes the shorter side; CenterCrop shifts and clamps the boxes.
    resize_crop = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])
    out_image, out_boxes = resize_crop(tv_tensors.Image(image), box_tv)
    out_boxes = out_boxes.as_subclass(Tensor)
    keep = ((out_boxes[:, 2] - out_boxes[:, 0]) >= min_size) & \
        ((out_boxes[:, 3] - out_boxes[:, 1]) >= min_size)
    return out_image.as_subclass(Tensor), out_boxes[keep], keep


def random_horizontal_flip(image: Tensor, boxes: Tensor, p: float = 0.5) -> tuple[Tensor, Tensor]:
    """Mirror the image left-right with probability ``p``; a box (x1, y1, x2, y2) of an image
    W wide becomes (W - x2, y1, W - x1, y2).

    The coin is ``torch``'s global random generator, so ``torch.manual_seed`` repeats a run.

    Args:
        image: (3, H, W), any dtype.
        boxes: (N, 4) float32 xyxy pixels.

    Returns:
        ``(image, boxes)``, both flipped or both as they were.
    """
    box_tv = tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=tuple(image.shape[-2:]))
    out_image, out_boxes = v2.RandomHorizontalFlip(p)(tv_tensors.Image(image), box_tv)
    return out_image.as_subclass(Tensor), out_boxes.as_subclass(Tensor)


def normalize(image: Tensor) -> Tensor:
    """uint8 (3, H, W) or (B, 3, H, W) -> float32 normalized with ImageNet mean and std.

    Raises:
        ValueError: ``image`` is not uint8 (a float image is already normalized, or in 0..1).
    """
    if image.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 pixels 0..255, got {image.dtype}: a float "
                         "image is already normalized or scaled to 0..1; normalize the uint8 "
                         "image from the dataset's load() instead")
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return (image.float() / 255.0 - mean) / std


def denormalize(images: Tensor) -> Tensor:
    """Undo :func:`normalize` for display.

    Args:
        images: float (3, H, W) or (B, 3, H, W), normalized with ImageNet mean and std.

    Returns:
        The same shape, float in [0, 1], on the input's device.
    """
    mean = torch.tensor(IMAGENET_MEAN, device=images.device, dtype=images.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device, dtype=images.dtype).view(3, 1, 1)
    return (images * std + mean).clamp(0.0, 1.0)


def finish_sample(image: Tensor, target: Target, flip: bool) -> tuple[Tensor, Target]:
    """The fast second stage of every dataset: random flip (when ``flip``), then normalize.

    Args:
        image: uint8 (3, H, W) from a dataset's ``load``.
        target: its dict; ``boxes`` (N, 4) float32 xyxy pixels.
        flip: flip with probability 1/2 (the training split) or never.

    Returns:
        ``(image float32 (3, H, W) normalized, target)``, a new target dict.
    """
    target = dict(target)
    if flip:
        image, target["boxes"] = random_horizontal_flip(image, target["boxes"])
    return normalize(image), target


def collate(batch: list[tuple[Tensor, Target]]) -> tuple[Tensor, list[Target]]:
    """Stack a list of samples for a DataLoader.

    Args:
        batch: ``[(image (3, H, W), target), ...]``, images of one size.

    Returns:
        ``(images (B, 3, H, W), [target, ...])``: targets stay a list, since each image has
        its own number of boxes.
    """
    if not batch:
        raise ValueError("collate got an empty batch: check the dataset's length")
    sizes = {tuple(image.shape) for image, _ in batch}
    if len(sizes) > 1:
        raise ValueError(f"collate needs images of one size, got {sorted(sizes)}: give the "
                         "dataset an image_size so that it resizes and crops")
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
