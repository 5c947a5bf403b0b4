"""One image under review, drawn: what the detector got right and wrong, and its own maps.

Plain functions, tested directly, that the viewer (:mod:`fcos_lib.viewer`) only calls:
:func:`render_view` draws one image's detections coloured by their verdict
(:func:`fcos_lib.diagnose.judge`: true positive, false positive, duplicate) and its objects
as found or missed, each label placed clear of the others (:func:`fcos_lib.viz.place_labels`
and :func:`fcos_lib.viz.write_labels`, named here too); :func:`level_panels` draws what the
model itself predicted on one pyramid level (its class-score map and its centerness, under
titles, over colour bars) beside the positive locations it was trained on
(:func:`model_location_targets`); :func:`legend_html` says which colour is which.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from fcos_lib.diagnose import DUPLICATE, FALSE_POSITIVE, IGNORED, STATUS_NAMES, TRUE_POSITIVE, judge
from fcos_lib.positives import location_targets
from fcos_lib.viz import (
    Label,
    class_mask,
    class_name,
    label_font,
    place_labels,
    readable_size,
    text_height,
    to_pixels,
    write_labels,
)

__all__ = ["STATUS_COLORS", "FOUND_COLOR", "MISSED_COLOR", "COLOR_NAMES", "place_labels",
           "write_labels", "only_classes", "render_view", "level_panels", "legend_html",
           "model_location_targets", "level_names", "title_band", "title_height",
           "colorbar_band"]

# The verdicts' colours, each far from every class colour of the shapes dataset (red, green,
# blue, yellow, magenta, cyan: at least 85 apart in RGB, more than the shapes' own jitter), so
# that a box is never mistaken for the object under it; the legend names them.
STATUS_COLORS = {TRUE_POSITIVE: (195, 255, 150), FALSE_POSITIVE: (255, 120, 160),
                 DUPLICATE: (165, 105, 15), IGNORED: (150, 150, 150)}
FOUND_COLOR, MISSED_COLOR = (255, 255, 255), (0, 0, 105)
COLOR_NAMES = {STATUS_COLORS[TRUE_POSITIVE]: "light green", STATUS_COLORS[FALSE_POSITIVE]: "pink",
               STATUS_COLORS[DUPLICATE]: "ochre", STATUS_COLORS[IGNORED]: "grey",
               FOUND_COLOR: "white", MISSED_COLOR: "navy"}
POSITIVE_COLOR = (255, 255, 255)


def only_classes(d: dict[str, Tensor], classes: Sequence[int] | None) -> dict[str, Tensor]:
    """A target or prediction dict with only the rows of ``classes`` (None: all)."""
    keep = class_mask(d["labels"].cpu(), classes)
    return {k: v[keep] if torch.is_tensor(v) and v.dim() and len(v) == len(keep) else v
            for k, v in d.items()}


def render_view(image: Tensor, target: dict[str, Tensor] | None,
                prediction: dict[str, Tensor] | None, *, iou_threshold: float = 0.5,
                classes: Sequence[int] | None = None, show_gt: bool = True,
                class_names: Sequence[str] | None = None, scale: int = 2,
                level_names: Sequence[str] | None = None, font_size: int | None = None,
                placed: list[Label] | None = None) -> Tensor:
    """One image with its detections coloured by verdict and its objects found or missed.

    Args:
        image: uint8 or normalized float (3, H, W).
        target: ``boxes`` (G, 4) xyxy pixels, ``labels`` (G,), optionally ``difficult``.
        prediction: the detections to show (already cut at the score threshold):
            ``boxes``, ``scores``, ``labels``, optionally ``levels`` (which pyramid level
            predicted each, written in its label with ``level_names``).
        iou_threshold: the matching's IoU threshold (:func:`fcos_lib.diagnose.judge`).
        classes: show only these classes (None: all).
        show_gt: draw the ground truth (:data:`FOUND_COLOR` when found, thin; thicker in
            :data:`MISSED_COLOR` when missed).
        class_names, scale: names for the labels; integer enlargement of the picture.
        font_size, placed: the labels' font size in pixels of the returned picture (default:
            :func:`fcos_lib.viz.write_labels`'), and a list for the labels written.

    Returns:
        uint8 (3, H·scale, W·scale). Colours: :data:`STATUS_COLORS` for the detections,
        drawn from the lowest score up (the best on top), each label clear of the others.
    """
    pixels = to_pixels(image, scale)
    target, prediction = (None if d is None else only_classes(d, classes)
                          for d in (target, prediction))
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
             "scores": torch.zeros(0)}
    verdict = judge(prediction or empty, target or empty, iou_threshold)
    side = min(pixels.shape[-2:])
    width = max(2, round(side / 150))
    boxes, colors, texts = [], [], []
    if show_gt and target is not None and len(target["boxes"]):
        found = verdict["found"]
        for box, label, hit in zip(target["boxes"].cpu(), target["labels"].tolist(),
                                   found.tolist()):
            color = FOUND_COLOR if hit else MISSED_COLOR
            pixels = draw_bounding_boxes(pixels, box[None].float() * scale, colors=[color],
                                         width=max(1, width // 2) if hit else width)
            if not hit:
                boxes.append(box * scale)
                colors.append(color)
                texts.append(f"{class_name(label, class_names)} missed")
    if prediction is not None and len(prediction["boxes"]):
        levels = prediction.get("levels")
        scores = prediction["scores"].detach().cpu()
        # The lowest score first, the best last, on top: a true positive under a false
        # positive keeps its outline; its label is placed first, in the best spot.
        rising = torch.argsort(scores, stable=True).tolist()
        pixels = draw_bounding_boxes(
            pixels, prediction["boxes"].detach().cpu()[rising].float() * scale, width=width,
            colors=[STATUS_COLORS[int(verdict["status"][k])] for k in rising])
        for k in reversed(rising):
            where = (f" {level_names[int(levels[k])]}" if levels is not None and level_names
                     else "")
            boxes.append(prediction["boxes"][k].detach().cpu().float() * scale)
            colors.append(STATUS_COLORS[int(verdict["status"][k])])
            texts.append(f"{class_name(int(prediction['labels'][k]), class_names)} "
                         f"{float(scores[k]):.2f}{where}")
    if boxes:
        pixels = write_labels(pixels, torch.stack(boxes), texts, colors, font_size=font_size,
                              placed=placed)
    return pixels


def level_panels(outputs: dict[str, list], level: int, image_size: tuple[int, int],
                 classes: Sequence[int] | None = None,
                 positives: dict[str, Tensor] | None = None, scale: int = 1,
                 titles: bool = False, colorbar: bool = False,
                 placed: list[Label] | None = None) -> Tensor:
    """What the model predicted on one level of one image, as two heat maps stacked: the
    class score (sigmoid, the maximum over ``classes``; magma) and the centerness (sigmoid;
    viridis), each cell of the level a square of the image, with the level's positive
    locations (``positives``, one level of :func:`fcos_lib.positives.location_targets`) as
    white dots; with ``titles``, each under its title ("P3 class score", "P3 centerness");
    with ``colorbar``, each over its colour bar from 0 to 1 (:func:`colorbar_band`).

    Args:
        outputs: ``FCOS.forward``'s raw outputs for a batch of one image.
        level: the index of the level (0: the first, P3).
        image_size: (H, W) of the image, pixels.
        placed: a list for the titles' and the colour bars' text, as
            :class:`fcos_lib.viz.Label` in the returned picture's pixels.

    Returns:
        uint8 (3, 2·(T·titles + H·scale/2 + 3·T/2·colorbar), W·scale/2): each map half the
        picture's size, a band T = :func:`title_height` pixels high over it with ``titles``,
        a band 3·T/2 high under it with ``colorbar``.
    """
    from matplotlib import colormaps

    H, W = image_size
    stride = outputs["strides"][level]
    rows, cols = math.ceil(H / stride), math.ceil(W / stride)
    probs = torch.sigmoid(outputs["cls_logits"][level][0].detach().float().cpu())  # (L, C)
    if classes is not None:
        probs = probs[:, list(classes)]
    score = probs.max(1).values.view(rows, cols)
    center = torch.sigmoid(outputs["centerness"][level][0].detach().float().cpu()).view(rows,
                                                                                       cols)
    half = max(1, scale * stride // 2)                      # pixels per cell on a panel
    out_h, out_w = H * scale // 2, W * scale // 2
    T, name = title_height(H * scale), level_names([stride])[0]
    panels: list[Tensor] = []
    for values, cmap, title in ((score, "magma", f"{name} class score"),
                                (center, "viridis", f"{name} centerness")):
        rgb = torch.from_numpy(colormaps[cmap](values.numpy())[..., :3] * 255).round()
        big = rgb.to(torch.uint8).permute(2, 0, 1).repeat_interleave(half, 1)
        big = big.repeat_interleave(half, 2)[:, :out_h, :out_w].contiguous()
        if positives is not None and positives["positive"].any():
            xy = (positives["locations"][positives["positive"]] * scale / 2).round().long()
            r = max(1, half // 6)
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    big[:, (xy[:, 1] + dy).clamp(0, out_h - 1), (xy[:, 0] + dx).clamp(
                        0, out_w - 1)] = torch.tensor(POSITIVE_COLOR, dtype=torch.uint8)[:, None]
        above: list[Label] = []
        below: list[Label] = []
        bands = ([(title_band(title, out_w, T, above), above)] if titles else []) + [
            (big, [])] + ([(colorbar_band(cmap, out_w, T + T // 2, below), below)]
                          if colorbar else [])
        for band, texts in bands:           # each band's text, moved to where the band lies
            if placed is not None:
                placed += _shifted(texts, sum(p.shape[1] for p in panels))
            panels.append(band)
    return torch.cat(panels, dim=1)


def title_height(picture_height: int) -> int:
    """The height in pixels of a title band over a map beside a picture this high: room
    for capitals :data:`fcos_lib.viz.TEXT_PX` high at the picture's own size, more on a
    large picture."""
    return max(readable_size() + 4, round(picture_height / 16))


def _band(texts: Sequence[tuple[str, float]], width: int, height: int,
          placed: list[Label] | None) -> Tensor:
    """Texts in white on a dark band, uint8 (3, height, width), each at its ``anchor`` (0:
    the left end, 0.5: the middle, 1: the right end), in the largest font up to height - 4
    pixels in which they fit side by side."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), (40, 40, 40))
    draw, size = ImageDraw.Draw(band), max(6, height - 4)
    while size > 6 and sum(draw.textlength(t, font=label_font(size)) + 4
                           for t, _ in texts) > width:
        size -= 1
    font = label_font(size)
    for text, anchor in texts:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        x = round(2 + anchor * (width - 4 - (right - left)))
        y = (height - (bottom - top)) // 2
        draw.text((x - left, y - top), text, font=font, fill=(255, 255, 255))
        if placed is not None:
            placed.append(Label(text, (x - 2, y - 2, x + right - left + 2, y + bottom - top + 2),
                                text_height(size)))
    return torch.from_numpy(np.array(band)).permute(2, 0, 1).contiguous()


