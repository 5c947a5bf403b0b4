"""Drawing: pixels change where (and only where) boxes and points were drawn; the overlay of
positive locations uses the model's own grid (the viewer itself: tests/test_viewer.py)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from fcos_lib.curves import plot_loss_curves, plot_pr_curves
from fcos_lib.data import normalize
from fcos_lib.evaluate import mean_average_precision
from fcos_lib.model import FCOS, level_locations
from fcos_lib.positives import location_targets
from fcos_lib.review import model_location_targets
from fcos_lib.targets import assign_targets, default_size_ranges
from fcos_lib.viz import (
    GT_COLOR,
    Label,
    beside,
    class_colors,
    draw_detections,
    plot_detections_grid,
    plot_pictures,
    text_height,
    to_pixels,
)

NAMES = ["circle", "square", "triangle"]
GRAY = 60


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def gray_image(size: int = 64) -> torch.Tensor:
    return torch.full((3, size, size), GRAY, dtype=torch.uint8)


def sample():
    target = {"boxes": torch.tensor([[4.0, 4, 28, 28], [36, 8, 60, 56]]),
              "labels": torch.tensor([0, 2])}
    prediction = {"boxes": torch.tensor([[6.0, 6, 30, 30], [40, 10, 58, 54], [10, 40, 20, 60]]),
                  "scores": torch.tensor([0.9, 0.6, 0.2]), "labels": torch.tensor([0, 2, 1])}
    return target, prediction


def color_at(pixels: torch.Tensor, x: int, y: int) -> tuple[int, ...]:
    return tuple(int(v) for v in pixels[:, y, x])


def test_class_colors_are_distinct():
    for n in (3, 15, 30):
        colors = class_colors(n)
        assert len(colors) == n == len(set(colors))


def test_to_pixels_undoes_normalization_and_scales():
    pixels = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    back = to_pixels(normalize(pixels))
    assert (back.int() - pixels.int()).abs().max() <= 1
    big = to_pixels(pixels, scale=3)
    assert big.shape == (3, 24, 24) and torch.equal(big[:, ::3, ::3], pixels)


def test_draw_detections_draws_boxes_in_class_colours_and_filters():
    target, prediction = sample()
    image = gray_image()
    drawn = draw_detections(image, prediction, target, class_names=NAMES, score_thresh=0.5,
                            labels=False)
    colors = class_colors(len(NAMES))
    assert color_at(drawn, 6, 20) == colors[0]        # left side of prediction 0
    assert color_at(drawn, 58, 30) == colors[2]       # right side of prediction 1
    assert color_at(drawn, 28, 20) == GT_COLOR        # right side of ground-truth box 0
    assert color_at(drawn, 18, 20) == (GRAY,) * 3     # inside a box: untouched
    assert color_at(drawn, 10, 50) == (GRAY,) * 3     # prediction 2 scores 0.2 < 0.5
    low = draw_detections(image, prediction, None, score_thresh=0.1, labels=False)
    assert color_at(low, 10, 50) == colors[1]
    only_2 = draw_detections(image, prediction, target, classes=[2], class_names=NAMES,
                             labels=False)
    assert color_at(only_2, 6, 20) == (GRAY,) * 3 and color_at(only_2, 58, 30) == colors[2]
    assert color_at(only_2, 28, 20) == (GRAY,) * 3  # ground truth of class 0 hidden too
    nothing = draw_detections(image, None, None)
    assert torch.equal(nothing, image)
    with pytest.raises(ValueError, match="label 2 but only 2 class names"):
        draw_detections(image, prediction, target, class_names=["a", "b"])


def test_draw_detections_writes_the_best_label_first_then_the_ground_truths():
    target, prediction = sample()
    placed: list[Label] = []
    drawn = draw_detections(gray_image(), prediction, target, class_names=NAMES, scale=4,
                            font_size=12, placed=placed)
    assert [label.text for label in placed] == [
        "circle 0.90", "triangle 0.60", "square 0.20", "circle", "triangle"]
    assert {label.text_height for label in placed} == {text_height(12)}
    first = placed[0].box                              # on prediction 0's top edge, y = 24
    assert first[0] == 24 and first[3] == 24
    x1, y1, x2, y2 = first                             # a patch of the class's colour
    assert color_at(drawn, x1, y1) == class_colors(len(NAMES))[0]
    assert color_at(drawn, x2 - 1, y2 - 1) == class_colors(len(NAMES))[0]
    white = [label for label in placed if label.text in NAMES]
    assert all(color_at(drawn, label.box[0], label.box[1]) == GT_COLOR for label in white)


def course_overlays(target):
    """The location targets of a 64-pixel image on P3-P5 with points at cell centres."""
    locations = [level_locations(64 // s, 64 // s, s, 0.5) for s in (8, 16, 32)]
    return location_targets(target, locations, [8, 16, 32])


def test_location_targets_match_assign_targets():
    target, _ = sample()
    overlays = course_overlays(target)
    assert [len(o["locations"]) for o in overlays] == [64, 16, 4]
    locations = [level_locations(64 // s, 64 // s, s, 0.5) for s in (8, 16, 32)]
    matched = assign_targets(target["boxes"][None], target["labels"][None], locations,
                             [8, 16, 32], default_size_ranges([8, 16, 32]))[0]
    positive = torch.cat([o["positive"] for o in overlays])
    assert torch.equal(positive, matched >= 0) and positive.sum() > 0
    assert torch.equal(torch.cat([o["box"] for o in overlays]), matched)
    centerness = torch.cat([o["centerness"] for o in overlays])
    assert (centerness[positive] > 0).all() and (centerness[positive] <= 1).all()
    assert (centerness[~positive] == 0).all()
    # location (20, 20) in box 0 = (4, 4, 28, 28): l = t = 16, r = b = 8: sqrt(1/2 * 1/2)
    p3 = overlays[0]
    at = ((p3["locations"] - torch.tensor([20.0, 20.0])).abs().sum(1) == 0).nonzero()[0, 0]
    assert p3["positive"][at] and p3["centerness"][at] == pytest.approx(0.5)


@pytest.mark.parametrize("height, width", [(224, 224), (96, 160), (64, 64)])
def test_the_overlay_uses_the_models_own_grid_on_p3_to_p7(height, width):
    """P6 and P7 grids are rounded up (224 px: 4x4 and 2x2): the overlay shows every location
    the model predicts at, no fewer, with the model's offset and assignment settings."""
    model = FCOS(num_classes=2, backbone="tiny", levels=(3, 4, 5, 6, 7), location_offset=0.0,
                 center_sampling_radius=1.5).eval()
    with torch.no_grad():
        expected = model(torch.zeros(1, 3, height, width))["locations"]
    target, _ = sample()
    overlays = model_location_targets(model, target, height, width)
    if height == 224:
        assert [len(p) for p in expected][-2:] == [16, 4]
    for overlay, points in zip(overlays, expected):
        assert torch.equal(overlay["locations"], points)
    assert torch.equal(torch.cat([o["box"] for o in overlays]),
                       assign_targets(target["boxes"][None], target["labels"][None], expected,
                                      model.strides, default_size_ranges(model.strides), 1.5)[0])


