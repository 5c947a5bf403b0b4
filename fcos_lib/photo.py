"""Detection on a whole photo, with the boxes in the photo's own pixels.

The datasets resize every picture and crop it to a square (notebook 01): right for training,
wrong for a photo of your own, whose sides the crop would cut off. Here the whole photo goes
in, and the boxes come back where they are on it::

    photo H x W --resize, shorter side to `size`--> h x w --pad right and bottom--> a multiple of 32
                                     boxes, h x w pixels --divide by the scale, clip--> H x W pixels

The shorter side goes to the size the detector was trained at, as the datasets do, so that
objects appear at the scale it learnt; nothing is cut, and the longer side keeps its
proportion (up to four times the shorter: a longer panorama is shrunk to fit). The padding
is the dataset's mean colour (0 once normalized), below and right of the picture, so that
pixel coordinates need no shift.
"""
from __future__ import annotations

import io
import json
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from fcos_lib.data.transforms import normalize, rgb_pixels
from fcos_lib.data.voc import check_pixels

if TYPE_CHECKING:   # what read_photo takes: a path, a file's bytes, a PIL image, or a tensor
    from PIL.Image import Image

    Photo = str | Path | bytes | bytearray | memoryview | Image | Tensor

__all__ = ["IMAGE_KINDS", "read_photo", "letterbox", "boxes_to_photo", "detect_photo",
           "sample_photo", "draw_photo", "as_record", "record_json", "as_coco_results"]

MAX_ASPECT = 4
IMAGE_KINDS = "JPEG, PNG, BMP, GIF, TIFF or WebP"   # what the commands and the viewer read


def read_photo(photo: Photo, name: str | None = None) -> Tensor:
    """A photo as uint8 (3, H, W) RGB, upright as a viewer shows it (its EXIF orientation
    applied, as phones record it). Any mode Pillow opens is taken, 16-bit, greyscale,
    palette, CMYK, with transparency: see :func:`fcos_lib.data.transforms.rgb_pixels`. A
    photo of more than :data:`fcos_lib.data.voc.MAX_PIXELS` is refused before it is decoded.

    Args:
        photo: a path, the bytes of a file (an upload), a PIL image, or uint8 (3, H, W).
        name: what messages call it (default: its path; "the uploaded file" for bytes).

    Raises:
        ValueError: no such file, not an image, or an image too large to decode safely;
            the message names the photo and what to do.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if torch.is_tensor(photo):
        if photo.dtype != torch.uint8 or photo.dim() != 3 or photo.shape[0] != 3:
            raise ValueError(f"a photo tensor must be uint8 (3, H, W), got {photo.dtype} "
                             f"{tuple(photo.shape)}")
        return photo
    raw = isinstance(photo, (bytes, bytearray, memoryview))
    name = name or ("the uploaded file" if raw else str(getattr(photo, "filename", "") or photo))
    if not isinstance(photo, Image.Image) and not raw and not Path(photo).is_file():
        raise ValueError(f"{photo}: no such file")
    try:      # only the header is read here, so that the size is checked before decoding
        with warnings.catch_warnings():     # (Pillow's warning of a size refused below)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = photo if isinstance(photo, Image.Image) else Image.open(
                io.BytesIO(bytes(photo)) if raw else photo)
    except UnidentifiedImageError:     # (its words name a BytesIO object, not the file)
        raise ValueError(f"{name}: not an image this can read; it reads {IMAGE_KINDS} files"
                         ) from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{name}: too large to decode safely ({error}); shrink it first, e.g. "
                         "to 2000 pixels on its longer side") from None
    except OSError as error:
        raise ValueError(_unreadable(name, error)) from None
    with image:
        check_pixels(image, name)
        try:
            pixels = rgb_pixels(ImageOps.exif_transpose(image))
        except OSError as error:           # a truncated or damaged image file
            raise ValueError(_unreadable(name, error)) from None
        except ValueError as error:        # a mode with no way to RGB
            raise ValueError(f"{name}: its pixels ({error}) do not convert to RGB: save it as "
                             "an RGB JPEG or PNG") from None
    return pixels


def _unreadable(name: str, error: OSError) -> str:
    """The message for a file Pillow opened but could not read, without the memory address
    of an in-memory file that Pillow's own words carry."""
    said = re.sub(r"<_io\.\w+ object at 0x[0-9a-fA-F]+>", "the file", str(error))
    return (f"{name}: not an image this can read ({said}); it reads {IMAGE_KINDS} files: save "
            "it again as one")


