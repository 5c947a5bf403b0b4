"""The assembled model: parity with torchvision's FCOS through from_torchvision (random,
perturbed weights; BatchNorm and FrozenBatchNorm), locations, the output layout for every
preset and several sizes, input checks, config round trip, losses, gradients, devices."""
import json
import math
from dataclasses import asdict, replace

import pytest
import torch
from torch import nn
from torchvision.models import resnet50
from torchvision.models.detection import fcos_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.fcos import FCOS as TorchvisionFCOS
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fcos_lib.config import MODEL_PRESETS as PRESETS
from fcos_lib.config import FCOSConfig
from fcos_lib.losses import fcos_loss
from fcos_lib.model import FCOS, level_locations
from fcos_lib.torchvision_port import from_torchvision, torchvision_key

C = 4
KEYS = ("cls_logits", "box_deltas", "centerness", "locations", "strides")


def perturb(model, seed=0):
    """Non-trivial weights, biases and BatchNorm statistics, so that no mix-up can hide."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
    return model


def frozen_tv_fcos():
    """torchvision's FCOS as built with pretrained weights (FrozenBatchNorm2d, 3 trainable
    stages), without downloading them."""
    body = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(body, 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return TorchvisionFCOS(backbone, C)


@pytest.mark.parametrize("kind", ["batchnorm", "frozen"])
def test_from_torchvision_equals_torchvision(kind):
    torch.manual_seed(0)
    tv = (fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=C)
          if kind == "batchnorm" else frozen_tv_fcos())
    tv = perturb(tv).eval()
    ours = from_torchvision(tv).eval()
    assert ours.config.freeze_bn == (kind == "frozen")
    assert ours.config.frozen_stages == (2 if kind == "frozen" else 0)
    frozen = {n for n, p in ours.backbone.body.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in tv.backbone.body.named_parameters() if not p.requires_grad}

    images = torch.randn(2, 3, 128, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = list(tv.backbone(images).values())
        theirs = tv.head(features)
        out = ours(images)
        anchors = tv.anchor_generator(ImageList(images, [(128, 256)] * 2), features)[0]
    sizes = [f.shape[2] * f.shape[3] for f in features]
    assert [len(p) for p in out["locations"]] == sizes
    errors = {}
    for tv_key, key in (("cls_logits", "cls_logits"), ("bbox_regression", "box_deltas"),
                        ("bbox_ctrness", "centerness")):
        for level, (t, o) in enumerate(zip(theirs[tv_key].split(sizes, 1), out[key])):
            assert t.reshape(o.shape).abs().max() > 1e-3  # not trivially zero
            errors[key, level] = (t.reshape(o.shape) - o).abs().max().item()
    assert max(errors.values()) <= 1e-5, errors
    # our points at offset 0 are torchvision's anchor centres, level by level
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).split(sizes)
    for ours_points, their_points in zip(out["locations"], centres):
        torch.testing.assert_close(ours_points, their_points, rtol=0, atol=0)


def test_from_torchvision_refuses_foreign_weights():
    with pytest.raises(KeyError, match="no counterpart"):
        torchvision_key("anchor_generator.cell_anchors")


def test_level_locations_by_hand():
    points = level_locations(2, 3, 16, 0.5)
    assert points.tolist() == [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]]
    assert level_locations(2, 3, 16, 0.0)[4].tolist() == [16, 16]


@pytest.mark.parametrize("preset, size", [("tiny", (64, 96)), ("tiny", (128, 128)),
                                          ("course", (96, 64)), ("paper", (128, 128)),
                                          ("torchvision", (128, 256))])
def test_output_layout_for_every_preset(preset, size):
    model = FCOS.from_preset(preset, C).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert set(out) == set(KEYS)
    levels = PRESETS[preset]["levels"]
    strides = [2 ** level for level in levels]
    assert out["strides"] == strides == model.strides
    for l, s in enumerate(strides):
        h, w = size[0] // s, size[1] // s
        assert out["cls_logits"][l].shape == (1, h * w, C)
        assert out["box_deltas"][l].shape == (1, h * w, 4)
        assert out["centerness"][l].shape == (1, h * w)
        assert (out["box_deltas"][l] >= 0).all()
        expected = level_locations(h, w, s, PRESETS[preset].get("location_offset", 0.5))
        assert torch.equal(out["locations"][l], expected)


def test_locations_are_cached_per_size():
    model = FCOS(C).eval()
    with torch.no_grad():
        a, b = model(torch.randn(1, 3, 64, 64)), model(torch.randn(2, 3, 64, 64))
        c = model(torch.randn(1, 3, 64, 96))
    assert a["locations"][0] is b["locations"][0]
    assert c["locations"][0].shape == (8 * 12, 2)


@pytest.mark.parametrize("images, message", [
    (torch.randn(3, 64, 64), r"\(B, 3, H, W\)"), (torch.randn(1, 1, 64, 64), r"\(B, 3, H, W\)"),
    (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "float"),
    (torch.randn(1, 3, 100, 64), "100x64 is not divisible by 32.*128x64")])
def test_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        FCOS(C)(images)


def test_images_of_another_dtype_or_device_than_the_weights():
    model = FCOS(C)
    with pytest.raises(ValueError, match="float64 on cpu, the model's weights torch.float32"):
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    with pytest.raises(ValueError, match="on meta, the model's weights .* on cpu: move"):
        model(torch.empty(1, 3, 64, 64, device="meta"))


def test_bad_fpn_channels():
    with pytest.raises(ValueError, match="fpn_channels=0: must be a whole number >= 1; the tiny preset uses 64"):
        FCOS(C, fpn_channels=0)


def test_p6_p7_round_up_on_sizes_not_divisible_by_128():
    model = FCOS(C, levels=(3, 4, 5, 6, 7)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 224, 160))
    sizes = [(-(-224 // s), -(-160 // s)) for s in (8, 16, 32, 64, 128)]  # ceil division
    assert [len(p) for p in out["locations"]] == [h * w for h, w in sizes]
    assert out["locations"][4].tolist() == [[64.0, 64.0], [192.0, 64.0], [64.0, 192.0],
                                            [192.0, 192.0]]  # xy, ((j, i) + 0.5) * 128


def test_config_is_plain_and_rebuilds_the_model(tmp_path):
    model = FCOS.from_preset("tiny", C, interpolation="bilinear", box_activation="exp",
                             centerness_on="cls", size_ranges=[(0, 48), (48, 96), (96, math.inf)],
                             center_sampling_radius=1.5)
    config = asdict(model.config)
    assert FCOSConfig(**json.loads(json.dumps(config))) == model.config  # plain Python types
    assert config["num_classes"] == C and config["interpolation"] == "bilinear"
    assert model.loss_config == {"box_loss": "l1", "center_sampling_radius": 1.5,
                                 "size_ranges": [[0.0, 48.0], [48.0, 96.0], [96.0, math.inf]]}
    torch.save({"config": config}, tmp_path / "c.pt")
    config = torch.load(tmp_path / "c.pt", weights_only=True)["config"]
    rebuilt = FCOS.from_config(config)
    assert rebuilt.config == model.config and rebuilt.loss_config == model.loss_config
    rebuilt.load_state_dict(model.state_dict())  # strict: the same modules
    x = torch.randn(1, 3, 64, 64)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)["box_deltas"][0], model(x)["box_deltas"][0])


def targets_for(batch):
    boxes = [torch.tensor([[4.0, 6, 40, 30], [20, 20, 60, 64]]), torch.tensor([[0.0, 0, 64, 64]])]
    return [{"boxes": boxes[i % 2], "labels": torch.tensor([1, 3][: len(boxes[i % 2])])}
            for i in range(batch)]


@pytest.mark.parametrize("overrides", [
    dict(), dict(box_loss="giou", center_sampling_radius=1.5, box_activation="exp"),
    dict(centerness_on="cls", norm="batch", interpolation="bilinear")])
def test_losses_are_fcos_loss_and_reach_every_parameter(overrides):
    torch.manual_seed(0)
    model = FCOS(C, **overrides).train()
    images, targets = torch.randn(2, 3, 64, 64), targets_for(2)
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness", "total"}
    losses["total"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
    if not overrides.get("norm") == "batch":  # BatchNorm: the batch statistics moved
        with torch.no_grad():
            expected = fcos_loss(model(images), targets, **model.loss_config)
        for key in losses:
            assert losses[key].item() == pytest.approx(expected[key].item(), rel=1e-6)


def test_course_preset_reaches_every_parameter():
    model = FCOS.from_preset("course", C).train()
    model(torch.randn(2, 3, 64, 64), targets_for(2))["total"].backward()
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)) for m in model.head.modules())
    # The course's full run: FCOS(fpn_channels=128, stem_channels=[128, 128]).
    assert model.fpn.output[0].out_channels == 128 and model.strides == [8, 16, 32]
    stems = [m for m in model.head.cls_stem.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in stems] == [(128, 128), (128, 128)]


def test_presets():
    paper = FCOS.from_preset("paper", C)
    assert paper.loss_config == {"box_loss": "giou", "center_sampling_radius": 1.5,
                                 "size_ranges": None}
    assert paper.head.scales.shape == (5,) and paper.location_offset == 0.5
    assert sum(isinstance(m, nn.GroupNorm) for m in paper.head.cls_stem) == 4
    assert not paper.config.freeze_bn  # random init: nothing to freeze
    with pytest.raises(ValueError, match="preset='huge': choose one of"):
        FCOS.from_preset("huge", C)


def test_no_tensor_made_on_a_fixed_device():
    """On the meta device every op must find its inputs there: a tensor made on the CPU
    (or a hard-coded cuda) would fail."""
    model = FCOS(C).to("meta").eval()
    out = model(torch.empty(2, 3, 64, 64, device="meta"))
    assert all(t.device.type == "meta" for key in KEYS[:4] for t in out[key])


def test_predict_restores_training_mode():
    model = FCOS(C).train()
    detections = model.predict(torch.randn(2, 3, 64, 64), score_thresh=0.0)
    assert model.training and len(detections) == 2
    for d in detections:
        assert set(d) == {"boxes", "scores", "labels", "levels"} and d["boxes"].shape[-1] == 4
        assert ((d["levels"] >= 0) & (d["levels"] < len(model.strides))).all()


def test_paper_preset_offline_warns_and_keeps_a_consistent_config(monkeypatch):
    """pretrained=True without a network: one warning, random init, nothing frozen, and a
    config that rebuilds the same modules (so that its checkpoints load)."""
    import socket
    import types

    from fcos_lib import backbone as B
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(B.WEIGHTS, "resnet50", types.SimpleNamespace(
        url=f"http://127.0.0.1:{port}/resnet50-12345678.pth"))
    with pytest.warns(UserWarning, match="could not download the ImageNet weights of resnet50"):
        model = FCOS.from_preset("paper", C, pretrained=True)
    assert model.config.pretrained and not model.config.freeze_bn
    assert model.config.frozen_stages == 0
    assert all(p.requires_grad for p in model.parameters())
    FCOS.from_config(replace(model.config, pretrained=False)).load_state_dict(model.state_dict())


def torchvision_fcos_on(body_name: str, extra: str):
    """An FCOS built in torchvision on a ResNet-18 or RegNetX-400MF body, random init."""
    from collections import OrderedDict

    from torchvision.models import regnet_x_400mf, resnet18
    from torchvision.models.detection import FCOS as TorchvisionFCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    if body_name == "regnet_x_400mf":
        net = regnet_x_400mf()
        body = torch.nn.Sequential(OrderedDict([("stem", net.stem),
                                                *net.trunk_output.named_children()]))
        layers, channels = {"block2": "0", "block3": "1", "block4": "2"}, [64, 160, 400]
    else:
        net = resnet18()
        body = torch.nn.Sequential(OrderedDict(
            (n, getattr(net, n)) for n in ("conv1", "bn1", "relu", "maxpool", "layer1",
                                           "layer2", "layer3", "layer4")))
        layers, channels = {"layer2": "0", "layer3": "1", "layer4": "2"}, [128, 256, 512]
    blocks = {"p5": LastLevelP6P7(32, 32), "c5": LastLevelP6P7(channels[-1], 32)}
    backbone = BackboneWithFPN(body, layers, channels, 32, extra_blocks=blocks[extra])
    n = 5
    anchors = AnchorGenerator(tuple((8 * 2 ** i,) for i in range(n)), ((1.0,),) * n)
    model = TorchvisionFCOS(backbone, C, anchor_generator=anchors)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("body, extra", [("regnet_x_400mf", "p5"), ("resnet18", "c5")])
def test_from_torchvision_reads_other_bodies_and_pyramids(body, extra):
    tv = torchvision_fcos_on(body, extra)
    ours = from_torchvision(tv).eval()
    assert ours.config.backbone == body
    assert ours.config.levels == (3, 4, 5, 6, 7)
    assert ours.config.fpn_channels == 32 and ours.config.p6_from == extra
    images = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        theirs = tv.head(list(tv.backbone(images).values()))
        mine = ours(images)
    for key, tv_key in (("cls_logits", "cls_logits"), ("box_deltas", "bbox_regression")):
        torch.testing.assert_close(torch.cat(mine[key], 1), theirs[tv_key], rtol=0, atol=1e-5)


def test_from_torchvision_refuses_what_it_cannot_build():
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    tv = torchvision_fcos_on("resnet18", "p5")
    tv.backbone.body.layer3 = torch.nn.Sequential(*tv.backbone.body.layer3, *tv.backbone.body.layer3)
    with pytest.raises(ValueError, match="none of resnet18, resnet50, regnet_x_400mf"):
        from_torchvision(tv)
    tv = torchvision_fcos_on("resnet18", "p5")
    tv.backbone.fpn.extra_blocks = LastLevelMaxPool()
    with pytest.raises(ValueError, match="LastLevelMaxPool has no counterpart"):
        from_torchvision(tv)


def test_configs_store_plain_numbers(tmp_path):
    """NumPy and torch numbers given as settings are stored as Python ints and floats, so the
    checkpoint that holds them loads with weights_only=True."""
    import numpy as np

    from fcos_lib.config import get_preset

    model = FCOS(np.int64(3), fpn_channels=np.int64(16), location_offset=torch.tensor(0.0))
    run = get_preset("shapes", steps=np.int64(5), lr=np.float32(0.02))
    assert type(model.config.num_classes) is int and type(model.config.fpn_channels) is int
    assert type(model.config.location_offset) is float
    assert type(run.steps) is int and type(run.lr) is float
    torch.save({"model": asdict(model.config), "train": asdict(run)}, tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=True)
    assert FCOSConfig(**saved["model"]) == model.config
