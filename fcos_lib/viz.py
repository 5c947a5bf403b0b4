"""Pictures of what the detector sees: boxes, grids, precision/recall and loss curves, and
an interactive viewer.

Everything draws with plain functions that return pixels (uint8 (3, H, W), drawn by
``torchvision.utils.draw_bounding_boxes``) or matplotlib figures. The viewer
(:class:`BoxViewer`) only wires ipywidgets controls to :func:`render_view`: pick an image,
a score threshold, the classes to show, ground truth on or off, and an FPN level whose
positive locations (the points that learn a box, from :func:`fcos_lib.targets.assign_targets`)
are overlaid, coloured by their centerness target.

Colours: one per class (predictions), white for the ground truth, magenta for the locations
of a level.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from fcos_lib.evaluate import interpolated_precision

__all__ = ["class_colors", "to_pixels", "png_bytes", "draw_detections", "level_overlays",
           "overlay_settings", "render_view", "plot_pictures", "plot_detections_grid",
           "plot_pr_curves", "plot_loss_curves", "BoxViewer", "box_viewer"]

GT_COLOR = (255, 255, 255)
LOCATION_COLOR = (255, 0, 255)  # the points of an FPN level: magenta, seen on most pictures


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
    from fcos_lib.data import denormalize

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


def _name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names else str(label)


def draw_detections(image: Tensor, prediction: dict[str, Tensor] | None = None,
                    target: dict[str, Tensor] | None = None, *,
                    class_names: Sequence[str] | None = None, score_thresh: float = 0.0,
                    classes: Sequence[int] | None = None, scale: int = 1,
                    width: int = 2) -> Tensor:
    """Boxes on an image: predictions in their class's colour with "name score", ground
    truth in white with its name, overlaid.

    Args:
        image: uint8 or normalized float (3, H, W) (see :func:`to_pixels`).
        prediction: ``boxes`` (K, 4) xyxy pixels of ``image``, ``scores`` (K,), ``labels``.
        target: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,).
        class_names: names for the labels (default: the label numbers).
        score_thresh: draw predictions scoring at least this.
        classes: draw only these class labels (default: all).
        scale: enlarge the image this many times first.
        width: line width of the predictions, pixels.

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
    if target is not None and len(target["boxes"]):
        keep = _class_mask(target["labels"].cpu(), classes)
        boxes, labels = target["boxes"].detach().cpu()[keep], target["labels"].cpu()[keep]
        if len(boxes):
            pixels = draw_bounding_boxes(pixels, boxes.float() * scale, width=1,
                                         labels=[_name(int(c), class_names) for c in labels],
                                         colors=[GT_COLOR] * len(boxes))
    if prediction is not None and len(prediction["boxes"]):
        scores, labels = prediction["scores"].detach().cpu(), prediction["labels"].cpu()
        keep = (scores >= score_thresh) & _class_mask(labels, classes)
        boxes, scores, labels = prediction["boxes"].detach().cpu()[keep], scores[keep], labels[keep]
        if len(boxes):
            texts = [f"{_name(int(c), class_names)} {float(s):.2f}" for c, s in zip(labels, scores)]
            pixels = draw_bounding_boxes(pixels, boxes.float() * scale, width=width, labels=texts,
                                         colors=[colors[int(c) % len(colors)] for c in labels])
    return pixels


def _class_mask(labels: Tensor, classes: Sequence[int] | None) -> Tensor:
    if classes is None:
        return torch.ones(len(labels), dtype=torch.bool)
    return torch.isin(labels, torch.as_tensor(list(classes), dtype=labels.dtype))


# ------------------------------------------------------------------ FPN levels