def _shifted(labels: Sequence[Label], down: int) -> list[Label]:
    """``labels`` moved ``down`` pixels."""
    return [la._replace(box=(la.box[0], la.box[1] + down, la.box[2], la.box[3] + down))
            for la in labels]


def title_band(text: str, width: int, height: int, placed: list[Label] | None = None
               ) -> Tensor:
    """``text`` in white on a dark band, uint8 (3, height, width), in a font that fits
    (``placed``: a list for its :class:`fcos_lib.viz.Label`)."""
    return _band([(text, 0.0)], width, height, placed)


def colorbar_band(cmap: str, width: int, height: int, placed: list[Label] | None = None
                  ) -> Tensor:
    """A colour bar of matplotlib's ``cmap`` from 0 (left) to 1 (right), uint8 (3, height,
    width): the colours in the top third, "0", "0.5" and "1" under their places on a dark
    band (``placed``: a list for their :class:`fcos_lib.viz.Label`)."""
    from matplotlib import colormaps

    strip = max(2, height // 3)
    ramp = colormaps[cmap](np.linspace(0.0, 1.0, max(0, width - 4)))[:, :3] * 255
    colours = torch.full((3, strip, width), 40, dtype=torch.uint8)
    colours[:, :, 2:width - 2] = torch.from_numpy(ramp.round()).to(torch.uint8).T[:, None]
    written: list[Label] = []
    ticks = _band([("0", 0.0), ("0.5", 0.5), ("1", 1.0)], width, height - strip, written)
    if placed is not None:
        placed += _shifted(written, strip)
    return torch.cat([colours, ticks], dim=1)


def legend_html() -> str:
    """The colours' meaning, as a line of HTML for the viewer, in the words of its info line
    (:data:`fcos_lib.diagnose.STATUS_NAMES`)."""
    def swatch(color: Sequence[int], text: str) -> str:
        return (f'<span style="display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;'
                f'background:rgb{tuple(color)};border:1px solid #555"></span>{text}')
    return "".join([swatch(STATUS_COLORS[TRUE_POSITIVE], STATUS_NAMES[TRUE_POSITIVE]),
                    swatch(STATUS_COLORS[FALSE_POSITIVE], STATUS_NAMES[FALSE_POSITIVE]),
                    swatch(STATUS_COLORS[DUPLICATE], STATUS_NAMES[DUPLICATE]),
                    swatch(FOUND_COLOR, "object found"), swatch(MISSED_COLOR, "object missed"),
                    " &nbsp; maps: class score (magma), centerness (viridis), white dots: "
                    "the level's positives"])


def level_names(strides: Sequence[int]) -> list[str]:
    """The pyramid levels' names from their strides: P3 for stride 8, P4 for 16, ...

    >>> level_names([8, 16, 32, 64, 128])
    ['P3', 'P4', 'P5', 'P6', 'P7']
    """
    return [f"P{int(math.log2(s))}" for s in strides]


def model_location_targets(model: torch.nn.Module, target: dict[str, Tensor], height: int,
                           width: int) -> list[dict[str, Tensor]]:
    """:func:`fcos_lib.positives.location_targets` of one image, on ``model``'s own grid for an
    image of ``height`` x ``width`` pixels, with its size ranges and center sampling."""
    options = model.loss_config
    return location_targets(target, model.grid(int(height), int(width)), model.strides,
                            options["size_ranges"], options["center_sampling_radius"])
