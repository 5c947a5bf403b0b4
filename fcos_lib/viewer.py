"""The interactive box viewer: ipywidgets controls wired to one plain drawing function.

:func:`render_view` draws one image for one setting of the controls; :class:`BoxViewer`
only wires the controls to it: pick an image, a score threshold, the classes to show, ground
truth on or off, and an FPN level whose positive locations (the points that learn a box,
from :func:`fcos_lib.positives.location_targets` on the model's own grid) are overlaid,
coloured by their centerness target. Magenta marks every location of the chosen level.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from fcos_lib.positives import location_targets
from fcos_lib.viz import class_mask, draw_detections, png_bytes, to_pixels

__all__ = ["LOCATION_COLOR", "render_view", "BoxViewer", "model_location_targets"]

LOCATION_COLOR = (255, 0, 255)  # the points of an FPN level: magenta, seen on most pictures


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
        level_overlay: the image's :func:`fcos_lib.positives.location_targets`, needed when
            ``level`` is set.

    Returns:
        uint8 (3, H·scale, W·scale).
    """
    pixels = to_pixels(image, scale)
    if level is not None:
        if level_overlay is None or not 0 <= level < len(level_overlay):
            raise ValueError(f"level={level} needs level_overlay with that level: pass "
                             "location_targets(...) for this image")
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
        model: the detector, for the level overlay: its levels, its own grid of locations
            and its assignment settings (None: no overlay).
        scale: enlargement of the pictures.
        score_thresh: the threshold's initial value.
    """

    def __init__(self, images, targets: Sequence[dict[str, Tensor]],
                 predictions: Sequence[dict[str, Tensor]] | None, class_names: Sequence[str],
                 *, model: torch.nn.Module | None = None, scale: int = 3,
                 score_thresh: float = 0.3):
        import ipywidgets as w

        if len(images) != len(targets) or (predictions is not None
                                           and len(predictions) != len(images)):
            raise ValueError(f"{len(images)} images, {len(targets)} targets and "
                             f"{len(predictions) if predictions is not None else 0} predictions"
                             ": pass one of each per image")
        self.images, self.targets, self.predictions = images, targets, predictions
        self.class_names = list(class_names)
        self.model, self.scale = model, scale
        strides = list(model.strides) if model is not None else []
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
            (f"P{int(np.log2(s))} (stride {s})", i) for i, s in enumerate(strides)],
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
            overlay = model_location_targets(self.model, target, *image.shape[-2:])
        view = render_view(image, target, prediction, score_thresh=self.score.value,
                           classes=list(self.classes.value), show_gt=self.show_gt.value,
                           level=self.level.value, level_overlay=overlay,
                           class_names=self.class_names, scale=self.scale)
        self.last_view = view
        self.image.value = png_bytes(view)
        shown = 0
        if prediction is not None:
            shown = int(((prediction["scores"] >= self.score.value)
                         & class_mask(prediction["labels"].cpu(), self.classes.value)).sum())
        text = f"image {i}: {shown} predicted boxes shown, {len(target['boxes'])} true boxes"
        if overlay is not None:
            text += f"<br>{int(overlay[self.level.value]['positive'].sum())} positive locations"
        self.info.value = text

    def _ipython_display_(self) -> None:
        """Display as the widget itself (ipywidgets 7, which Colab ships, and 8)."""
        from IPython.display import display

        display(self.widget)


def model_location_targets(model: torch.nn.Module, target: dict[str, Tensor], height: int,
                           width: int) -> list[dict[str, Tensor]]:
    """:func:`fcos_lib.positives.location_targets` of one image, on ``model``'s own grid for an
    image of ``height`` x ``width`` pixels, with its size ranges and center sampling."""
    options = model.loss_config
    return location_targets(target, model.grid(int(height), int(width)), model.strides,
                            options["size_ranges"], options["center_sampling_radius"])