def letterbox(pixels: Tensor, size: int, multiple: int = 32) -> tuple[Tensor, float]:
    """The whole photo as the detector's input: resized, normalized, padded.

    Args:
        pixels: uint8 (3, H, W).
        size: the shorter side after resizing (the training size).
        multiple: the padded sides are multiples of it.

    Returns:
        ``(image, scale)``: float32 (3, H', W') normalized, H' and W' multiples of
        ``multiple``, the photo in its top-left ``round(H·scale) x round(W·scale)`` pixels.

    >>> image, scale = letterbox(torch.zeros(3, 375, 500, dtype=torch.uint8), 224)
    >>> tuple(image.shape), round(scale, 4)
    ((3, 224, 320), 0.5973)
    """
    from torchvision.transforms.v2 import functional as F

    H, W = pixels.shape[-2:]
    scale = min(size / min(H, W), MAX_ASPECT * size / max(H, W))
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    resized = normalize(F.resize(pixels, [h, w], antialias=True))
    padded = resized.new_zeros(3, math.ceil(h / multiple) * multiple,
                               math.ceil(w / multiple) * multiple)
    padded[:, :h, :w] = resized
    return padded, scale


def boxes_to_photo(boxes: Tensor, scale: float, height: int, width: int) -> Tensor:
    """Boxes (K, 4) xyxy in the detector's input pixels -> the photo's, clipped to it."""
    out = boxes / scale
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out


