"""Pictures of what the detector sees: boxes on images, and grids of them.

Everything draws with plain functions that return pixels (uint8 (3, H, W), drawn by
``torchvision.utils.draw_bounding_boxes``) or matplotlib figures; the interactive viewer
(:mod:`fcos_lib.viewer`) is built on them, and :mod:`fcos_lib.curves` draws the numbers
(precision/recall and loss curves). Colours: one per class (predictions), white for the
ground truth.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from fcos_lib.data import denormalize

if TYPE_CHECKING:                      # matplotlib is imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = ["class_colors", "to_pixels", "png_bytes", "draw_detections", "plot_pictures",
           "plot_detections_grid", "class_mask"]

GT_COLOR = (255, 255, 255)


def class_colors(num_classes: int) -> list[tuple[int, int, int]]:
    """One RGB colour per class: matplotlib's tab10 or tab20, or hues of hsv beyond 20."""
    from matplotlib import colormaps

    if num_classes <= 20:
        cmap = colormaps["tab10" if num_classes <= 10 else "tab20"]
        rgba = [cmap(i) for i in range(num_classes)]
    else:
        rgba = [colormaps["hsv"](i / num_classes) for i in range(num_classes)]
    return [tuple(int(round(255 * v)) for v in color[:3]) for color in rgba]


def to_pixels(image: Tensor, scale: int = 1) -> Tensor:
    """An image for drawing: uint8 (3, H·scale, W·scale) on the CPU.

    Args:
        image: uint8 (3, H, W) pixels, or float (3, H, W) normalized with ImageNet mean and
            std (as the datasets give them).
        scale: integer enlargement (nearest neighbour), so that small images stay readable.
    """
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one image (3, H, W), got {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.is_floating_point():
        image = (denormalize(image) * 255).round().to(torch.uint8)
    if scale != 1:
        image = image.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return image


def png_bytes(pixels: Tensor) -> bytes:
    """uint8 (3, H, W) as a PNG file's bytes (with Pillow: torchvision.io's codecs are
    deprecated)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG")
    return buffer.getvalue()


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    """The name of class ``label`` (its number when there are no names)."""
    return class_names[label] if class_names else str(label)


def draw_detections(image: Tensor, prediction: dict[str, Tensor] | None = None,
                    target: dict[str, Tensor] | None = None, *,
                    class_names: Sequence[str] | None = None, score_thresh: float = 0.0,
                    classes: Sequence[int] | None = None, scale: int = 1,
                    width: int | None = None, labels: bool = True) -> Tensor:
    """Boxes on an image: predictions in their class's colour with "name score", ground
    truth in white with its name, overlaid. Labels sit on a filled patch of the box's colour,
    in a font that grows with the picture, so that they stay readable on any background.

    Args:
        image: uint8 or normalized float (3, H, W) (see :func:`to_pixels`).
        prediction: ``boxes`` (K, 4) xyxy pixels of ``image``, ``scores`` (K,), ``labels``.
        target: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,).
        class_names: names for the labels (default: the label numbers).
        score_thresh: draw predictions scoring at least this.
        classes: draw only these class labels (default: all).
        scale: enlarge the image this many times first.
        width: line width of the predictions, pixels (default: grows with the picture).
        labels: write "name score" on each box; False draws boxes alone (for pictures too
            small or too crowded to read, with a legend beside them, as
            :func:`plot_detections_grid` does).

    Returns:
        uint8 (3, H·scale, W·scale).
    """
    pixels = to_pixels(image, scale)
    largest = max([int(d["labels"].max()) for d in (prediction, target)
                   if d is not None and len(d["labels"])] + [0])
    if class_names and largest >= len(class_names):
        raise ValueError(f"label {largest} but only {len(class_names)} class names: pass the "
                         "names of the dataset the model was trained on")
    num_classes = len(class_names) if class_names else largest + 1
    colors = class_colors(num_classes)
    side = min(pixels.shape[-2:])
    width = width or max(2, round(side / 160))
    if target is not None and len(target["boxes"]):
        keep = class_mask(target["labels"].cpu(), classes)
        boxes, classes_ = target["boxes"].detach().cpu()[keep], target["labels"].cpu()[keep]
        if len(boxes):
            texts = [class_name(int(c), class_names) for c in classes_] if labels else None
            pixels = _draw(pixels, boxes.float() * scale, [GT_COLOR] * len(boxes), texts,
                           max(1, width // 2), side)
    if prediction is not None and len(prediction["boxes"]):
        scores, classes_ = prediction["scores"].detach().cpu(), prediction["labels"].cpu()
        keep = (scores >= score_thresh) & class_mask(classes_, classes)
        boxes = prediction["boxes"].detach().cpu()[keep]
        scores, classes_ = scores[keep], classes_[keep]
        if len(boxes):
            texts = ([f"{class_name(int(c), class_names)} {float(s):.2f}"
                      for c, s in zip(classes_, scores)] if labels else None)
            pixels = _draw(pixels, boxes.float() * scale,
                           [colors[int(c) % len(colors)] for c in classes_], texts, width, side)
    return pixels


# torchvision 0.21 and later can put a label on a filled patch; older ones write it bare.
_FILLED_LABELS = "fill_labels" in inspect.signature(draw_bounding_boxes).parameters


def _draw(pixels: Tensor, boxes: Tensor, colors: list[tuple[int, int, int]],
          texts: list[str] | None, width: int, side: int) -> Tensor:
    """``draw_bounding_boxes`` with a readable label: DejaVu Sans (shipped with matplotlib)
    sized to the picture, black or white text on a patch of the box's colour."""
    if texts is None:
        return draw_bounding_boxes(pixels, boxes, colors=colors, width=width)
    from matplotlib import font_manager

    font = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    style: dict[str, Any] = {"font": font, "font_size": max(9, round(side / 24))}
    if _FILLED_LABELS:
        dark = [0.299 * r + 0.587 * g + 0.114 * b < 140 for r, g, b in colors]
        style.update(fill_labels=True, label_colors=[(255, 255, 255) if d else (0, 0, 0)
                                                     for d in dark])
    return draw_bounding_boxes(pixels, boxes, labels=texts, colors=colors, width=width,
                               **style)


