"""Every figure the notebooks commit reads at its saved size: no label covers another, and
every text's capitals and digits stand at least TEXT_PX (9) pixels high in the figure saved at
its dpi (as the notebook's inline backend saves it).

The drawing functions say where they wrote each label (their ``placed`` lists of
``fcos_lib.viz.Label``, in the picture's pixels); the test measures, from the drawn figure
itself, how many saved pixels show one pixel of each picture, and checks matplotlib's own
texts (titles, legend) by their font size and drawn extents.
"""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import pytest
import torch
from figtext import assert_texts_readable
from matplotlib.text import Text

import fcos_lib.viz.labels
from fcos_lib.data.shapes import ShapesDataset
from fcos_lib.review import level_panels, render_view
from fcos_lib.viz import (
    TEXT_PX,
    Label,
    beside,
    draw_detections,
    plot_detections_grid,
    readable_size,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def assert_clear(labels: list[Label], where: str) -> None:
    """No two label patches share a pixel."""
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            overlap = (a.box[0] < b.box[2] and b.box[0] < a.box[2] and a.box[1] < b.box[3]
                       and b.box[1] < a.box[3])
            assert not overlap, f"{where}: {a.text!r} {a.box} covers {b.text!r} {b.box}"


def assert_tall(labels: list[Label], shown: float, where: str) -> None:
    """Each label's capitals are TEXT_PX pixels high or more, ``shown`` pixels per pixel."""
    for label in labels:
        assert label.text_height * shown >= TEXT_PX, (
            f"{where}: {label.text!r} is {label.text_height * shown:.1f} px high at the saved "
            f"size, under {TEXT_PX}")


def saved(fig) -> None:
    """Save as the notebook does (PNG at the figure's dpi, tight), then lay out for measures."""
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    fig.canvas.draw()


def shown_scales(fig) -> list[float]:
    """For each picture in the figure (axes order): saved pixels per pixel of the picture."""
    return [ax.images[0].get_window_extent().width / ax.images[0].get_array().shape[1]
            for ax in fig.axes if ax.images]


def check_figure(fig, placed: list[list[Label]], where: str) -> None:
    """Every picture's labels clear of each other and tall enough; matplotlib's texts too."""
    saved(fig)
    scales = shown_scales(fig)
    assert len(scales) == len(placed), f"{where}: one list of labels per picture"
    for k, (labels, shown) in enumerate(zip(placed, scales)):
        assert_clear(labels, f"{where}, picture {k}")
        assert_tall(labels, shown, f"{where}, picture {k}")
    texts = [t for t in [c for c in fig.get_children() if isinstance(c, Text)]
             + [t for legend in fig.legends for t in legend.get_texts()]
             + [t for ax in fig.axes for t in [ax.title, *ax.texts]]]
    assert_texts_readable(fig, texts, where)


def crowded(image_size: int, count: int, seed: int = 0):
    """Shapes images with their objects, and predictions crowding them: three jittered boxes
    of random classes per object scoring 0.3 to 0.6, and, on the first object, two classes
    in one box scoring more (the case of 07's "star 0.39" written over "circle 0.33")."""
    data = ShapesDataset("val", image_size=image_size, length=count)
    g = torch.Generator().manual_seed(seed)
    images, predictions, targets = [], [], []
    for i in range(count):
        image, target = data[i]
        boxes = target["boxes"].repeat(3, 1) + torch.randn(3 * len(target["boxes"]), 4,
                                                           generator=g) * image_size / 40
        boxes = torch.cat([target["boxes"][:1], target["boxes"][:1], boxes])
        labels = torch.cat([torch.tensor([3, 0]), torch.randint(0, 6, (len(boxes) - 2,),
                                                                generator=g)])
        scores = torch.cat([torch.tensor([0.64, 0.61]), torch.rand(len(boxes) - 2,
                                                                   generator=g) * 0.3 + 0.3])
        images.append(image)
        predictions.append({"boxes": boxes, "scores": scores, "labels": labels})
        targets.append(target)
    return images, predictions, targets, data.class_names


def test_two_classes_on_one_object_get_two_labels_side_by_side():
    images, predictions, targets, names = crowded(128, 1)
    placed: list[Label] = []
    draw_detections(images[0], predictions[0], targets[0], class_names=names, scale=2,
                    placed=placed)
    texts = [label.text for label in placed]
    assert "star 0.64" in texts and "circle 0.61" in texts
    assert_clear(placed, "draw_detections")
    assert_tall(placed, 1.0, "draw_detections at its own size")


def test_07s_nms_figure():
    """Notebook 07: one image before and after NMS, two pictures 4.5 inches wide."""
    images, predictions, _, names = crowded(128, 1)
    placed: list[list[Label]] = []
    fig = plot_detections_grid(images * 2, predictions * 2, class_names=names, ncols=2,
                               size=4.5, titles=["before NMS", "after NMS"], placed=placed)
    check_figure(fig, placed, "07 NMS")
    assert {"star 0.64", "circle 0.61"} <= {label.text for label in placed[0]}


@pytest.mark.parametrize("image_size", [128, 224])
def test_07s_best_and_worst_grid(image_size):
    """Notebook 07's grids: four images a row at the default 3.2 inches, scale 2, a title
    over each and the legend under them."""
    images, predictions, targets, names = crowded(image_size, 4, seed=image_size)
    placed: list[list[Label]] = []
    fig = plot_detections_grid(torch.stack(images), predictions, targets, class_names=names,
                               titles=[f"image {i}: AP 0.50" for i in range(4)], placed=placed)
    fig.suptitle("worst images", y=1.06)
    check_figure(fig, placed, f"07 grid of {image_size}-px images")
    assert sum(len(labels) for labels in placed) >= 12     # crowded, yet labelled


def test_07s_level_maps_beside_the_view():
    """Notebook 07: the worst image under review (scale 2, labels readable at its own size)
    beside P3's two maps with titles and colour bars, in a 7.5 x 5 inch figure."""
    images, predictions, targets, names = crowded(128, 1, seed=3)
    view_labels: list[Label] = []
    view = render_view(images[0], targets[0], predictions[0], class_names=names, scale=2,
                       font_size=readable_size(), placed=view_labels)
    outputs = {"cls_logits": [torch.randn(1, 16 * 16, len(names))],
               "centerness": [torch.randn(1, 16 * 16)], "strides": [8]}
    map_labels: list[Label] = []
    maps = level_panels(outputs, 0, (128, 128), scale=2, titles=True, colorbar=True,
                        placed=map_labels)
    assert [label.text for label in map_labels] == [
        "P3 class score", "0", "0.5", "1", "P3 centerness", "0", "0.5", "1"]
    picture = beside(view, maps)
    moved = [m._replace(box=(m.box[0] + view.shape[2], m.box[1], m.box[2] + view.shape[2],
                             m.box[3])) for m in map_labels]
    plt.figure(figsize=(7.5, 5))
    plt.imshow(picture.permute(1, 2, 0).numpy())
    plt.axis("off")
    plt.title("image 0 (AP 0.33); right: P3's class score and centerness")
    check_figure(plt.gcf(), [view_labels + moved], "07 level maps")


def test_01s_sample_grids():
    """Notebook 01: eight samples a grid, 2.6 inches each, shapes at 128 px and at VOC's 224."""
    for image_size in (128, 224):
        images, _, targets, names = crowded(image_size, 8)
        placed: list[list[Label]] = []
        fig = plot_detections_grid(images, None, targets, class_names=names, scale=1,
                                   size=2.6, placed=placed)
        check_figure(fig, placed, f"01 samples at {image_size} px")
        assert all(placed)


def test_01s_crop_figure():
    """Notebook 01: a wide image (320 x 160) and its 128-px crop, 4 inches each."""
    images, _, targets, names = crowded(160, 2)
    wide = torch.cat(images, dim=2)
    boxes = torch.cat([targets[0]["boxes"], targets[1]["boxes"] + torch.tensor([160.0, 0, 160,
                                                                                0])])
    labels = torch.cat([targets[0]["labels"], targets[1]["labels"]])
    square = torch.nn.functional.interpolate(images[0][None], size=(128, 128))[0]
    placed: list[list[Label]] = []
    fig = plot_detections_grid([wide, square], None, [
        {"boxes": boxes, "labels": labels},
        {"boxes": targets[0]["boxes"] * 0.8, "labels": targets[0]["labels"]}],
        class_names=names, scale=1, ncols=2, size=4, placed=placed)
    check_figure(fig, placed, "01 crop")


def test_the_checks_catch_what_they_look_for():
    """The overlap and height checks fail on labels that cover each other or are too small."""
    a, b = Label("star 0.39", (10, 10, 60, 24), 9), Label("circle 0.33", (40, 12, 90, 26), 9)
    with pytest.raises(AssertionError, match="covers"):
        assert_clear([a, b], "made up")
    assert_clear([a, b._replace(box=(60, 10, 110, 24))], "side by side")   # touching is clear
    with pytest.raises(AssertionError, match="under 9"):
        assert_tall([a._replace(text_height=7)], 1.2, "made up")


def test_the_check_fails_on_labels_where_torchvision_puts_them(monkeypatch):
    """With each label at its box's corner whatever lies there (draw_bounding_boxes' way),
    07's two classes on one object cover each other, and the check says so."""
    monkeypatch.setattr(fcos_lib.viz.labels, "place_labels",
                        lambda boxes, sizes, width, height: [
                            (x1, y1, x1 + w, y1 + h) for (x1, y1, _, _), (w, h) in
                            zip(boxes.round().int().tolist(), sizes)])
    images, predictions, _, names = crowded(128, 1)
    placed: list[list[Label]] = []
    fig = plot_detections_grid(images, predictions, class_names=names, placed=placed)
    with pytest.raises(AssertionError, match="covers"):
        check_figure(fig, placed, "corner placement")
