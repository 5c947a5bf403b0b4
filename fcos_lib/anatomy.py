"""The anatomy of the detector (notebook 04): :func:`trace_shapes` runs the model once on a
blank image, with forward hooks on the backbone, the FPN, the head's two stems and its three
final convolutions, and records what each returned; :func:`draw_anatomy` draws that record.
Neither reads a preset's table: the picture stays true when a preset changes.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:                      # matplotlib is imported when a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["Anatomy", "trace_shapes", "draw_anatomy"]

Shape = tuple[int, ...]
PARTS = ("backbone", "pyramid", "cls_stem", "box_stem", "cls_logits", "box_deltas",
         "centerness")


@dataclass
class Anatomy:
    """The shapes of one image's tensors, each (channels, height, width).

    Args:
        image: (3, H, W) of the input.
        maps: per part of :data:`PARTS`, the shapes it returned: ``backbone`` C3, C4, C5;
            ``pyramid`` one map per level, P3 first; the head's two stems, ``cls_stem`` and
            ``box_stem``, and its ``cls_logits``, ``box_deltas``, ``centerness`` per level
            (before the model flattens each to (B, H_l·W_l, K)).
        levels, strides: the pyramid's levels (3, 4, ...) and their strides in pixels.
        stem_convs: 3x3 convolutions per stem; centerness_on: ``"box"`` or ``"cls"``, the
            stem that feeds centerness; p6_from: ``"p5"`` or ``"c5"`` (with P6 and P7).
    """

    image: Shape
    maps: dict[str, list[Shape]]
    levels: list[int]
    strides: list[int]
    stem_convs: int
    centerness_on: str
    p6_from: str


def trace_shapes(model: nn.Module, image_size: int = 224) -> Anatomy:
    """Every part's output shape, from one forward pass of ``model`` on a blank image.

    Args:
        model: a :class:`fcos_lib.model.FCOS`; left as it was (mode, weights, no hooks).
        image_size: the side of the square input in pixels, a multiple of 32.

    Returns:
        The :class:`Anatomy` of one image (batch dimension dropped).
    """
    head = model.head
    modules = (model.backbone, model.fpn, head.cls_stem, head.box_stem, head.cls_logits,
               head.box_deltas, head.centerness)
    maps: dict[str, list[Shape]] = {name: [] for name in PARTS}

    def recorder(name: str) -> Callable[..., None]:
        def record(module: nn.Module, inputs: tuple, output: Tensor | list[Tensor]) -> None:
            outputs = output if isinstance(output, (list, tuple)) else [output]
            maps[name].extend(tuple(m.shape[1:]) for m in outputs)
        return record

    handles = [m.register_forward_hook(recorder(name)) for name, m in zip(PARTS, modules)]
    image = torch.zeros(1, 3, image_size, image_size).to(next(model.parameters()))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return Anatomy(tuple(image.shape[1:]), maps, list(model.config.levels), list(model.strides),
                   stem_convs=sum(isinstance(m, nn.Conv2d) for m in head.cls_stem),
                   centerness_on=head.centerness_on, p6_from=model.fpn.p6_from)


def dims(shape: Shape) -> str:
    """``(128, 28, 28)`` -> ``"128×28×28"``."""
    return "×".join(str(n) for n in shape)


COLORS = {"image": "#eee", "C": "#cfe2f3", "P": "#d9ead3", "stem": "#fce5cd", "out": "#e6dcf0"}
ROW, TOP, BOTTOM, WIDTH, FONT = 1.0, 0.5, 0.4, 9.0, 9       # inches; the font in points
# Each column's left and right edges, in inches.
COLUMNS = {"image": (0.05, 0.9), "C": (1.15, 2.3), "P": (2.75, 3.9), "stem": (4.35, 5.95),
           "out": (6.4, 8.95)}


def draw_anatomy(anatomy: Anatomy) -> Figure:
    """The detector as boxes and arrows, one row per level, each box with its real shape.

    Args:
        anatomy: from :func:`trace_shapes`.

    Returns:
        A 9-inch-wide figure at 100 dpi (every text 9 points or more: 12.5 pixels); each
        text carries a gid naming its box (``"C3"``, ``"P4"``, ``"box_stem/P5"``, ...).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    maps, height = anatomy.maps, TOP + len(anatomy.levels) * ROW + BOTTOM
    fig = plt.figure(figsize=(WIDTH, height), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1), xlim=(0, WIDTH), ylim=(0, height))
    ax.axis("off")

    def box(column: str, yc: float, h: float, text: str, gid: str) -> None:
        x0, x1 = COLUMNS[column]
        ax.add_patch(FancyBboxPatch((x0, yc - h / 2), x1 - x0, h, facecolor=COLORS[column],
                                    edgecolor="0.3", boxstyle="round,pad=0,rounding_size=0.06"))
        ax.text((x0 + x1) / 2, yc, text, ha="center", va="center", fontsize=FONT, gid=gid)
        return {"left": (x0, yc), "right": (x1, yc), "top": ((x0 + x1) / 2, yc + h / 2),
                "bottom": ((x0 + x1) / 2, yc - h / 2)}

    def arrow(start: tuple[float, float], end: tuple[float, float]) -> None:
        ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", color="0.3", lw=1))

    y = [height - TOP - (r + 0.5) * ROW for r in range(len(anatomy.levels))]
    for column, label in (("image", "input"), ("C", "backbone"), ("P", "FPN"),
                          ("stem", "head: same weights on every level"), ("out", "outputs")):
        ax.text(sum(COLUMNS[column]) / 2, height - TOP / 2, label, ha="center", va="center",
                fontsize=10, weight="bold", gid=f"header/{label}")
    image = box("image", y[1], 2 * ROW + 0.5, f"image\n{dims(anatomy.image)}", "image")
    c = [box("C", y[i], 0.55, f"C{3 + i} · /{anatomy.image[1] // shape[1]}\n{dims(shape)}",
             f"C{3 + i}") for i, shape in enumerate(maps["backbone"])]
    arrow((image["right"][0], y[0]), c[0]["left"])
    convs = f"{anatomy.stem_convs} conv 3×3" if anatomy.stem_convs else "no conv"
    p: list[dict] = []
    for i, (level, stride, shape) in enumerate(zip(anatomy.levels, anatomy.strides,
                                                   maps["pyramid"])):
        p.append(box("P", y[i], 0.55, f"P{level} · /{stride}\n{dims(shape)}", f"P{level}"))
        if i < 3:                                           # lateral; C downwards, P upwards
            arrow(c[i]["right"], p[i]["left"])
        if 0 < i < 3:
            arrow(c[i - 1]["bottom"], c[i]["top"])
            arrow(p[i]["top"], p[i - 1]["bottom"])
        if i >= 3:                                          # P6, P7: stride-2 convs
            source = c[2] if i == 3 and anatomy.p6_from == "c5" else p[i - 1]
            arrow(source["bottom"], p[i]["top"])
        stems = {}
        for name, yc in (("cls", y[i] + 0.22), ("box", y[i] - 0.22)):
            stems[name] = box("stem", yc, 0.38,
                              f"{name} stem, {convs}\n{dims(maps[name + '_stem'][i])}",
                              f"{name}_stem/P{level}")
            arrow((p[i]["right"][0], yc), stems[name]["left"])
        for k, (name, label, stem) in enumerate(
                (("cls_logits", "class logits", "cls"), ("box_deltas", "box deltas", "box"),
                 ("centerness", "centerness", anatomy.centerness_on))):
            out = box("out", y[i] + 0.3 - 0.3 * k, 0.25, f"{label} {dims(maps[name][i])}",
                      f"{name}/P{level}")
            arrow(stems[stem]["right"], out["left"])
    ax.text(WIDTH / 2, BOTTOM / 2, "shapes of one image, channels × height × width (/s: the "
            "stride); the model returns each output as (B, H·W, channels)",
            ha="center", va="center", fontsize=FONT, gid="footer")
    return fig
