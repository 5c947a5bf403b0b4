"""The viewer: the verdicts against a plain restatement of the VOC rule, the colours drawn
where they belong, the model's own maps, and the widget's controls redrawing what they ask
for (NMS, order, level). The Colab-play test runs this file with ipywidgets 7.7."""
from __future__ import annotations

import io
import re

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from fcos_lib.data import ShapesDataset
from fcos_lib.diagnose import DUPLICATE, FALSE_POSITIVE, IGNORED, TRUE_POSITIVE, image_ap, judge
from fcos_lib.inference import predict_dataset
from fcos_lib.model import FCOS
from fcos_lib.review import (
    FOUND_COLOR,
    MISSED_COLOR,
    STATUS_COLORS,
    legend_html,
    level_panels,
    model_location_targets,
    place_labels,
    render_view,
    title_band,
    title_height,
)
from fcos_lib.viewer import BoxViewer, DetectorView

GRAY = 60


def color_at(pixels, x, y):
    return tuple(int(v) for v in pixels[:, y, x])


def plain_verdict(prediction, target, iou_threshold):
    """The devkit's rule, one detection at a time in score order."""
    taken, status = set(), []
    difficult = target.get("difficult", torch.zeros(len(target["labels"]), dtype=torch.bool))
    for k in torch.argsort(-prediction["scores"], stable=True).tolist():
        same = (target["labels"] == prediction["labels"][k]).nonzero().flatten().tolist()
        best, best_iou = None, -1.0
        for g in same:
            iou = float(box_iou(prediction["boxes"][k:k + 1], target["boxes"][g:g + 1]))
            if iou > best_iou:
                best, best_iou = g, iou
        if best is None or best_iou <= iou_threshold:
            status.append((k, FALSE_POSITIVE))
        elif difficult[best]:
            status.append((k, IGNORED))
        elif best in taken:
            status.append((k, DUPLICATE))
        else:
            taken.add(best)
            status.append((k, TRUE_POSITIVE))
    found = [g in taken or bool(difficult[g]) for g in range(len(target["labels"]))]
    return [s for _, s in sorted(status)], found


@pytest.mark.parametrize("seed", range(20))
def test_judge_follows_the_devkit_rule(seed):
    gen = torch.Generator().manual_seed(seed)

    def boxes(n):
        xy = torch.randint(0, 40, (n, 2), generator=gen).float()
        return torch.cat([xy, xy + torch.randint(4, 30, (n, 2), generator=gen)], 1)

    g, k = int(torch.randint(0, 6, (1,), generator=gen)), int(torch.randint(0, 12, (1,),
                                                                           generator=gen))
    target = {"boxes": boxes(g), "labels": torch.randint(0, 3, (g,), generator=gen),
              "difficult": torch.rand(g, generator=gen) < 0.2}
    # Detections near the objects (some duplicates), and some anywhere.
    near = target["boxes"][torch.randint(0, max(g, 1), (k,), generator=gen)] if g else boxes(k)
    prediction = {"boxes": near + torch.randint(-4, 5, (k, 4), generator=gen),
                  "scores": torch.rand(k, generator=gen).round(decimals=1),  # ties too
                  "labels": torch.randint(0, 3, (k,), generator=gen)}
    for t in (0.3, 0.5, 0.7):
        verdict = judge(prediction, target, t)
        status, found = plain_verdict(prediction, target, t)
        assert verdict["status"].tolist() == status
        assert verdict["found"].tolist() == found


def test_image_ap_is_the_map_of_the_image_alone():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]),
              "labels": torch.tensor([0, 1])}
    prediction = {"boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
                  "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([0, 1])}
    assert image_ap(prediction, target, 2) == pytest.approx(0.5)  # class 0 found, class 1 not
    assert np.isnan(image_ap(prediction, {"boxes": torch.zeros(0, 4),
                                          "labels": torch.zeros(0, dtype=torch.long)}, 2))


def scene():
    """A found object (class 0) with its true positive and a duplicate, a missed object
    (class 1), and a false positive (class 0, where no class-0 object is)."""
    image = torch.full((3, 128, 128), GRAY, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[10.0, 10, 60, 60], [70, 10, 120, 50]]),
              "labels": torch.tensor([0, 1])}
    prediction = {"boxes": torch.tensor([[14.0, 14, 62, 62], [6, 12, 58, 58], [80, 80, 120, 120]]),
                  "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0]),
                  "levels": torch.tensor([0, 1, 2])}
    return image, target, prediction