def detect_photo(model: torch.nn.Module, photo: Photo, size: int, *, score_thresh: float = 0.3,
                 nms_thresh: float = 0.6) -> dict[str, Tensor]:
    """A detector's boxes on a whole photo, in the photo's pixels.

    Args:
        model: an FCOS (its device is used).
        photo: anything :func:`read_photo` takes.
        size: the image size the model was trained at (``config["train"]["image_size"]``).
        score_thresh, nms_thresh: as for :func:`fcos_lib.inference.detect`.

    Returns:
        ``boxes`` (K, 4) float32 xyxy pixels of the photo, ``scores`` (K,), ``labels`` (K,),
        ``levels`` (K,), on the CPU, best score first.
    """
    pixels = read_photo(photo)
    image, scale = letterbox(pixels, size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.no_grad():
        found = model.predict(image[None].to(device), score_thresh=score_thresh,
                              nms_thresh=nms_thresh)[0]
    model.train(was_training)
    found = {k: v.cpu() for k, v in found.items()}
    found["boxes"] = boxes_to_photo(found["boxes"], scale, *pixels.shape[-2:])
    return found


def sample_photo(dataset: str = "shapes", root: str | Path = "data") -> Path:
    """A photo to try a detector of ``dataset`` on.

    ``"shapes"``: the one that ships with the library, two scenes of the validation split side
    by side, 480 x 240 pixels (``tools/make_sample_photo.py`` draws it). ``"voc2007-tiny"``:
    the first validation photo of VOC 2007 under ``root``, whole, as it was downloaded.

    Raises:
        FileNotFoundError: VOC 2007 is not under ``root``; the message says how to get it.
    """
    if dataset == "shapes":
        return Path(__file__).resolve().parent / "assets" / "shapes_photo.jpg"
    from fcos_lib.data.voc import voc2007_folder

    folder = voc2007_folder(root)
    split = folder / "ImageSets" / "Main" / "val.txt"
    if not split.is_file():
        raise FileNotFoundError(f"no VOC 2007 in {folder}: download it with `python -m fcos_lib "
                                f"download voc2007 --root {root}`, or pass a photo of your own")
    return folder / "JPEGImages" / f"{split.read_text(encoding='utf-8-sig').split()[0]}.jpg"


def draw_photo(pixels: Tensor, found: dict[str, Tensor], class_names: list[str], *,
               score_thresh: float = 0.0, max_side: int | None = None) -> Tensor:
    """The photo with its detections scoring at least ``score_thresh`` (class colours,
    "name score"), at its own size, or shrunk to ``max_side`` pixels on its longer side (for
    a screen). The best box is drawn last, on top, and each label is placed clear of the
    others, the best first (:func:`fcos_lib.review.write_labels`).

    Args:
        pixels: uint8 (3, H, W); found: :func:`detect_photo`'s output, in its pixels.
    """
    from torchvision.transforms.v2 import functional as F
    from torchvision.utils import draw_bounding_boxes

    from fcos_lib.review import write_labels
    from fcos_lib.viz import class_colors

    keep = found["scores"] >= score_thresh
    boxes, scores, labels = found["boxes"][keep].float(), found["scores"][keep], found[
        "labels"][keep]
    if len(labels) and int(labels.max()) >= len(class_names):
        raise ValueError(f"label {int(labels.max())} but only {len(class_names)} class names: "
                         "pass the names of the dataset the model was trained on")
    if max_side is not None and max(pixels.shape[-2:]) > max_side:
        factor = max_side / max(pixels.shape[-2:])
        pixels = F.resize(pixels, [round(d * factor) for d in pixels.shape[-2:]], antialias=True)
        boxes = boxes * factor
    if not len(boxes):
        return pixels
    palette = class_colors(len(class_names))
    colors = [palette[int(c)] for c in labels]
    rising = torch.argsort(scores, stable=True).tolist()
    pixels = draw_bounding_boxes(pixels, boxes[rising], colors=[colors[k] for k in rising],
                                 width=max(2, round(min(pixels.shape[-2:]) / 160)))
    best = rising[::-1]
    texts = [f"{class_names[int(labels[k])]} {float(scores[k]):.2f}" for k in best]
    return write_labels(pixels, boxes[best], texts, [colors[k] for k in best])


def as_record(found: dict[str, Tensor], class_names: list[str], *, image: str, width: int,
              height: int, **about) -> dict:
    """A photo's detections as plain JSON data: the photo, its size, ``about`` (the checkpoint,
    the threshold...) and one ``{"class", "label", "score", "box"}`` per detection, the box
    ``[x1, y1, x2, y2]`` in the photo's pixels (0 to width, 0 to height)."""
    detections = [{"class": class_names[label], "label": label, "score": round(score, 4),
                   "box": [round(v, 2) for v in box]}
                  for box, score, label in zip(found["boxes"].tolist(), found["scores"].tolist(),
                                               found["labels"].tolist())]
    return {"image": image, "width": width, "height": height, **about,
            "detections": detections}


def record_json(record: dict) -> str:
    """:func:`as_record`'s data as JSON text: a line per field, a line per detection."""
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in record.items() if k != "detections"]
    lines = [f"  {json.dumps(d)}" for d in record["detections"]]
    return "{\n" + ",\n".join(head + [' "detections": [' + ("\n" if lines else "")
                                       + ",\n".join(lines) + ("\n ]" if lines else "]")]
                              ) + "\n}\n"


def as_coco_results(record: dict, image_id: int) -> list[dict]:
    """One photo's record (:func:`as_record`) as COCO results: ``image_id``, ``category_id``
    (the label + 1: COCO's categories count from 1), ``bbox`` ``[x, y, width, height]``,
    ``score``, and the ``file_name``."""
    return [{"image_id": image_id, "file_name": record["image"],
             "category_id": d["label"] + 1, "score": d["score"],
             "bbox": [d["box"][0], d["box"][1], round(d["box"][2] - d["box"][0], 2),
                      round(d["box"][3] - d["box"][1], 2)]}
            for d in record["detections"]]
