"""detect() against torchvision's FCOS post-processing, and the predict command line.

torchvision's FCOS with random weights, its classification bias raised so that many
candidates pass the score threshold: its backbone, head and anchors give raw outputs, which
are turned into fcos_lib's outputs dict (locations = anchor centres, i * stride). Configured
alike, ``detect`` must return torchvision's detections: same boxes (1e-4), scores, labels,
order.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn

from fcos_lib.inference import detect, detect_plain
from fcos_lib.torchvision_port import from_torchvision

NUM_CLASSES = 6
TV_SETTINGS = dict(score_thresh=0.2, nms_thresh=0.6, topk_candidates=1000,
                   detections_per_img=100)


def torchvision_fcos(height: int, width: int, seed: int = 0) -> torch.nn.Module:
    """A random torchvision FCOS that detects plenty, with an identity image transform."""
    torch.manual_seed(seed)
    model = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=NUM_CLASSES,
                              min_size=height, max_size=width, image_mean=[0.0, 0.0, 0.0],
                              image_std=[1.0, 1.0, 1.0], **TV_SETTINGS)
    with torch.no_grad():  # logits near 0 instead of -4.6: probabilities around one half
        model.head.classification_head.cls_logits.bias.fill_(0.0)
        for p in model.head.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        # boxes 1 to 6 strides wide, overlapping their neighbours: NMS has work to do
        model.head.regression_head.bbox_reg.bias.uniform_(0.5, 3.0)
    return model.eval()


def torchvision_outputs(model, images):
    """tv's head outputs on ``images`` and the same outputs as fcos_lib's dict."""
    features = list(model.backbone(images).values())
    head = model.head(features)
    counts = [f.shape[-2] * f.shape[-1] for f in features]
    from torchvision.models.detection.image_list import ImageList

    image_list = ImageList(images, [tuple(images.shape[-2:])] * len(images))
    anchors = model.anchor_generator(image_list, features)
    split = {k: list(v.split(counts, dim=1)) for k, v in head.items()}
    level_anchors = anchors[0].split(counts)
    ours = {"cls_logits": split["cls_logits"], "box_deltas": split["bbox_regression"],
            "centerness": [c[..., 0] for c in split["bbox_ctrness"]],
            "locations": [(a[:, :2] + a[:, 2:]) / 2 for a in level_anchors],
            "strides": [int(a[0, 2] - a[0, 0]) for a in level_anchors]}
    split_anchors = [list(a.split(counts)) for a in anchors]
    return split, split_anchors, ours


def assert_same_detections(mine, theirs):
    assert len(mine) == len(theirs)
    for m, t in zip(mine, theirs):
        assert len(t["boxes"]) > 0
        torch.testing.assert_close(m["boxes"], t["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(m["scores"], t["scores"], atol=1e-6, rtol=0)
        assert torch.equal(m["labels"], t["labels"])


@pytest.fixture(scope="module")
def tv_case():
    height, width = 160, 224  # not square: catches (H, W) mixed up in the clipping
    model = torchvision_fcos(height, width)
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        head, anchors, ours = torchvision_outputs(model, images)
        expected = model.postprocess_detections(head, anchors, [(height, width)] * 2)
    return model, images, ours, expected


def test_detect_equals_torchvision_postprocess(tv_case):
    _, images, ours, expected = tv_case
    mine = detect(ours, tuple(images.shape[-2:]), **TV_SETTINGS)
    assert_same_detections(mine, expected)
    assert len(expected[0]["boxes"]) == 100  # the cap was reached: the order mattered
    boxes = torch.cat([t["boxes"] for t in expected])
    # clipped at x = W > H: with H and W mixed up, these boxes would end at x = H instead
    assert (boxes[:, 2] == images.shape[-1]).any() and (boxes[:, :2] == 0).any()
    assert (boxes[:, 2:] - boxes[:, :2]).median() > 8  # real boxes, not points


def test_detect_equals_torchvision_full_eval_forward(tv_case):
    model, images, ours, _ = tv_case
    with torch.no_grad():
        expected = model(list(images))  # transform, backbone, head, post-processing, resize
    assert_same_detections(detect(ours, tuple(images.shape[-2:]), **TV_SETTINGS), expected)


def test_detect_with_few_candidates_equals_torchvision(tv_case):
    # a high threshold: few candidates, NMS takes torchvision's other code path
    model, images, ours, _ = tv_case
    head, anchors, _ = torchvision_outputs(model, images)
    model.score_thresh = 0.55
    try:
        with torch.no_grad():
            expected = model.postprocess_detections(head, anchors, [tuple(images.shape[-2:])] * 2)
    finally:
        model.score_thresh = TV_SETTINGS["score_thresh"]
    settings = TV_SETTINGS | {"score_thresh": 0.55}
    mine = detect(ours, tuple(images.shape[-2:]), **settings)
    assert sum(len(t["boxes"]) for t in expected) < 500
    assert_same_detections(mine, expected)



@pytest.mark.parametrize("settings", [
    TV_SETTINGS,
    dict(score_thresh=0.55, nms_thresh=0.5, topk_candidates=30, detections_per_img=20),
    dict(score_thresh=0.0, nms_thresh=1.0, topk_candidates=1, detections_per_img=3),
    dict(score_thresh=0.3, nms_thresh=0.0, topk_candidates=1000, detections_per_img=1),
    dict(score_thresh=1.0, nms_thresh=0.6, topk_candidates=1000, detections_per_img=100)])
def test_detect_plain_is_detect_image_by_image(tv_case, settings):
    """The exercise's plain, per-image version gives the batch detect's boxes, scores,
    labels and order, on a non-square image with thousands of candidates and at both ends
    of every option (NMS off and at its strictest, one candidate per level, one box)."""
    _, images, ours, _ = tv_case
    size = tuple(images.shape[-2:])
    batch = detect(ours, size, **settings)
    for i, expected in enumerate(batch):
        boxes, scores, labels = detect_plain(
            [c[i] for c in ours["cls_logits"]], [d[i] for d in ours["box_deltas"]],
            [z[i] for z in ours["centerness"]], ours["locations"], ours["strides"], size,
            settings["score_thresh"], settings["nms_thresh"], settings["topk_candidates"],
            settings["detections_per_img"])
        torch.testing.assert_close(boxes, expected["boxes"], atol=1e-4, rtol=0)
        torch.testing.assert_close(scores, expected["scores"], atol=1e-6, rtol=0)
        assert torch.equal(labels, expected["labels"]) and labels.dtype == torch.int64
    count = sum(len(d["boxes"]) for d in batch)
    assert count == 0 if settings["score_thresh"] == 1.0 else count > 0

def test_detect_options_and_batch_independence(tv_case):
    _, images, ours, _ = tv_case
    both = detect(ours, tuple(images.shape[-2:]), score_thresh=0.3, detections_per_img=7)
    assert [len(d["boxes"]) for d in both] == [7, 7]
    # image 1 alone gives the same boxes as in the batch
    single = {k: [v[1:2] for v in ours[k]] if k in ("cls_logits", "box_deltas", "centerness")
              else ours[k] for k in ours}
    alone = detect(single, tuple(images.shape[-2:]), score_thresh=0.3, detections_per_img=7)
    torch.testing.assert_close(alone[0]["boxes"], both[1]["boxes"])
    # without centerness the scores are the class probabilities themselves
    plain = detect(ours, tuple(images.shape[-2:]), score_thresh=0.3, centerness_in_score=False)
    probs = torch.cat([torch.sigmoid(c[0]).flatten() for c in ours["cls_logits"]])
    assert torch.isin(plain[0]["scores"], probs).all()
    assert (plain[0]["scores"][:-1] >= plain[0]["scores"][1:]).all()
    # nothing above the threshold: empty results of the right shapes
    empty = detect(ours, tuple(images.shape[-2:]), score_thresh=1.0)
    assert [tuple(d["boxes"].shape) for d in empty] == [(0, 4), (0, 4)]
    with pytest.raises(ValueError, match="outputs lack"):
        detect({"cls_logits": []}, (8, 8))


def test_detect_takes_an_int_as_a_square_image_size(tv_case):
    _, images, ours, _ = tv_case
    square = detect(ours, 160, score_thresh=0.3)
    boxes = torch.cat([d["boxes"] for d in square])
    assert boxes.max() == 160  # clipped to 160x160: the 224-wide image's boxes are cut at 160
    same = detect(ours, (160, 160), score_thresh=0.3)
    torch.testing.assert_close(boxes, torch.cat([d["boxes"] for d in same]))


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=(2, 160, 224)), r"image_size=\(2, 160, 224\): give \(H, W\)"),
    (dict(score_thresh=None), "score_thresh=None: give a number"),
    (dict(topk_candidates=0), "topk_candidates=0: must be a whole number >= 1"),
    (dict(detections_per_img=-1), "detections_per_img=-1: must be a whole number >= 1")])
def test_detect_refuses_bad_options(tv_case, kwargs, message):
    _, images, ours, _ = tv_case
    with pytest.raises(ValueError, match=message):
        detect(ours, **{"image_size": tuple(images.shape[-2:]), **kwargs})


def test_detect_refuses_per_level_lists_of_different_lengths(tv_case):
    _, images, ours, _ = tv_case
    short = {**ours, "locations": ours["locations"][:3]}  # 5 levels of outputs, 3 of points
    with pytest.raises(ValueError, match=r"different lengths .*'locations': 3"):
        detect(short, tuple(images.shape[-2:]))


def test_predict_and_predict_dataset_refuse_bad_options():
    from fcos_lib.data import ShapesDataset
    from fcos_lib.inference import predict_dataset
    from fcos_lib.model import FCOS

    model = FCOS(3)
    with pytest.raises(ValueError, match="topk_candidates=0"):
        model.predict(torch.randn(1, 3, 64, 64), topk_candidates=0)
    with pytest.raises(ValueError, match="batch_size=0: must be a whole number >= 1"):
        predict_dataset(model, ShapesDataset("val", image_size=64, length=4), batch_size=0)


def test_model_predict_equals_torchvision_eval_forward():
    # fcos_lib's own FCOS with torchvision's weights (from_torchvision), end to end
    model = torchvision_fcos(128, 256, seed=2)  # sizes divisible by 128: the same P7 grid
    ours = from_torchvision(model)
    images = torch.rand(2, 3, 128, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(list(images))
    assert_same_detections(ours.predict(images, **TV_SETTINGS), expected)


# ------------------------------------------------------------------ command line
# (the `checkpoint` fixture is in tests/conftest.py)


def test_predict_command_names_missing_and_unreadable_files(checkpoint, tmp_path, capsys):
    from fcos_lib.commands.predict import main

    assert main(["--checkpoint", str(checkpoint), str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and "missing.jpg" in err
    (tmp_path / "notes.jpg").write_text("not an image")
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path),
                 str(tmp_path / "notes.jpg")]) == 2
    assert "notes.jpg: not an image" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["garbage", "pickle", "truncated"])
def test_predict_command_reports_a_corrupt_checkpoint(checkpoint, tmp_path, capsys, content):
    import pickle

    from fcos_lib.checkpoint import CheckpointError, load_checkpoint
    from fcos_lib.commands.predict import main

    bad = tmp_path / "checkpoint.pt"
    if content == "garbage":
        bad.write_bytes(b"these bytes are no checkpoint" * 10)
    elif content == "pickle":  # a plain pickle, not torch.save's format
        bad.write_bytes(pickle.dumps({"model": 1}))
    else:
        data = checkpoint.read_bytes()
        bad.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint.*copy it again, or "
                                              "train again") as error:
        load_checkpoint(bad)
    assert "weights_only" not in str(error.value)
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["--checkpoint", str(bad), "--out", str(tmp_path), str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad} is not a readable checkpoint")
    assert "Traceback" not in err and "weights_only" not in err