def level_overlays(target: dict[str, Tensor], image_size: tuple[int, int],
                   strides: Sequence[int], location_offset: float = 0.5,
                   size_ranges: Sequence[tuple[float, float]] | None = None,
                   center_sampling_radius: float | None = None) -> list[dict[str, Tensor]]:
    """Which locations of each level learn a box for this image, and their centerness.

    Args:
        target: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,).
        image_size: (H, W) pixels.
        strides: the model's strides, e.g. (8, 16, 32).
        location_offset, size_ranges, center_sampling_radius: as the model's (see
            :func:`fcos_lib.targets.assign_targets`).

    Returns:
        One dict per level: ``locations`` (L, 2) xy pixels, ``positive`` (L,) bool,
        ``centerness`` (L,) (0 on background), ``stride`` (int).
    """
    from fcos_lib.model import level_locations
    from fcos_lib.targets import (assign_targets, centerness_target, default_size_ranges,
                                  encode_boxes)

    height, width = image_size
    # Rounded up as the model's P6 and P7 are (a 224 px image has a 2x2 P7 grid, not 1x1).
    locations = [level_locations(math.ceil(height / s), math.ceil(width / s), s, location_offset)
                 for s in strides]
    ranges = size_ranges or default_size_ranges(list(strides))
    boxes = target["boxes"].detach().cpu().float()[None]                     # (1, N, 4)
    labels = target["labels"].cpu()[None]
    matched = assign_targets(boxes, labels, locations, list(strides), ranges,
                             center_sampling_radius)[0]                      # (L_total,)
    out = []
    per_level = matched.split([len(p) for p in locations])
    for points, stride, match in zip(locations, strides, per_level):
        positive = match >= 0
        centerness = torch.zeros(len(points))
        if positive.any():
            ltrb = encode_boxes(boxes[0, match[positive]], points[positive],
                                torch.full((int(positive.sum()),), float(stride)))
            centerness[positive] = centerness_target(ltrb)
        out.append({"locations": points, "positive": positive, "centerness": centerness,
                    "stride": int(stride)})
    return out


def overlay_settings(model: torch.nn.Module) -> dict[str, Any]:
    """The arguments of :func:`level_overlays` that a model fixes: ``strides``,
    ``location_offset``, ``size_ranges`` and ``center_sampling_radius``."""
    loss = getattr(model, "loss_config", {})
    return {"strides": list(model.strides), "location_offset": model.location_offset,
            "size_ranges": loss.get("size_ranges"),
            "center_sampling_radius": loss.get("center_sampling_radius")}


def _paint_points(pixels: Tensor, points: Tensor, colors: Tensor, radius: int) -> Tensor:
    """Squares of side 2·radius+1 centred on ``points`` (P, 2) xy pixels, colours (P, 3)."""
    if len(points) == 0:
        return pixels
    pixels = pixels.clone()
    d = torch.arange(-radius, radius + 1)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    xs = (points[:, 0, None].round().long() + dx.flatten()).clamp(0, pixels.shape[2] - 1)
    ys = (points[:, 1, None].round().long() + dy.flatten()).clamp(0, pixels.shape[1] - 1)
    color = colors[:, :, None].expand(-1, -1, xs.shape[1])                  # (P, 3, S)
    for ch in range(3):
        pixels[ch, ys.flatten(), xs.flatten()] = color[:, ch].flatten()
    return pixels


