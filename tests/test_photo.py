"""Whole photos in, boxes in the photo's own pixels out (fcos_lib.photo, the predict command)."""
from __future__ import annotations

import datetime
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from fcos_lib.photo import (
    as_coco_results,
    as_record,
    boxes_to_photo,
    detect_photo,
    letterbox,
    read_photo,
    sample_photo,
)

ROOT = Path(__file__).resolve().parents[1]


class FindsTheBrightPatch(torch.nn.Module):
    """A stand-in detector: one box around the input's pixels brighter than the dataset's
    mean (the padding is the mean, so it is never bright), in the input's pixels."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, int]] = []

    def predict(self, images, score_thresh=0.05, nms_thresh=0.6):
        self.seen.append(tuple(images.shape[-2:]))
        ys, xs = (images[0].mean(0) > 1.0).nonzero(as_tuple=True)
        box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()[None]
        return [{"boxes": box, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long),
                 "levels": torch.zeros(1, dtype=torch.long)}]


def photo_with_patch(height, width, box):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)   # dark background
    x1, y1, x2, y2 = box
    pixels[y1:y2, x1:x2] = 255
    return pixels


@pytest.mark.parametrize("shape,box", [
    ((375, 500), (300, 40, 480, 200)),    # landscape, the object near the right edge
    ((500, 375), (10, 380, 120, 490)),    # portrait, near the bottom left
    ((30, 41), (25, 3, 40, 20)),          # tiny: enlarged to the model's size
    ((120, 1100), (900, 10, 1090, 110)),  # a panorama, past the 4:1 limit: shrunk to fit
])
def test_the_box_comes_back_in_the_photos_pixels(shape, box, tmp_path):
    height, width = shape
    path = tmp_path / "photo.png"
    Image.fromarray(photo_with_patch(height, width, box)).save(path)
    model = FindsTheBrightPatch()
    found = detect_photo(model, path, 224)
    iou = float(box_iou(found["boxes"], torch.tensor([box], dtype=torch.float32)))
    assert iou > 0.9, (found["boxes"], box)
    padded = model.seen[0]
    assert padded[0] % 32 == 0 and padded[1] % 32 == 0
    if max(shape) / min(shape) <= 4:
        assert min(padded) == 224                       # the shorter side at the model's size
    else:
        assert max(padded) == 4 * 224                   # the longer side capped


def test_letterbox_keeps_the_whole_photo_and_pads_with_the_mean():
    pixels = torch.full((3, 375, 500), 200, dtype=torch.uint8)
    image, scale = letterbox(pixels, 224)
    assert image.shape == (3, 224, 320) and scale == pytest.approx(224 / 375)
    h, w = round(375 * scale), round(500 * scale)
    assert (image[:, :h, :w] > 0.5).all()                # the photo, all of it (199 px kept)
    assert (image[:, :, w:] == 0).all() and (image[:, h:, :] == 0).all()   # the padding
    boxes = torch.tensor([[-5.0, 10, 400, 300]])
    assert boxes_to_photo(boxes, scale, 375, 500)[0].tolist() == pytest.approx(
        [0.0, 10 / scale, 500.0, 375.0])                        # clipped to the photo


def test_a_phone_photo_is_read_upright(tmp_path):
    """A JPEG stored sideways with an EXIF orientation tag (as phones save them)."""
    stored = photo_with_patch(60, 100, (70, 5, 95, 25))       # 100 wide, 60 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                          # "rotate 90° clockwise to view"
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    pixels = read_photo(path)
    assert pixels.shape == (3, 100, 60)                       # as a viewer shows it
    found = detect_photo(FindsTheBrightPatch(), path, 64)
    # Turned a quarter clockwise, a stored pixel (x, y) is seen at (60 - y, x).
    expected = torch.tensor([[60 - 25, 70, 60 - 5, 95]], dtype=torch.float32)
    assert float(box_iou(found["boxes"], expected)) > 0.8


def test_read_photo_takes_bytes_pil_and_tensors_and_says_what_is_wrong(tmp_path):
    array = photo_with_patch(20, 30, (1, 1, 5, 5))
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    expected = torch.from_numpy(array).permute(2, 0, 1)
    assert torch.equal(read_photo(buffer.getvalue()), expected)
    assert torch.equal(read_photo(Image.fromarray(array)), expected)
    assert torch.equal(read_photo(expected), expected)
    with pytest.raises(ValueError, match="no such file"):
        read_photo(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(ValueError, match="notes.jpg: not an image"):
        read_photo(tmp_path / "notes.jpg")
    with pytest.raises(ValueError, match="uploaded file: not an image"):
        read_photo(b"garbage")
    with pytest.raises(ValueError, match="uint8"):
        read_photo(torch.zeros(3, 4, 4))


def test_a_huge_image_is_refused_with_a_way_forward(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (400, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)   # Pillow's guard, made small
    with pytest.raises(ValueError, match="huge.png: too large to decode safely.*shrink it"):
        read_photo(path)


def test_the_sample_photo_ships_with_the_library_and_matches_its_recipe():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from make_sample_photo import scenes
    finally:
        sys.path.remove(str(ROOT / "tools"))
    pixels, target = scenes()
    shipped = read_photo(sample_photo())
    assert shipped.shape == pixels.shape == (3, 240, 480)
    assert (shipped.float() - pixels.float()).abs().mean() < 3      # JPEG, quality 92
    assert len(target["boxes"]) >= 8


def test_records_round_trip_and_are_valid_coco_results():
    from pycocotools.coco import COCO

    found = {"boxes": torch.tensor([[10.0, 20, 110, 70], [0, 0, 5, 5]]),
             "scores": torch.tensor([0.9, 0.4]), "labels": torch.tensor([2, 0])}
    record = as_record(found, ["a", "b", "c"], image="x.jpg", width=500, height=375,
                       checkpoint="run/checkpoint.pt")
    from fcos_lib.photo import record_json

    assert json.loads(record_json({**record, "detections": []}))["detections"] == []
    again = json.loads(record_json(record))
    assert again == record and again["width"] == 500 and again["checkpoint"] == "run/checkpoint.pt"
    assert [d["class"] for d in again["detections"]] == ["c", "a"]
    assert torch.tensor([d["box"] for d in again["detections"]]).equal(found["boxes"])
    results = as_coco_results(record, image_id=7)
    truth = COCO()
    truth.dataset = {"images": [{"id": 7, "width": 500, "height": 375}], "annotations": [],
                     "categories": [{"id": k + 1, "name": n} for k, n in enumerate("abc")]}
    truth.createIndex()
    loaded = truth.loadRes(results)
    assert [a["bbox"] for a in loaded.dataset["annotations"]] == [[10.0, 20.0, 100.0, 50.0],
                                                                  [0.0, 0.0, 5.0, 5.0]]
    assert loaded.dataset["annotations"][0]["category_id"] == 3


# ------------------------------------------------------------------ the predict command
# (the `checkpoint` fixture, an untrained 64-pixel model, is in tests/conftest.py)


def save(path, height, width, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_predict_draws_on_the_whole_photo_and_writes_its_boxes(checkpoint, tmp_path, capsys):
    from fcos_lib.commands import main
    from fcos_lib.model import FCOS

    photo = save(tmp_path / "street.jpg", 375, 500)
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(out),
                 "--score-thresh", "0.0", str(photo)]) == 0
    drawn = np.asarray(Image.open(out / "street_boxes.png"))
    assert drawn.shape == (375, 500, 3)                        # the photo's own size
    assert (drawn != np.asarray(Image.open(photo))).any()      # with boxes on it
    record = json.loads((out / "street_boxes.json").read_text())
    assert (record["image"], record["width"], record["height"]) == (str(photo), 500, 375)
    model, _ = FCOS.from_checkpoint(checkpoint)
    expected = detect_photo(model, photo, 64, score_thresh=0.0)
    boxes = torch.tensor([d["box"] for d in record["detections"]])
    assert len(boxes) == len(expected["boxes"]) == 100
    assert torch.allclose(boxes, expected["boxes"], atol=0.01)
    assert (boxes[:, 0::2] <= 500).all() and (boxes[:, 1::2] <= 375).all() and (boxes >= 0).all()
    assert {d["class"] for d in record["detections"]} <= {"circle", "square", "triangle",
                                                          "star", "ring", "cross"}
    assert "100 boxes" in capsys.readouterr().out


def test_predict_takes_folders_and_never_overwrites_one_photos_output_with_anothers(
        checkpoint, tmp_path, capsys):
    from fcos_lib.commands import main

    save(tmp_path / "a" / "x.jpg", 50, 80, seed=1)
    save(tmp_path / "a" / "y.png", 90, 40, seed=2)
    (tmp_path / "a" / "notes.txt").write_text("not a photo")
    save(tmp_path / "b" / "x.jpg", 70, 70, seed=3)
    out, coco = tmp_path / "out", tmp_path / "results.json"
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(out), "--score-thresh",
                 "0.0", "--coco-results", str(coco), str(tmp_path / "a"),
                 str(tmp_path / "b" / "x.jpg")]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "x-2_boxes.json", "x-2_boxes.png", "x_boxes.json", "x_boxes.png", "y_boxes.json",
        "y_boxes.png"]
    sources = {json.loads((out / f"{n}_boxes.json").read_text())["image"]: n
               for n in ("x", "x-2", "y")}
    assert sources == {str(tmp_path / "a" / "x.jpg"): "x", str(tmp_path / "b" / "x.jpg"): "x-2",
                       str(tmp_path / "a" / "y.png"): "y"}
    assert np.asarray(Image.open(out / "x-2_boxes.png")).shape == (70, 70, 3)
    results = json.loads(coco.read_text())
    assert len(results) == 300 and {r["image_id"] for r in results} == {1, 2, 3}
    assert "b/x.jpg: 100 boxes" in capsys.readouterr().out
    # Pictures written into the folder being read are not read back as photos.
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "a"),
                 str(tmp_path / "a")]) == 0
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "a"),
                 str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "notes.txt", "x.jpg", "x_boxes.json", "x_boxes.png", "y.png", "y_boxes.json",
        "y_boxes.png"]


def test_predict_goes_on_past_an_unreadable_file_and_says_which(checkpoint, tmp_path, capsys):
    from fcos_lib.commands import main

    save(tmp_path / "photos" / "good.png", 40, 60)
    (tmp_path / "photos" / "bad.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                 str(tmp_path / "photos")]) == 2
    err = capsys.readouterr().err
    assert "bad.jpg: not an image" in err and "1 of 2 files could not be read" in err
    assert (tmp_path / "out" / "good_boxes.png").is_file()
    assert not (tmp_path / "out" / "bad_boxes.png").exists()
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "empty")]) == 2
    assert "empty: no images in this folder" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(checkpoint), "--score-thresh", "1.5",
                 str(tmp_path / "photos")]) == 2
    assert "--score-thresh 1.5" in capsys.readouterr().err
    # A photo that another photo's picture would overwrite.
    save(tmp_path / "photos" / "good_boxes.png", 30, 30)
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "photos"),
                 str(tmp_path / "photos" / "good.png"),
                 str(tmp_path / "photos" / "good_boxes.png")]) == 2
    assert "good_boxes.png is one of the photos and would be overwritten" in \
        capsys.readouterr().err


# ------------------------------------------------------------------ drawing and the widget


def test_draw_photo_keeps_the_photos_size_or_shrinks_it_with_its_boxes():
    from fcos_lib.photo import draw_photo

    pixels = torch.full((3, 300, 1000), 60, dtype=torch.uint8)
    found = {"boxes": torch.tensor([[100.0, 50, 400, 250]]), "scores": torch.tensor([0.8]),
             "labels": torch.tensor([1])}
    full = draw_photo(pixels, found, ["a", "b"])
    assert full.shape == (3, 300, 1000) and (full[:, 150, 100] != 60).any()   # its left edge
    small = draw_photo(pixels, found, ["a", "b"], max_side=500)
    assert small.shape == (3, 150, 500) and (small[:, 75, 50] != 60).any()    # moved with it
    assert (draw_photo(pixels, found, ["a", "b"], score_thresh=0.9) == 60).all()


def test_sample_photo_of_voc_is_a_whole_validation_photo(tmp_path):
    from vocfake import SPLITS, make_voc_tree

    from fcos_lib.data.voc import voc2007_folder

    with pytest.raises(FileNotFoundError, match="download voc2007 --root"):
        sample_photo("voc2007-tiny", tmp_path)
    make_voc_tree(tmp_path)
    path = sample_photo("voc2007-tiny", tmp_path)
    assert path == voc2007_folder(tmp_path) / "JPEGImages" / f"{SPLITS['val'][0]}.jpg"
    assert read_photo(path).shape == (3, 80, 50)                # whole: 50 x 80, not cropped


def test_uploads_of_ipywidgets_7_and_8_are_read_alike():
    from fcos_lib.viewer import uploaded_files

    v8 = ({"name": "a.jpg", "type": "image/jpeg", "size": 3, "content": memoryview(b"abc")},)
    v7 = {"a.jpg": {"metadata": {"name": "a.jpg", "size": 3}, "content": b"abc"}}
    assert uploaded_files(v8) == uploaded_files(v7) == [("a.jpg", b"abc")]
    assert uploaded_files(()) == uploaded_files({}) == []


def test_photo_viewer_redraws_at_the_slider_and_shows_an_upload(checkpoint):
    from fcos_lib.model import FCOS
    from fcos_lib.viewer import PhotoViewer

    model, config = FCOS.from_checkpoint(checkpoint)
    viewer = PhotoViewer(model, 64, config["class_names"], sample_photo(), score_thresh=0.05,
                         max_side=400)
    assert viewer.last_view.shape == (3, 200, 400)              # 480 x 240, shrunk to 400
    many = len(viewer.last_found["boxes"])
    scores = viewer.found["scores"]
    viewer.score.value = float(scores.median())
    assert len(viewer.last_found["boxes"]) == int((scores > viewer.score.value).sum()) < many
    assert f"{len(viewer.last_found['boxes'])} boxes above" in viewer.info.value
    buffer = io.BytesIO()
    Image.fromarray(photo_with_patch(90, 60, (5, 5, 20, 20))).save(buffer, format="PNG")
    when = datetime.datetime.now()                          # ipywidgets 8's value
    viewer.upload.value = ({"name": "mine.png", "type": "image/png", "size": 1,
                            "last_modified": when, "content": memoryview(buffer.getvalue())},)
    assert viewer.last_view.shape == (3, 90, 60) and "mine.png" in viewer.info.value
    viewer.upload.value = ({"name": "notes.png", "type": "image/png", "size": 1,
                            "last_modified": when, "content": memoryview(b"not a picture")},)
    assert "not an image" in viewer.info.value and viewer.last_view.shape == (3, 90, 60)