def test_plot_detections_grid_shows_every_image():
    target, prediction = sample()
    images = normalize(torch.stack([gray_image(), gray_image()]))
    placed: list[list[Label]] = []
    fig = plot_detections_grid(images, [prediction, prediction], [target, target],
                               class_names=NAMES, placed=placed)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 2
    # scale 2, then 2 again: the figure shows it 2.3 times its size, its labels written sharp
    assert shown[0].images[0].get_array().shape == (256, 256, 3)
    expected = int((prediction["scores"] >= 0.3).sum())
    assert [ax.get_title() for ax in shown] == [f"{expected} boxes >= 0.3"] * 2
    assert [[label.text for label in p] for p in placed] == [["circle 0.90", "triangle 0.60",
                                                              "circle", "triangle"]] * 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["circle", "triangle", "ground truth"]
    bare = plot_detections_grid(images, None, [target, target], labels=False, scale=1)
    assert not bare.legends and [ax.get_title() for ax in bare.axes] == ["", ""]
    assert torch.equal(torch.from_numpy(bare.axes[0].images[0].get_array()).permute(2, 0, 1),
                       draw_detections(images[0], None, target, labels=False))   # as it was


def test_beside_pads_the_shorter_picture_below():
    tall, short = torch.zeros(3, 6, 2, dtype=torch.uint8), torch.ones(3, 4, 3, dtype=torch.uint8)
    both = beside(tall, short)
    assert both.shape == (3, 6, 5) and (both[:, 4:, 2:] == 255).all()
    assert torch.equal(both[:, :4, 2:], short) and torch.equal(both[:, :, :2], tall)


def test_plot_pictures_lays_out_a_grid_with_titles():
    pictures = [torch.full((3, 8, 10), v, dtype=torch.uint8) for v in (0, 100, 200)]
    fig = plot_pictures(pictures, ncols=2, titles=["a", "b", "c"])
    assert len(fig.axes) == 4  # two rows of two; the fourth stays empty
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert [int(ax.images[0].get_array()[0, 0, 0]) for ax in shown] == [0, 100, 200]


def test_plot_pr_curves_and_loss_curves():
    target, prediction = sample()
    result = mean_average_precision([prediction], [target])
    fig = plot_pr_curves(result, NAMES)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"circle: AP {result['per_class'][0]:.3f}",
                      f"triangle: AP {result['per_class'][2]:.3f}"]
    # The drawn envelope is the interpolated precision whose area is the AP.
    interpolated = fig.axes[0].lines[1].get_ydata()[1:]
    curve = result["curves"][0]
    assert np.array_equal(interpolated, np.maximum.accumulate(curve["precision"][::-1])[::-1])
    with pytest.raises(ValueError, match=r"no curve for classes \[1\]"):
        plot_pr_curves(result, NAMES, classes=[1])
    records = [{"step": s, "lr": 0.01, "classification": 1.0 / s, "bbox_regression": 0.5,
                "bbox_ctrness": 0.6, "total": 2.1, "steps_per_s": 3.0, "train_seconds": s}
               for s in range(1, 6)] + [{"step": 5, "map50": 0.4}]
    fig = plot_loss_curves(records)
    loss_ax, map_ax = fig.axes
    assert len(loss_ax.lines) == 4
    np.testing.assert_allclose(loss_ax.lines[1].get_ydata(), [1.0 / s for s in range(1, 6)])
    np.testing.assert_allclose(map_ax.lines[0].get_ydata(), [0.4])