def test_each_verdict_is_drawn_in_its_colour():
    image, target, prediction = scene()
    view = render_view(image, target, prediction, class_names=["cat", "dog"], scale=1,
                       level_names=["P3", "P4", "P5"])
    assert color_at(view, 14, 55) == STATUS_COLORS[TRUE_POSITIVE]
    assert color_at(view, 6, 50) == STATUS_COLORS[DUPLICATE]
    assert color_at(view, 80, 110) == STATUS_COLORS[FALSE_POSITIVE]
    assert color_at(view, 70, 45) == MISSED_COLOR and color_at(view, 119, 45) == MISSED_COLOR
    assert color_at(view, 10, 35) == FOUND_COLOR
    # Without the ground truth, the verdicts stay; the objects are not drawn.
    hidden = render_view(image, target, prediction, show_gt=False, scale=1)
    assert color_at(hidden, 14, 55) == STATUS_COLORS[TRUE_POSITIVE]
    assert color_at(hidden, 70, 45) == (GRAY,) * 3 and color_at(hidden, 10, 35) == (GRAY,) * 3
    # One class: the class-0 detections and object go, the missed dog stays.
    dogs = render_view(image, target, prediction, classes=[1], scale=1)
    assert color_at(dogs, 70, 45) == MISSED_COLOR
    assert color_at(dogs, 80, 110) == (GRAY,) * 3 and color_at(dogs, 14, 55) == (GRAY,) * 3
    # Enlarged, everything grows with it.
    big = render_view(image, target, prediction, scale=2)
    assert big.shape == (3, 256, 256) and color_at(big, 161, 221) == \
        STATUS_COLORS[FALSE_POSITIVE]


def test_labels_do_not_cover_each_other_and_touch_their_boxes():
    """Boxes stacked at one corner, labels as wide as the picture allows: every label lies in
    the picture, against its own box, and covers no other; where no spot is left, none."""
    boxes = torch.tensor([[20.0 + i, 30 + i, 100, 100] for i in range(12)] + [[0.0, 0, 5, 5],
                                                                             [120, 120, 128, 128]])
    sizes = [(60, 14)] * 12 + [(40, 14), (50, 14)]
    places = place_labels(boxes, sizes, 128, 128)
    placed = [k for k, place in enumerate(places) if place is not None]
    for k in placed:
        x1, y1, x2, y2 = places[k]
        bx1, by1, bx2, by2 = boxes[k].tolist()
        assert 0 <= x1 and x2 <= 128 and 0 <= y1 and y2 <= 128 and (x2 - x1, y2 - y1) == sizes[k]
        assert x1 <= bx2 and bx1 <= x2 and y1 <= by2 and by1 <= y2, f"label {k} off its box"
        for j in placed:
            if j < k:
                a1, b1, a2, b2 = places[j]
                assert x2 <= a1 or a2 <= x1 or y2 <= b1 or b2 <= y1, f"label {k} covers {j}"
    assert 12 in placed and 13 in placed            # the lone boxes keep theirs
    assert 4 <= len(placed) < len(places)           # the pile: some, not all
    assert place_labels(boxes[:2], sizes[:2], 128, 128)[1] is not None
    assert places[0] == (20, 16, 80, 30)      # the first one goes above its box's corner
    # And drawn: the first label's patch is where it was placed.
    image = torch.full((3, 128, 128), GRAY, dtype=torch.uint8)
    prediction = {"boxes": boxes[:1], "scores": torch.tensor([0.5]),
                  "labels": torch.zeros(1, dtype=torch.long)}
    view = render_view(image, None, prediction, scale=1)
    assert color_at(view, 21, 28) == STATUS_COLORS[FALSE_POSITIVE]   # its margin, above the box