def render_view(image: Tensor, target: dict[str, Tensor] | None,
                prediction: dict[str, Tensor] | None, *, score_thresh: float,
                classes: Sequence[int] | None, show_gt: bool, level: int | None = None,
                level_overlay: Sequence[dict[str, Tensor]] | None = None,
                class_names: Sequence[str] | None = None, scale: int = 1) -> Tensor:
    """What the viewer shows for one image and one setting of its controls.

    Args:
        image, target, prediction, class_names, score_thresh, classes, scale: as
            :func:`draw_detections`.
        show_gt: draw the ground truth.
        level: index of the FPN level to overlay (None: none): every location of the level
            as a magenta dot, its positives as larger dots coloured by centerness (viridis:
            dark near a box's side, yellow at its centre).
        level_overlay: the image's :func:`level_overlays`, needed when ``level`` is set.

    Returns:
        uint8 (3, H·scale, W·scale).
    """
    pixels = to_pixels(image, scale)
    if level is not None:
        if level_overlay is None or not 0 <= level < len(level_overlay):
            raise ValueError(f"level={level} needs level_overlay with that level: pass "
                             "level_overlays(target, ...) for this image")
        from matplotlib import colormaps

        over = level_overlay[level]
        where = over["locations"].float() * scale + (scale - 1) / 2
        dots = torch.tensor(LOCATION_COLOR, dtype=torch.uint8).expand(len(where), 3)
        pixels = _paint_points(pixels, where, dots, scale // 4)
        pos = over["positive"]
        rgb = colormaps["viridis"](over["centerness"][pos].numpy())[:, :3]
        pixels = _paint_points(pixels, where[pos], torch.from_numpy((rgb * 255).round()).to(
            torch.uint8), max(1, scale // 2))
    # The picture is enlarged already: enlarge the boxes to match.
    prediction, target = (None if d is None else {**d, "boxes": d["boxes"] * scale}
                          for d in (prediction, target if show_gt else None))
    return draw_detections(pixels, prediction, target, class_names=class_names,
                           score_thresh=score_thresh, classes=classes)


# ------------------------------------------------------------------ figures


def plot_detections_grid(images: Tensor, predictions: Sequence[dict[str, Tensor]],
                         targets: Sequence[dict[str, Tensor]] | None = None, *,
                         class_names: Sequence[str] | None = None, score_thresh: float = 0.3,
                         ncols: int = 4, scale: int = 2, titles: Sequence[str] | None = None):
    """A grid of images with their predicted boxes (class colours) and ground truth (white).

    Args:
        images: (B, 3, H, W) normalized (or uint8).
        predictions, targets: B dicts each (targets may be None).
        titles: one caption per image (default: the number of boxes drawn).

    Returns:
        A matplotlib Figure.
    """
    pictures, captions = [], []
    for i, image in enumerate(images):
        target = targets[i] if targets is not None else None
        pictures.append(draw_detections(image, predictions[i], target, class_names=class_names,
                                        score_thresh=score_thresh, scale=scale))
        shown = int((predictions[i]["scores"] >= score_thresh).sum())
        captions.append(titles[i] if titles else f"{shown} boxes >= {score_thresh:g}")
    return plot_pictures(pictures, ncols=ncols, titles=captions)


def plot_pictures(pictures: Sequence[Tensor], *, ncols: int = 4, size: float = 3.2,
                  titles: Sequence[str] | None = None):
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


def plot_pr_curves(result: dict[str, Any], class_names: Sequence[str] | None = None,
                   classes: Sequence[int] | None = None, ncols: int = 4):
    """Precision/recall curves of a :func:`fcos_lib.evaluate.mean_average_precision` result:
    per class, the raw curve and the interpolated one (best precision at this recall or
    beyond) whose area is the AP.

    Returns:
        A matplotlib Figure, one panel per class that has ground truth.
    """
    import matplotlib.pyplot as plt

    classes = list(result["curves"]) if classes is None else list(classes)
    missing = [c for c in classes if c not in result["curves"]]
    if missing:
        raise ValueError(f"no curve for classes {missing}: they have no ground truth; the "
                         f"classes with curves are {sorted(result['curves'])}")
    ncols = max(1, min(ncols, len(classes)))
    nrows = max(1, -(-len(classes) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, classes):
        curve = result["curves"][c]
        recall, precision = curve["recall"], curve["precision"]
        envelope = interpolated_precision(precision)
        ax.plot(recall, precision, color="0.6", lw=1, label="precision")
        ax.step(np.r_[0.0, recall], np.r_[envelope[:1], envelope], where="pre", color="C0",
                lw=1.5, label="interpolated")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        ax.set_title(f"{_name(c, class_names)}: AP {result['per_class'][c]:.3f}", fontsize=10)
    if classes:  # a legend of an empty panel would warn on stderr
        axes.flat[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curves(records: Sequence[dict[str, Any]]):
    """The losses of a training log against the step, and the validation mAP@0.5.

    Args:
        records: the dicts of ``metrics.jsonl``: loss lines (``step``, ``classification``,
            ``bbox_regression``, ``bbox_ctrness``, ``total``, ...) and evaluation lines
            (``step``, ``map50``).

    Returns:
        A matplotlib Figure: losses (log scale) on the left, mAP@0.5 on the right.
    """
    import matplotlib.pyplot as plt

    losses = [r for r in records if "total" in r]
    evals = [r for r in records if "map50" in r]
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(10, 3.5),
                                     gridspec_kw={"width_ratios": [2, 1]})
    for key in ("total", "classification", "bbox_regression", "bbox_ctrness"):
        points = [(r["step"], r[key]) for r in losses if key in r]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=2 if key == "total" else 1, label=key)
    ax.set(xlabel="step", ylabel="loss", title="training losses")
    if losses:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    if evals:
        ax_map.plot([r["step"] for r in evals], [r["map50"] for r in evals], "o-", color="C3")
    ax_map.set(xlabel="step", ylabel="mAP@0.5", title="validation mAP@0.5", ylim=(0, 1))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------ the interactive viewer


class BoxViewer:
    """Interactive viewer: ipywidgets controls wired to :func:`render_view`.

    Controls: ``index`` (slider) and ``index_text`` (the same number, typed), ``score``
    (threshold), ``classes`` (which to show), ``show_gt``, ``level`` (FPN level overlay or
    none). The picture is ``image`` (an ``ipywidgets.Image``, PNG); ``last_view`` holds the
    uint8 pixels last drawn. Display the viewer itself (or ``viewer.widget``) in a notebook.

    Args:
        images: (N, 3, H, W) normalized, or a list of (3, H, W).
        targets, predictions: N dicts each (predictions may be None: ground truth only).
        class_names: the dataset's class names.
        strides, location_offset, size_ranges, center_sampling_radius: the model's, for the
            level overlay (see :func:`level_overlays`).
        scale: enlargement of the pictures.
        score_thresh: the threshold's initial value.
    """

    def __init__(self, images, targets: Sequence[dict[str, Tensor]],
                 predictions: Sequence[dict[str, Tensor]] | None, class_names: Sequence[str],
                 *, strides: Sequence[int] = (8, 16, 32), location_offset: float = 0.5,
                 size_ranges: Sequence[tuple[float, float]] | None = None,
                 center_sampling_radius: float | None = None, scale: int = 3,
                 score_thresh: float = 0.3):
        import ipywidgets as w

        if len(images) != len(targets) or (predictions is not None
                                           and len(predictions) != len(images)):
            raise ValueError(f"{len(images)} images, {len(targets)} targets and "
                             f"{len(predictions) if predictions is not None else 0} predictions"
                             ": pass one of each per image")
        self.images, self.targets, self.predictions = images, targets, predictions
        self.class_names = list(class_names)
        self.strides, self.scale = list(strides), scale
        self._overlay_args = dict(location_offset=location_offset, size_ranges=size_ranges,
                                  center_sampling_radius=center_sampling_radius)
        last = len(images) - 1
        self.index = w.IntSlider(0, min=0, max=last, description="image", continuous_update=False)
        self.index_text = w.BoundedIntText(0, min=0, max=last, description="number",
                                           layout=w.Layout(width="160px"))
        self.score = w.FloatSlider(score_thresh, min=0.0, max=1.0, step=0.05,
                                   description="score >=", continuous_update=False)
        self.classes = w.SelectMultiple(options=[(n, i) for i, n in enumerate(self.class_names)],
                                        value=tuple(range(len(self.class_names))),
                                        description="classes", rows=min(6, len(self.class_names)))
        self.show_gt = w.Checkbox(True, description="ground truth (white)")
        self.level = w.Dropdown(options=[("no level", None)] + [
            (f"P{int(np.log2(s))} (stride {s})", i) for i, s in enumerate(self.strides)],
            value=None, description="positives")
        self.image = w.Image(format="png")
        self.info = w.HTML()
        self.last_view: Tensor | None = None
        # The slider and the text box show one number: each follows the other.
        self.index.observe(lambda c: setattr(self.index_text, "value", c["new"]), "value")
        self.index_text.observe(lambda c: setattr(self.index, "value", c["new"]), "value")
        for control in (self.index, self.score, self.classes, self.show_gt, self.level):
            control.observe(self.redraw, "value")
        self.widget = w.VBox([w.HBox([self.index, self.index_text]),
                              w.HBox([self.score, self.show_gt, self.level]),
                              w.HBox([self.classes, self.info]), self.image])
        self.redraw()

    def redraw(self, change: dict | None = None) -> None:
        """Draw the picture for the controls' current values (called on every change)."""
        i = self.index.value
        image, target = self.images[i], self.targets[i]
        prediction = self.predictions[i] if self.predictions is not None else None
        overlay = None
        if self.level.value is not None:
            overlay = level_overlays(target, tuple(image.shape[-2:]), self.strides,
                                     **self._overlay_args)
        view = render_view(image, target, prediction, score_thresh=self.score.value,
                           classes=list(self.classes.value), show_gt=self.show_gt.value,
                           level=self.level.value, level_overlay=overlay,
                           class_names=self.class_names, scale=self.scale)
        self.last_view = view
        self.image.value = png_bytes(view)
        shown = 0
        if prediction is not None:
            shown = int(((prediction["scores"] >= self.score.value)
                         & _class_mask(prediction["labels"].cpu(), self.classes.value)).sum())
        text = f"image {i}: {shown} predicted boxes shown, {len(target['boxes'])} true boxes"
        if overlay is not None:
            text += f"<br>{int(overlay[self.level.value]['positive'].sum())} positive locations"
        self.info.value = text

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def box_viewer(images, targets: Sequence[dict[str, Tensor]],
               predictions: Sequence[dict[str, Tensor]] | None, class_names: Sequence[str],
               model: torch.nn.Module | None = None, **kwargs: Any) -> BoxViewer:
    """A :class:`BoxViewer`; with ``model``, the level overlay uses the model's strides,
    location offset and target-assignment settings."""
    if model is not None:
        kwargs = {**overlay_settings(model), **kwargs}
    return BoxViewer(images, targets, predictions, class_names, **kwargs)
