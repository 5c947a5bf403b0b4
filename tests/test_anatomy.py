"""The drawing of the whole detector (notebook 04) shows the model's own shapes, for a P3-P5 and
a P3-P7 preset, and stays readable: capitals and digits 9 px high or more at the saved size,
every text inside its box, none overlapping another."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.font_manager import FontProperties
from matplotlib.text import Text
from matplotlib.textpath import TextPath

from fcos_lib.anatomy import dims, draw_anatomy, trace_shapes
from fcos_lib.model import FCOS

SIZE, CLASSES = 224, 20


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def models() -> dict[str, FCOS]:
    torch.manual_seed(0)
    return {name: FCOS.from_preset(name, num_classes=CLASSES) for name in ("tiny", "paper")}


def shown(fig) -> dict[str, str]:
    """gid -> text of every named text of the figure."""
    return {t.get_gid(): t.get_text() for t in fig.findobj(Text) if t.get_gid()}


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_the_drawing_shows_the_models_own_shapes(models, preset):
    model = models[preset].train()
    anatomy = trace_shapes(model, SIZE)
    assert model.training and not any(m._forward_hooks for m in model.modules())

    images = torch.randn(1, 3, SIZE, SIZE)              # asked again, without hooks
    with torch.no_grad():
        features = model.backbone(images)
        backbone = [tuple(c.shape[1:]) for c in features]
        pyramid = model.fpn(features)
        stems = {name: [tuple(getattr(model.head, f"{name}_stem")(p).shape[1:])
                        for p in pyramid] for name in ("cls", "box")}
        out = model.eval()(images)
    model.train()
    assert anatomy.maps["backbone"] == backbone
    assert anatomy.strides == out["strides"]
    assert len(anatomy.levels) == len(pyramid) == (3 if preset == "tiny" else 5)

    text = shown(draw_anatomy(anatomy))
    assert text["image"] == f"image\n3×{SIZE}×{SIZE}"
    for i, shape in enumerate(backbone):
        assert text[f"C{3 + i}"].endswith(dims(shape))
    assert f"P{anatomy.levels[-1] + 1}" not in text
    for i, (level, stride, p) in enumerate(zip(anatomy.levels, out["strides"], pyramid)):
        channels, h, w = p.shape[1:]
        assert text[f"P{level}"] == f"P{level} · /{stride}\n{channels}×{h}×{w}"
        assert -(-SIZE // stride) == h == w
        for name in ("cls", "box"):
            assert text[f"{name}_stem/P{level}"].endswith(dims(stems[name][i]))
        # The model's outputs, flattened (1, H·W, K), are the maps drawn, K×H×W.
        assert out["cls_logits"][i].shape == (1, h * w, CLASSES)
        assert text[f"cls_logits/P{level}"] == f"class logits {CLASSES}×{h}×{w}"
        assert out["box_deltas"][i].shape == (1, h * w, 4)
        assert text[f"box_deltas/P{level}"] == f"box deltas 4×{h}×{w}"
        assert out["centerness"][i].shape == (1, h * w)
        assert text[f"centerness/P{level}"] == f"centerness 1×{h}×{w}"
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.head.box_stem)
    assert f"{convs} conv 3×3" in text[f"box_stem/P{anatomy.levels[0]}"]


def test_the_drawing_is_readable_at_its_saved_size(models):
    fig = draw_anatomy(trace_shapes(models["paper"], SIZE))    # five levels, the widest numbers
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_text()]
    assert fig.get_figwidth() * fig.dpi <= 1000                 # not shrunk in a notebook cell
    for t in texts:                            # capitals and digits, in pixels of the saved figure
        glyphs = TextPath((0, 0), "H0", size=t.get_fontsize(), prop=FontProperties())
        assert glyphs.get_extents().height * fig.dpi / 72 >= 9, t.get_text()
    extents = [t.get_window_extent(renderer) for t in texts]
    assert all(fig.bbox.contains(e.x0, e.y0) and fig.bbox.contains(e.x1, e.y1) for e in extents)
    overlaps = [(a.get_text(), b.get_text()) for i, (a, ea) in enumerate(zip(texts, extents))
                for b, eb in zip(texts[i + 1:], extents[i + 1:]) if ea.overlaps(eb)]
    assert not overlaps
    ax = fig.axes[0]
    in_boxes = [t for t in ax.texts if t.get_text() and t.get_gid().split("/")[0] not in
                ("header", "footer")]
    assert len(in_boxes) == len(ax.patches)
    for t, patch in zip(in_boxes, ax.patches):                  # drawn in pairs, in order
        outer, inner = patch.get_window_extent(renderer), t.get_window_extent(renderer)
        assert outer.x0 < inner.x0 and inner.x1 < outer.x1, t.get_text()
        assert outer.y0 < inner.y0 and inner.y1 < outer.y1, t.get_text()