def class_mask(labels: Tensor, classes: Sequence[int] | None) -> Tensor:
    """(N,) bool: which ``labels`` are among ``classes`` (all of them when None)."""
    if classes is None:
        return torch.ones(len(labels), dtype=torch.bool)
    return torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))


# ------------------------------------------------------------------ figures


def plot_detections_grid(images: Tensor, predictions: Sequence[dict[str, Tensor]],
                         targets: Sequence[dict[str, Tensor]] | None = None, *,
                         class_names: Sequence[str] | None = None, score_thresh: float = 0.3,
                         ncols: int = 4, scale: int = 2, titles: Sequence[str] | None = None
                         ) -> Figure:
    """A grid of images with their predicted boxes (class colours) and ground truth (white),
    and a legend of the colours: small pictures have no room for a label on every box.

    Args:
        images: (B, 3, H, W) normalized (or uint8).
        predictions, targets: B dicts each (targets may be None).
        titles: one caption per image (default: the number of boxes drawn).

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.patches import Patch

    pictures, captions, seen = [], [], set()
    for i, image in enumerate(images):
        target = targets[i] if targets is not None else None
        pictures.append(draw_detections(image, predictions[i], target, class_names=class_names,
                                        score_thresh=score_thresh, scale=scale, labels=False))
        kept = predictions[i]["scores"] >= score_thresh
        seen |= set(predictions[i]["labels"][kept].tolist())
        captions.append(titles[i] if titles else f"{int(kept.sum())} boxes >= {score_thresh:g}")
    fig = plot_pictures(pictures, ncols=ncols, titles=captions)
    colors = class_colors(len(class_names) if class_names else max(seen, default=0) + 1)
    handles = [Patch(facecolor=[v / 255 for v in colors[c]], label=class_name(c, class_names))
               for c in sorted(seen)]
    if targets is not None:
        handles.append(Patch(facecolor="white", edgecolor="black", label="ground truth"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7),
                   bbox_to_anchor=(0.5, -0.02), frameon=False, fontsize=9)
        fig.subplots_adjust(bottom=0.08)
    return fig


def plot_pictures(pictures: Sequence[Tensor], *, ncols: int = 4, size: float = 3.2,
                  titles: Sequence[str] | None = None) -> Figure:
    """A grid of pictures, e.g. from :func:`draw_detections`.

    Args:
        pictures: uint8 (3, H, W) each.
        ncols: pictures per row; size: inches per picture; titles: one caption each.

    Returns:
        A matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    n = len(pictures)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(pictures[i].permute(1, 2, 0).cpu().numpy())
            if titles:
                ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig
