"""Pictures of what the detector sees: boxes on images, and grids of them.

Everything draws with plain functions that return pixels (uint8 (3, H, W); boxes by
``torchvision.utils.draw_bounding_boxes``) or matplotlib figures; the interactive viewer
(:mod:`fcos_lib.viewer`) is built on them, and :mod:`fcos_lib.curves` draws the numbers
(precision/recall and loss curves). Colours: one per class (predictions), white for the
ground truth. Labels sit on a patch of their box's colour, each clear of the others
(:func:`place_labels`), in a font whose capitals stand at least :data:`TEXT_PX` pixels high
where the picture is seen (:mod:`fcos_lib.viz.labels`); a drawing function given a ``placed``
list appends to it a :class:`Label` for each label it wrote, so that a test can check them.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from fcos_lib.data import denormalize
from fcos_lib.viz.labels import (
    TEXT_PX,
    Label,
    label_font,
    place_labels,
    readable_size,
    text_height,
    write_labels,
)

if TYPE_CHECKING:                      # matplotlib is imported when a plot is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TEXT_PX", "Label", "class_colors", "to_pixels", "png_bytes", "label_font",
           "text_height", "readable_size", "place_labels", "write_labels", "draw_detections",
           "plot_pictures", "plot_detections_grid", "beside", "class_mask"]

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
                    width: int | None = None, labels: bool = True,
                    font_size: int | None = None, placed: list[Label] | None = None) -> Tensor:
    """Boxes on an image: predictions in their class's colour with "name score" (the best
    drawn on top, its label placed first), ground truth in white with its name. Each label
    is written after every box, clear of the others (:func:`write_labels`): two classes on
    one object show two labels, one beside the other.

    Args:
        image: uint8 or normalized float (3, H, W) (see :func:`to_pixels`).
        prediction: ``boxes`` (K, 4) xyxy pixels of ``image``, ``scores`` (K,), ``labels``.
        target: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,).
        class_names: names for the labels (default: the label numbers).
        score_thresh: draw predictions scoring at least this.
        classes: draw only these class labels (default: all).
        scale: enlarge the image this many times first.
        width: line width of the predictions, pixels (default: grows with the picture).
        labels: write the labels; False draws boxes alone.
        font_size: of the labels, pixels of the returned picture (default: readable at its
            own size, :func:`readable_size`, or a 24th of its shorter side if more).
        placed: a list for the labels' :class:`Label` (see :func:`write_labels`).

    Returns:
        uint8 (3, H·scale, W·scale).
    """
    pixels = to_pixels(image, scale)
    largest = max([int(d["labels"].max()) for d in (prediction, target)
                   if d is not None and len(d["labels"])] + [0])
    if class_names and largest >= len(class_names):
        raise ValueError(f"label {largest} but only {len(class_names)} class names: pass the "
                         "names of the dataset the model was trained on")
    colors = class_colors(len(class_names) if class_names else largest + 1)
    width = width or max(2, round(min(pixels.shape[-2:]) / 160))
    boxes, texts, hues = [], [], []             # the labels, in the order they get spots
    if target is not None and len(target["boxes"]):
        keep = class_mask(target["labels"].cpu(), classes)
        truth = target["boxes"].detach().cpu()[keep].float() * scale
        if len(truth):
            pixels = draw_bounding_boxes(pixels, truth, colors=[GT_COLOR] * len(truth),
                                         width=max(1, width // 2))
        boxes, hues = list(truth), [GT_COLOR] * len(truth)
        texts = [class_name(int(c), class_names) for c in target["labels"].cpu()[keep]]
    if prediction is not None and len(prediction["boxes"]):
        scores, classes_ = prediction["scores"].detach().cpu(), prediction["labels"].cpu()
        keep = ((scores >= score_thresh) & class_mask(classes_, classes)).nonzero()[:, 0]
        rising = keep[torch.argsort(scores[keep], stable=True)].tolist()  # the best on top
        found = prediction["boxes"].detach().cpu()[rising].float() * scale
        tints = [colors[int(classes_[k]) % len(colors)] for k in rising]
        if rising:
            pixels = draw_bounding_boxes(pixels, found, colors=tints, width=width)
        best = range(len(rising) - 1, -1, -1)   # labelled first, the ground truth after
        boxes = [found[i] for i in best] + boxes
        hues = [tints[i] for i in best] + hues
        texts = [f"{class_name(int(classes_[rising[i]]), class_names)} "
                 f"{float(scores[rising[i]]):.2f}" for i in best] + texts
    if labels and boxes:
        side = min(pixels.shape[-2:])           # readable at the picture's own size
        pixels = write_labels(pixels, torch.stack(boxes), texts, hues, placed=placed,
                              font_size=font_size or max(readable_size(), round(side / 24)))
    return pixels


def class_mask(labels: Tensor, classes: Sequence[int] | None) -> Tensor:
    """(N,) bool: which ``labels`` are among ``classes`` (all of them when None)."""
    if classes is None:
        return torch.ones(len(labels), dtype=torch.bool)
    return torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))


def beside(*pictures: Tensor, fill: int = 255) -> Tensor:
    """Pictures side by side, each padded below with ``fill`` to the tallest.

    Args:
        pictures: uint8 (3, H_i, W_i) each.

    Returns:
        uint8 (3, max H_i, sum W_i).
    """
    tallest = max(p.shape[1] for p in pictures)
    return torch.cat([torch.nn.functional.pad(p, (0, 0, 0, tallest - p.shape[1]), value=fill)
                      for p in pictures], dim=2)


# ------------------------------------------------------------------ figures


def plot_detections_grid(images: Tensor | Sequence[Tensor],
                         predictions: Sequence[dict[str, Tensor]] | None = None,
                         targets: Sequence[dict[str, Tensor]] | None = None, *,
                         class_names: Sequence[str] | None = None, score_thresh: float = 0.3,
                         ncols: int = 4, scale: int = 2, size: float = 3.2,
                         titles: Sequence[str] | None = None, labels: bool = True,
                         placed: list[list[Label]] | None = None) -> Figure:
    """A grid of images with their predicted boxes (class colours, "name score") and ground
    truth (white, its name), under a legend of the colours when there are predictions. The
    labels' font is sized to the figure: their capitals stand :data:`TEXT_PX` pixels high or
    more in the figure saved at its dpi, however the pictures are scaled into their axes.

    Args:
        images: B images, normalized or uint8 (3, H, W) each (or one (B, 3, H, W) tensor).
        predictions, targets: B dicts each (either may be None), as :func:`draw_detections`.
        score_thresh, scale: as :func:`draw_detections`; a picture the figure shows twice
            its size or more is enlarged again, by a whole factor, before its labels are
            written (they stay sharp).
        ncols, size: pictures per row; inches per picture (:func:`plot_pictures`).
        titles: one caption per image (default: the number of boxes drawn, with predictions).
        labels: write the labels (False: boxes and legend alone).
        placed: a list to which each picture's list of :class:`Label` is appended, in the
            grid's order, in the pixels of the picture shown (the image of its axes).

    Returns:
        A matplotlib Figure.
    """
    from matplotlib.patches import Patch

    nothing = [None] * len(images)
    predicted, truth = predictions or nothing, targets or nothing

    def picture(i: int, enlarge: int = 1, **style) -> Tensor:
        return draw_detections(images[i], predicted[i], truth[i], class_names=class_names,
                               score_thresh=score_thresh, scale=scale * enlarge, **style)

    kept = [p["scores"] >= score_thresh for p in predictions or []]
    captions = titles or [f"{int(k.sum())} boxes >= {score_thresh:g}" for k in kept] or None
    fig = plot_pictures([picture(i, labels=False) for i in range(len(images))], ncols=ncols,
                        size=size, titles=captions)
    if predictions is not None:
        seen = sorted({int(c) for p, k in zip(predictions, kept) for c in p["labels"][k]})
        colors = class_colors(len(class_names) if class_names else max(seen, default=0) + 1)
        handles = [Patch(facecolor=[v / 255 for v in colors[c]],
                         label=class_name(c, class_names)) for c in seen]
        if targets is not None:
            handles.append(Patch(facecolor="white", edgecolor="black", label="ground truth"))
        if handles:
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7),
                       bbox_to_anchor=(0.5, -0.02), frameon=False, fontsize=9)
            fig.subplots_adjust(bottom=0.08)
    for i, ax in enumerate(ax for ax in fig.axes if ax.images and labels):
        shown, written = _shown(ax), []
        enlarge = max(1, int(shown))            # the labels written near the screen's pixels
        pixels = picture(i, enlarge, font_size=readable_size(shown / enlarge), placed=written)
        ax.images[0].set_data(pixels.permute(1, 2, 0).numpy())   # (in the same place)
        if placed is not None:
            placed.append(written)
    return fig


def _shown(ax: Axes) -> float:
    """Pixels of the figure, saved at its dpi, per pixel of the picture shown in ``ax``."""
    ax.apply_aspect()
    (left, _), (right, _) = ax.transData.transform([(0.0, 0.0), (1.0, 0.0)])
    return abs(right - left)


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
