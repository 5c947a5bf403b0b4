"""The shared head: equal to torchvision's FCOS head with the same weights; layout, prior bias,
norms, where centerness lives, ReLU vs exp with per-level scales, weight sharing."""
import math

import pytest
import torch
from torch import nn
from torchvision.models.detection.fcos import FCOSHead as TorchvisionHead

from fcos_lib.head import FCOSHead, group_count

C = 5


def pyramid(batch=2, channels=16, sizes=((8, 12), (4, 6), (2, 3)), seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, h, w, generator=gen) for h, w in sizes]


def test_equals_torchvision_head():
    """4 GroupNorm(32) convs per stem, ReLU boxes, centerness on the box stem: torchvision's
    head. Same (perturbed) weights, same outputs level by level."""
    torch.manual_seed(0)
    theirs = TorchvisionHead(64, 1, C, num_convs=4)
    ours = FCOSHead(C, 64, num_levels=3, stem_convs=4, norm="group")
    with torch.no_grad():
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    mapping = {"classification_head.conv.": "cls_stem.", "regression_head.conv.": "box_stem.",
               "classification_head.cls_logits.": "cls_logits.",
               "regression_head.bbox_reg.": "box_deltas.",
               "regression_head.bbox_ctrness.": "centerness."}
    state = {}
    for key, value in theirs.state_dict().items():
        old = next(o for o in mapping if key.startswith(o))
        state[mapping[old] + key[len(old):]] = value
    ours.load_state_dict(state)
    x = pyramid(channels=64)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    sizes = [f.shape[2] * f.shape[3] for f in x]
    for tv_key, key in (("cls_logits", "cls_logits"), ("bbox_regression", "box_deltas"),
                        ("bbox_ctrness", "centerness")):
        for e, g in zip(expected[tv_key].split(sizes, 1), got[key]):
            torch.testing.assert_close(g, e.reshape(g.shape), rtol=0, atol=1e-6)


def test_layout_is_row_major_per_level():
    head = FCOSHead(C, 16, num_levels=3)
    x = pyramid()
    with torch.no_grad():
        out = head(x)
        maps = head.cls_logits(head.cls_stem(x[1]))                  # (B, C, 4, 6)
    assert [o.shape for o in out["cls_logits"]] == [(2, h * w, C) for h, w in
                                                     ((8, 12), (4, 6), (2, 3))]
    assert [o.shape for o in out["box_deltas"]] == [(2, h * w, 4) for h, w in
                                                     ((8, 12), (4, 6), (2, 3))]
    assert [o.shape for o in out["centerness"]] == [(2, h * w) for h, w in
                                                     ((8, 12), (4, 6), (2, 3))]
    i, j = 2, 5
    torch.testing.assert_close(out["cls_logits"][1][:, i * 6 + j], maps[:, :, i, j])


def test_prior_bias_gives_probability_one_percent():
    head = FCOSHead(C, 16, num_levels=3)
    assert head.cls_logits.bias.tolist() == pytest.approx([-math.log(99)] * C)
    with torch.no_grad():
        probs = torch.cat(head(pyramid())["cls_logits"], 1).sigmoid()
    assert probs.mean().item() == pytest.approx(0.01, rel=0.05)
    assert (head.box_deltas.bias == 0).all() and (head.centerness.bias == 0).all()


@pytest.mark.parametrize("channels, groups", [(256, 32), (64, 32), (48, 24), (20, 20), (7, 7)])
def test_group_count(channels, groups):
    assert group_count(channels) == groups


@pytest.mark.parametrize("norm, kind, count", [("group", nn.GroupNorm, 6),
                                               ("batch", nn.BatchNorm2d, 6), ("none", None, 0)])
def test_norms_and_stem_depth(norm, kind, count):
    head = FCOSHead(C, 48, num_levels=3, stem_convs=3, norm=norm)
    norms = [m for m in head.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == count and all(isinstance(m, kind) for m in norms)
    assert sum(isinstance(m, nn.Conv2d) for m in head.cls_stem) == 3
    if norm == "group":
        assert norms[0].num_groups == 24


@pytest.mark.parametrize("where", ["box", "cls"])
def test_centerness_reads_the_chosen_stem(where):
    head = FCOSHead(C, 16, num_levels=3, centerness_on=where)
    torch.cat(head(pyramid())["centerness"], 1).sum().backward()
    cls_grad = head.cls_stem[0].weight.grad
    box_grad = head.box_stem[0].weight.grad
    used, unused = (box_grad, cls_grad) if where == "box" else (cls_grad, box_grad)
    assert used is not None and used.abs().sum() > 0
    assert unused is None or unused.abs().sum() == 0


def test_classification_stem_predicts_only_classes():
    head = FCOSHead(C, 16, num_levels=3)
    out = head(pyramid())
    (torch.cat(out["box_deltas"], 1).sum() + torch.cat(out["centerness"], 1).sum()).backward()
    assert head.cls_stem[0].weight.grad is None and head.cls_logits.weight.grad is None


def test_relu_boxes_are_non_negative_and_shared_across_levels():
    head = FCOSHead(C, 16, num_levels=2)
    with torch.no_grad():
        head.box_deltas.bias.normal_()
        same = pyramid(sizes=((4, 4), (4, 4)))
        same[1] = same[0].clone()
        out = head(same)
    deltas = out["box_deltas"]
    assert (deltas[0] >= 0).all() and (deltas[0] == 0).any() and (deltas[0] > 0).any()
    torch.testing.assert_close(deltas[0], deltas[1])
    torch.testing.assert_close(out["cls_logits"][0], out["cls_logits"][1])


def test_exp_boxes_have_a_learnable_scale_per_level():
    head = FCOSHead(C, 16, num_levels=2, box_activation="exp")
    assert head.scales.shape == (2,) and head.scales.requires_grad
    same = pyramid(sizes=((4, 4), (4, 4)))
    same[1] = same[0].clone()
    with torch.no_grad():
        head.box_deltas.bias.normal_()
        head.scales[1] = 2.0
        out = head(same)
        raw = head.box_deltas(head.box_stem(same[0]))
    deltas = out["box_deltas"]
    assert (deltas[0] > 0).all()
    torch.testing.assert_close(deltas[0], raw.permute(0, 2, 3, 1).flatten(1, 2).exp())
    torch.testing.assert_close(deltas[1], deltas[0] ** 2)
    torch.cat(head(same)["box_deltas"], 1).sum().backward()
    assert (head.scales.grad != 0).all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(norm="layer"), "norm"), (dict(centerness_on="both"), "centerness_on"),
    (dict(box_activation="softplus"), "box_activation"), (dict(num_classes=0), "num_classes")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FCOSHead(**{"num_classes": C, "in_channels": 16, "num_levels": 3, **kwargs})