def test_level_panels_show_the_models_maps_and_the_positives():
    C, stride, size = 3, 8, 64
    cls = torch.full((1, 64, C), -6.0)
    cls[0, 9, 2] = 3.0                           # cell (row 1, col 1), class 2
    ctr = torch.zeros(1, 64)
    ctr[0, 18] = 4.0                             # cell (row 2, col 2)
    outputs = {"cls_logits": [cls], "centerness": [ctr], "strides": [stride]}
    positives = {"locations": torch.tensor([[36.0, 36], [4, 4]]),
                 "positive": torch.tensor([True, False])}
    assert level_panels(outputs, 0, (size, size), scale=2).shape == (3, 128, 64)
    panels = level_panels(outputs, 0, (size, size), positives=positives, scale=2, titles=True)
    T = title_height(128)                        # a title over each map
    assert panels.shape == (3, 2 * (T + 64), 64)  # two maps of 64 x 64, one above the other
    top, bottom = T, 2 * T + 64                  # where each map starts
    magma, viridis = matplotlib.colormaps["magma"], matplotlib.colormaps["viridis"]

    def rgb(cmap, p):
        return tuple(int(round(255 * v)) for v in cmap(p)[:3])

    assert color_at(panels, 8 + 1, top + 8 + 1) == rgb(magma, torch.sigmoid(
        torch.tensor(3.0)).item())
    assert color_at(panels, 30, top + 30) == rgb(magma, torch.sigmoid(torch.tensor(-6.0)).item())
    assert color_at(panels, 16 + 1, bottom + 16 + 1) == rgb(viridis, torch.sigmoid(
        torch.tensor(4.0)).item())
    assert color_at(panels, 36, top + 36) == (255, 255, 255)     # the positive, on both maps
    assert color_at(panels, 36, bottom + 36) == (255, 255, 255)
    assert color_at(panels, 4, top + 4) != (255, 255, 255)       # not a positive
    # One class only: class 0's map is dark where class 2 was bright.
    only0 = level_panels(outputs, 0, (size, size), classes=[0], scale=2)      # no titles
    assert color_at(only0, 9, 9) == rgb(magma, torch.sigmoid(torch.tensor(-6.0)).item())
    # The titles: the level and the map's name, written on a dark band over each map.
    for start, name in ((0, "P3 class score"), (T + 64, "P3 centerness")):
        band = panels[:, start:start + T]
        assert torch.equal(band, title_band(name, 64, T)) and (band == 255).any()
        assert color_at(band, 63, 0) == (40, 40, 40)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = FCOS(6).eval()
    with torch.no_grad():   # only class 0 is ever likely: fewer candidates than the 100 kept
        model.head.cls_logits.bias[1:] = -20.0
        model.head.box_deltas.bias.fill_(1.5)   # boxes 3 strides wide: neighbours overlap
    data = ShapesDataset("val", image_size=64, length=6)
    return model, data


def test_the_kept_outputs_give_the_models_own_detections(setup):
    model, data = setup
    view = DetectorView(model, data)
    image, _ = data[2]
    for score, nms in ((0.05, 0.6), (0.1, 0.3)):
        (expected,) = model.predict(image[None], score_thresh=score, nms_thresh=nms)
        got = view.detections(2, score, nms)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert len(view.detections(2, 0.05, 0.6, before_nms=True)["boxes"]) > len(
        view.detections(2, 0.05, 0.6)["boxes"])


def test_the_controls_redraw_what_they_ask_for(setup):
    model, data = setup
    viewer = BoxViewer(model, data, scale=1, score_thresh=0.05)
    assert all(value is not None for _, value in viewer.level.options + viewer.classes.options)
    assert viewer.score.min == 0.05   # the detections are cut there

    def shown():
        png = np.array(Image.open(io.BytesIO(viewer.image.value)))
        assert torch.equal(torch.from_numpy(png).permute(2, 0, 1), viewer.last_view)
        return viewer.last_view

    def expected(**kw):
        i = viewer.indices[viewer.position.value]
        image, target = data[i]
        found = DetectorView(model, data).detections(i, viewer.score.value, viewer.nms.value,
                                                     viewer.before_nms.value)
        args = dict(iou_threshold=viewer.iou.value, class_names=data.class_names, scale=1,
                    level_names=["P3", "P4", "P5"]) | kw
        return render_view(image, target, found, **args)

    assert torch.equal(shown(), expected())
    counts = {}
    for nms in (0.3, 0.9):
        viewer.nms.value = nms
        counts[nms] = len(viewer.last_detections["boxes"])
        assert torch.equal(shown(), expected())
    assert counts[0.3] < counts[0.9], "a looser NMS keeps more boxes"
    viewer.before_nms.value = True
    assert len(viewer.last_detections["boxes"]) > counts[0.9]
    viewer.before_nms.value = False
    viewer.position.value = 3
    viewer.classes.value = 1
    assert torch.equal(shown(), expected(classes=[1]))
    viewer.show_gt.value = False
    assert torch.equal(shown(), expected(classes=[1], show_gt=False))
    assert "(ground truth hidden)" in viewer.info.value
    # The info counts the shown class's objects only.
    _, target = data[3]
    objects = int((target["labels"] == 1).sum())
    assert f"of {objects} objects found" in viewer.info.value
    # A level: its maps beside the picture, and its positives counted.
    viewer.classes.value = -1
    viewer.level.value = 0
    assert viewer.last_view.shape[-1] == 64 + 32
    image, target = data[3]
    positives = model_location_targets(model, target, 64, 64)[0]
    assert f"P3: {int(positives['positive'].sum())} positive locations" in viewer.info.value


