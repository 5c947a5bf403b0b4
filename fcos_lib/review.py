"""One image under review, drawn: what the detector got right and wrong, and its own maps.

Plain functions, tested directly, that the viewer (:mod:`fcos_lib.viewer`) only calls:
:func:`render_view` draws one image's detections coloured by their verdict
(:func:`fcos_lib.diagnose.judge`: true positive, false positive, duplicate) and its objects
as found or missed, each label placed clear of the others (:func:`place_labels`);
:func:`level_panels` draws what the model itself predicted on one pyramid level (its
class-score map and its centerness) beside the positive locations it was trained on
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
from fcos_lib.viz import class_mask, class_name, to_pixels

__all__ = ["STATUS_COLORS", "FOUND_COLOR", "MISSED_COLOR", "COLOR_NAMES", "place_labels",
           "write_labels", "only_classes", "render_view", "level_panels", "legend_html",
           "model_location_targets", "level_names", "title_band", "title_height"]

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


def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans"))
    return ImageFont.truetype(path, size)


def place_labels(boxes: Tensor, sizes: Sequence[tuple[int, int]], width: int, height: int
                 ) -> list[tuple[int, int, int, int] | None]:
    """Where to write each box's label, ``(x1, y1, x2, y2)`` pixels, in order: the first of
    eight spots against the box (above its top edge, inside it along the top, below its bottom
    edge, inside along the bottom; at its left corner, then its right) that lies in the
    ``width`` x ``height`` picture and covers no label placed before it. ``None`` where all
    eight are taken: a label far from its box would say less than no label.

    Args:
        boxes: (K, 4) xyxy pixels; sizes: the K labels' (w, h) in pixels.
    """
    taken: list[tuple[int, int, int, int]] = []
    places: list[tuple[int, int, int, int] | None] = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes.round().int().tolist(), sizes):
        spots = [(min(max(0, x), max(0, width - w)), min(max(0, y), max(0, height - h)))
                 for x in (x1, x2 - w) for y in (y1 - h, y1, y2, y2 - h)]
        free = [(x, y, x + w, y + h) for x, y in spots if not any(
            x < a2 and a1 < x + w and y < b2 and b1 < y + h for a1, b1, a2, b2 in taken)]
        places.append(free[0] if free else None)
        taken += free[:1]
    return places


def write_labels(pixels: Tensor, boxes: Tensor, texts: Sequence[str],
                 colors: Sequence[tuple[int, int, int]]) -> Tensor:
    """Write ``texts`` on patches of ``colors`` next to ``boxes``, each clear of the others
    (:func:`place_labels`: the first ones get the best spots).

    Args:
        pixels: uint8 (3, H, W); boxes: (K, 4) xyxy pixels of it; texts, colors: K each.

    Returns:
        uint8 (3, H, W), a new tensor.
    """
    from PIL import Image, ImageDraw

    picture = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy())
    draw, font = ImageDraw.Draw(picture), _font(max(10, round(min(picture.size) / 30)))
    corners = [draw.textbbox((0, 0), text, font=font) for text in texts]
    sizes = [(right - left + 4, bottom - top + 4) for left, top, right, bottom in corners]
    places = place_labels(boxes, sizes, *picture.size)
    for place, (left, top, _, _), text, color in zip(places, corners, texts, colors):
        if place is None:
            continue
        x, y, x2, y2 = place
        draw.rectangle((x, y, x2 - 1, y2 - 1), fill=color)
        dark = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] < 140
        draw.text((x + 2 - left, y + 2 - top), text, font=font,
                  fill=(255, 255, 255) if dark else (0, 0, 0))
    return torch.from_numpy(np.array(picture)).permute(2, 0, 1).contiguous()


def only_classes(d: dict[str, Tensor], classes: Sequence[int] | None) -> dict[str, Tensor]:
    """A target or prediction dict with only the rows of ``classes`` (None: all)."""
    keep = class_mask(d["labels"].cpu(), classes)
    return {k: v[keep] if torch.is_tensor(v) and v.dim() and len(v) == len(keep) else v
            for k, v in d.items()}


def render_view(image: Tensor, target: dict[str, Tensor] | None,
                prediction: dict[str, Tensor] | None, *, iou_threshold: float = 0.5,
                classes: Sequence[int] | None = None, show_gt: bool = True,
                class_names: Sequence[str] | None = None, scale: int = 2,
                level_names: Sequence[str] | None = None) -> Tensor:
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
        pixels = write_labels(pixels, torch.stack(boxes), texts, colors)
    return pixels


def level_panels(outputs: dict[str, list], level: int, image_size: tuple[int, int],
                 classes: Sequence[int] | None = None,
                 positives: dict[str, Tensor] | None = None, scale: int = 1,
                 titles: bool = False) -> Tensor:
    """What the model predicted on one level of one image, as two heat maps stacked: the
    class score (sigmoid, the maximum over ``classes``; magma) and the centerness (sigmoid;
    viridis), each cell of the level a square of the image, with the level's positive
    locations (``positives``, one level of :func:`fcos_lib.positives.location_targets`) as
    white dots; with ``titles``, each under its title ("P3 class score", "P3 centerness").

    Args:
        outputs: ``FCOS.forward``'s raw outputs for a batch of one image.
        level: the index of the level (0: the first, P3).
        image_size: (H, W) of the image, pixels.

    Returns:
        uint8 (3, 2·H·scale/2, W·scale/2): the two maps, each half the picture's size; with
        ``titles``, (3, 2·(T + H·scale/2), W·scale/2), a band T = :func:`title_height`
        pixels high over each map.
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
    name = level_names([stride])[0]
    panels = []
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
        panels += [title_band(title, out_w, title_height(H * scale)), big] if titles else [big]
    return torch.cat(panels, dim=1)


def title_height(picture_height: int) -> int:
    """The height in pixels of a title band over a map beside a picture this high."""
    return max(12, round(picture_height / 22))


def title_band(text: str, width: int, height: int) -> Tensor:
    """``text`` in white on a dark band, uint8 (3, height, width), in a font that fits."""
    from PIL import Image, ImageDraw

    band = Image.new("RGB", (width, height), (40, 40, 40))
    draw, size = ImageDraw.Draw(band), max(6, height - 4)
    while size > 6 and draw.textlength(text, font=_font(size)) > width - 4:
        size -= 1
    font = _font(size)
    left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((2 - left, (height - (bottom - top)) // 2 - top), text, font=font,
              fill=(255, 255, 255))
    return torch.from_numpy(np.array(band)).permute(2, 0, 1).contiguous()


def legend_html() -> str:
    """The colours' meaning, as a line of HTML for the viewer, in the words of its info line
    (:data:`fcos_lib.diagnose.STATUS_NAMES`)."""
    def swatch(color, text):
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