def test_ordering_by_trouble(setup):
    model, data = setup
    viewer = BoxViewer(model, data, scale=1)
    predictions, targets = predict_dataset(model, data)
    aps = [image_ap(p, t, 6) for p, t in zip(predictions, targets)]
    misses = [int((~judge(p, t)["found"]).sum()) for p, t in zip(predictions, targets)]
    viewer.order.value = "ap"
    assert viewer.position.value == 0
    ordered = [aps[i] for i in viewer.indices]
    assert ordered == sorted(ordered) and sorted(viewer.indices) == list(range(len(data)))
    assert f"<b>image {viewer.indices[0]}</b>" in viewer.info.value
    viewer.order.value = "misses"
    assert [misses[i] for i in viewer.indices] == sorted(misses, reverse=True)


def test_one_update_of_a_224_pixel_image_is_timed(capsys):
    torch.manual_seed(0)
    model = FCOS(20).eval()
    data = ShapesDataset("val", image_size=224, length=3)
    viewer = BoxViewer(model, data, class_names=[f"c{i}" for i in range(20)], scale=2)
    times = {}
    for name, control, value in (("new image", viewer.position, 1),
                                 ("score", viewer.score, 0.5), ("NMS", viewer.nms, 0.4),
                                 ("level maps", viewer.level, 1)):
        control.value = value
        times[name] = viewer.last_ms
    with capsys.disabled():
        print("\nviewer update, 224 px image shown at 448 px, CPU: "
              + ", ".join(f"{k} {v:.0f} ms" for k, v in times.items())
              + " (the issue asks under 300 ms)")
    assert all(v > 0 for v in times.values())


def displayed(viewer) -> dict:
    """The data that a cell ending in ``viewer`` publishes, as IPython sends it."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        display(viewer)
    (shown,) = captured.outputs
    return shown.data


def still(data: dict) -> torch.Tensor:
    """The picture of a published bundle, uint8 (3, H, W)."""
    import base64

    png = base64.b64decode(data["image/png"])
    return torch.from_numpy(np.array(Image.open(io.BytesIO(png)).convert("RGB"))).permute(2, 0, 1)


@pytest.mark.parametrize("kind", ["boxes", "photo"])
def test_a_viewer_displays_as_its_widget_with_a_still_picture_of_its_view(setup, kind):
    """A cell ending in a viewer shows the widget (on ipywidgets 7.7, Colab's, and 8), and
    leaves for the saved notebook a picture of the view it drew, under a band that says to
    run the notebook, and that line in its text; never the widget's raw repr."""
    from fcos_lib.photo import sample_photo
    from fcos_lib.photo_viewer import STILL_NOTE, WIDGET_VIEW
    from fcos_lib.viewer import PhotoViewer

    model, data = setup
    viewer = (BoxViewer(model, data) if kind == "boxes" else
              PhotoViewer(model, 64, data.class_names, sample_photo("shapes"), max_side=300))
    if kind == "boxes":
        viewer.position.value = 2                   # the picture of the view now, not the first
    shown = displayed(viewer)
    assert shown[WIDGET_VIEW]["model_id"] == viewer.widget.model_id
    picture, view = still(shown), viewer.last_view
    assert picture.shape == (3, 22 + view.shape[1], view.shape[2])
    assert torch.equal(picture[:, 22:], view)                      # the view, pixel for pixel
    colours, counts = picture[:, :22].flatten(1).unique(dim=1, return_counts=True)
    assert counts.max() > 0.6 * counts.sum() and len(counts) > 2     # a plain band, with words
    text = shown["text/plain"]
    assert STILL_NOTE in text and "VBox(" not in text and "<b>" not in text
    assert text.splitlines()[0] == " ".join(re.sub("<[^>]+>", "", viewer.info.value).split())


def test_on_colab_a_viewer_publishes_what_ipywidgets_does(setup, monkeypatch):
    """Colab keeps no widget state, and how it chooses between a widget and a picture is not
    known here: there the bundle has no picture."""
    import sys
    import types

    from fcos_lib.photo_viewer import WIDGET_VIEW

    model, data = setup
    viewer = BoxViewer(model, data)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert set(displayed(viewer)) == {WIDGET_VIEW, "text/plain"}


# ------------------------------------------------------------------ what a person sees


def test_a_true_positive_under_a_false_positive_keeps_its_outline_and_its_label():
    """Two boxes on one place: the better (a true positive) is drawn last, on top, and each
    keeps a label of its verdict's colour, the better one in the first spot (above the box)."""
    image = torch.full((3, 128, 128), GRAY, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[30.0, 40, 100, 110]]), "labels": torch.tensor([0])}
    box = target["boxes"][0]
    prediction = {"boxes": torch.stack([box, box]), "scores": torch.tensor([0.9, 0.6]),
                  "labels": torch.tensor([0, 1])}            # a cat, and a dog on the cat
    for order in ([0, 1], [1, 0]):                           # in either order given
        shuffled = {k: v[order] for k, v in prediction.items()}
        view = render_view(image, target, shuffled, class_names=["cat", "dog"], scale=1)
        tp, fp = STATUS_COLORS[TRUE_POSITIVE], STATUS_COLORS[FALSE_POSITIVE]
        for x, y in ((30, 75), (99, 75), (65, 109)):         # the edges: left, right, bottom
            assert color_at(view, x, y) == tp, (order, x, y)
        assert color_at(view, 31, 38) == tp                  # the best label: above the box
        assert color_at(view, 31, 45) == fp                  # the other: inside, along the top
        both = [int((view == torch.tensor(c)[:, None, None]).all(0).sum()) for c in (tp, fp)]
        assert min(both) > 50, both


def test_the_photo_viewers_labels_are_placed_clear_of_each_other():
    """draw_photo places its labels as the main viewer does: two boxes on one place keep two
    labels (before, the second was written over the first)."""
    from fcos_lib.photo import draw_photo
    from fcos_lib.viz import class_colors

    pixels = torch.full((3, 200, 300), GRAY, dtype=torch.uint8)
    box = torch.tensor([60.0, 60, 200, 160])
    found = {"boxes": torch.stack([box, box, box + 4]), "scores": torch.tensor([0.5, 0.9, 0.7]),
             "labels": torch.tensor([1, 0, 2])}
    drawn = draw_photo(pixels, found, ["a", "b", "c"])
    colors = class_colors(3)
    assert color_at(drawn, 60, 110) == colors[0]             # the best box on top
    assert color_at(drawn, 61, 58) == colors[0]              # its label above it
    for c in colors:
        assert int((drawn == torch.tensor(c)[:, None, None]).all(0).sum()) > 40, c


def test_verdict_colours_are_far_from_the_shapes_own_colours():
    """A missed cyan cross was drawn in cyan: each colour of a verdict or an object now lies
    farther from every class colour of the shapes (and its random shade, +-25 a channel)
    than any shade can come, and they differ from each other; the legend names each."""
    from fcos_lib.data.shapes import SHAPE_COLORS
    from fcos_lib.review import COLOR_NAMES

    ours = [*STATUS_COLORS.values(), FOUND_COLOR, MISSED_COLOR]
    shade = 25 * 3 ** 0.5
    for color in ours:
        for shape in SHAPE_COLORS:
            assert np.linalg.norm(np.subtract(color, shape)) > 2 * shade, (color, shape)
        for other in ours:
            assert other == color or np.linalg.norm(np.subtract(color, other)) > 60
    legend = legend_html()
    for color in (STATUS_COLORS[TRUE_POSITIVE], STATUS_COLORS[FALSE_POSITIVE],
                  STATUS_COLORS[DUPLICATE], FOUND_COLOR, MISSED_COLOR):
        assert f"rgb{color}" in legend and color in COLOR_NAMES


def test_the_info_line_speaks_the_legends_words_and_names_the_sliders_position(setup):
    from fcos_lib.diagnose import STATUS_NAMES

    model, data = setup
    viewer = BoxViewer(model, data, scale=1, score_thresh=0.05)
    info, legend = viewer.info.value, legend_html()
    for status in (TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE):
        assert STATUS_NAMES[status] in info and STATUS_NAMES[status] in legend
    assert " right" not in info and " wrong" not in info
    assert viewer.position.description == "position"
    assert "<b>image 0</b> (position 0 of 6, by number)" in info
    viewer.order.value = "ap"
    viewer.position.value = 2
    assert (f"<b>image {viewer.indices[2]}</b> (position 2 of 6, worst AP first)"
            in viewer.info.value)


def test_grading_is_announced_only_when_it_happens(setup):
    model, data = setup
    viewer = BoxViewer(model, data, scale=1)
    said = []
    viewer.info.observe(lambda change: said.append(change["new"]), "value")
    viewer.order.value = "ap"
    assert any("grading" in s for s in said)
    said.clear()
    viewer.order.value = "index"
    viewer.order.value = "misses"                     # graded already, at this IoU
    assert said and not any("grading" in s for s in said)


def test_the_info_line_says_when_the_detection_cap_makes_the_score_slider_idle():
    torch.manual_seed(0)
    model = FCOS(6).eval()
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(4.0)          # every class everywhere: far over 100
    data = ShapesDataset("val", image_size=64, length=2)
    viewer = BoxViewer(model, data, scale=1, score_thresh=0.05, nms_thresh=0.95)
    assert len(viewer.last_detections["boxes"]) == 100
    assert "the 100 best-scored detections only" in viewer.info.value
    assert "a lower score threshold shows no more" in viewer.info.value
    viewer.score.value = 0.95                          # now the threshold cuts: no cap
    assert len(viewer.last_detections["boxes"]) < 100
    assert "best-scored" not in viewer.info.value


def test_the_maps_come_with_titles_and_the_picture_is_not_cut(setup):
    model, data = setup
    viewer = BoxViewer(model, data, scale=2)
    plain = viewer.last_view
    viewer.level.value = 0
    T = title_height(128)
    assert viewer.last_view.shape == (3, 128 + 2 * T, 128 + 64)
    assert torch.equal(viewer.last_view[:, :128, :128], plain)       # the picture, whole
    assert (viewer.last_view[:, 128:, :128] == 255).all()           # room under it


def test_an_upload_that_is_no_image_is_named_with_the_kinds_that_are_read(checkpoint):
    from fcos_lib.photo import IMAGE_KINDS, sample_photo
    from fcos_lib.photo_viewer import PhotoViewer

    model, config = FCOS.from_checkpoint(checkpoint)
    viewer = PhotoViewer(model, 64, config["class_names"], sample_photo())
    viewer.show(b"%PDF-1.4 not a picture", "report.pdf")
    assert "report.pdf: not an image this can read" in viewer.info.value
    assert IMAGE_KINDS in viewer.info.value
    assert "BytesIO" not in viewer.info.value and "0x" not in viewer.info.value


def test_the_controls_wrap_instead_of_scrolling(setup):
    """Every control row wraps (CSS flex-flow), sliders keep a usable width; the layout
    traits are those of ipywidgets 7.7 (Colab) and 8 alike."""
    from fcos_lib.photo_viewer import PhotoViewer  # noqa: F401 (the other viewer, same rows)

    model, data = setup
    viewer = BoxViewer(model, data, scale=1)
    assert viewer.controls.layout.flex_flow == "row wrap"
    assert viewer.controls.layout.overflow == "visible"
    for slider in (viewer.position, viewer.score, viewer.nms, viewer.iou):
        assert slider.layout.min_width == "240px" and slider.layout.flex == "1 1 270px"
    assert viewer.before_nms.layout.width == "auto" and viewer.show_gt.layout.width == "auto"
