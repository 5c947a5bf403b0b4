"""FPN: equal to torchvision.ops.FeaturePyramidNetwork (+ LastLevelP6P7) with the same
weights; the top-down sums by hand for nearest and bilinear; P6 from P5 or C5; odd sizes."""
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fcos_lib.fpn import FPN

IN = [8, 12, 16]


def features(batch=2, height=64, width=96, channels=IN, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, c, math.ceil(height / s), math.ceil(width / s), generator=gen)
            for c, s in zip(channels, (8, 16, 32))]


def test_equals_torchvision_fpn_with_p6p7():
    """Same weights in torchvision's FPN (nearest top-down, P6/P7 from P5): same pyramid."""
    torch.manual_seed(0)
    ours = FPN(IN, 16, levels=(3, 4, 5, 6, 7))
    theirs = FeaturePyramidNetwork(IN, 16, extra_blocks=LastLevelP6P7(16, 16))
    with torch.no_grad():
        for i in range(3):
            theirs.inner_blocks[i][0].weight.copy_(ours.lateral[i].weight)
            theirs.inner_blocks[i][0].bias.copy_(ours.lateral[i].bias.normal_())
            theirs.layer_blocks[i][0].weight.copy_(ours.output[i].weight)
            theirs.layer_blocks[i][0].bias.copy_(ours.output[i].bias.normal_())
        for mine, tv in zip(ours.extra, (theirs.extra_blocks.p6, theirs.extra_blocks.p7)):
            tv.weight.copy_(mine.weight)
            tv.bias.copy_(mine.bias.normal_())
        c = features(height=128, width=256)
        expected = list(theirs({str(i): f for i, f in enumerate(c)}).values())
        got = ours(c)
    assert len(got) == 5
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-6)


def identity_fpn(interpolation):
    """Laterals and output convs that copy their input: P_l is the top-down sum itself."""
    fpn = FPN([4, 4, 4], 4, interpolation=interpolation)
    with torch.no_grad():
        for conv in [*fpn.lateral, *fpn.output]:
            conv.weight.zero_()
            conv.bias.zero_()
            k = conv.weight.shape[-1] // 2
            conv.weight[:, :, k, k] = torch.eye(4)
    return fpn


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_top_down_sums_by_hand(mode):
    c3, c4, c5 = features(channels=[4, 4, 4])
    with torch.no_grad():
        p3, p4, p5 = identity_fpn(mode)([c3, c4, c5])

    def up(x):  # a factor-2 upsampling, written for each mode separately
        if mode == "nearest":
            return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    torch.testing.assert_close(p5, c5)
    torch.testing.assert_close(p4, c4 + up(c5))
    torch.testing.assert_close(p3, c3 + up(c4 + up(c5)))


def test_nearest_and_bilinear_differ_only_in_the_upsampling():
    c = features(channels=[4, 4, 4])
    with torch.no_grad():
        near, bil = identity_fpn("nearest")(c), identity_fpn("bilinear")(c)
    torch.testing.assert_close(near[2], bil[2])  # P5: no upsampling above it
    assert not torch.allclose(near[0], bil[0])
    # what came from above: blocky (constant on 2x2 blocks) with nearest, smooth with bilinear
    for top_down, blocky in ((near[1] - c[1], True), (bil[1] - c[1], False)):
        block_means = F.avg_pool2d(top_down, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
        assert torch.allclose(top_down, block_means, atol=1e-6) == blocky


@pytest.mark.parametrize("source", ["p5", "c5"])
def test_p6_source(source):
    fpn = FPN(IN, 16, levels=(3, 4, 5, 6, 7), p6_from=source)
    assert fpn.extra[0].in_channels == (16 if source == "p5" else IN[-1])
    seen = []
    fpn.extra[0].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    c = features()
    with torch.no_grad():
        pyramid = fpn(c)
    expected_input = pyramid[2] if source == "p5" else c[2]
    assert torch.equal(seen[0], expected_input)
    torch.testing.assert_close(pyramid[4], fpn.extra[1](F.relu(pyramid[3])))


@pytest.mark.parametrize("size", [(64, 96), (72, 100), (128, 128)])
@pytest.mark.parametrize("levels", [(3, 4, 5), (3, 4, 5, 6, 7)])
def test_shapes(size, levels):
    c = features(height=size[0], width=size[1])
    with torch.no_grad():
        pyramid = FPN(IN, 16, levels=levels, interpolation="bilinear")(c)
    assert len(pyramid) == len(levels)
    h, w = size
    for p, level in zip(pyramid, levels):
        h, w = (math.ceil(size[0] / 8), math.ceil(size[1] / 8)) if level == 3 else (h, w)
        assert p.shape == (2, 16, h, w)
        h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_gradients_reach_every_parameter():
    fpn = FPN(IN, 16, levels=(3, 4, 5, 6, 7), interpolation="bilinear")
    sum(p.square().mean() for p in fpn(features())).backward()
    assert all(p.grad is not None and p.grad.any() for p in fpn.parameters())


@pytest.mark.parametrize("kwargs, message", [
    (dict(levels=(3, 4)), "levels"), (dict(interpolation="bicubic"), "interpolation"),
    (dict(p6_from="c4"), "p6_from"), (dict(in_channels=[8, 12]), "C3, C4, C5")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FPN(**{"in_channels": IN, "out_channels": 16, **kwargs})


def test_refuses_a_wrong_number_of_feature_maps():
    fpn = FPN(IN, 16)
    with pytest.raises(ValueError, match="got 2 feature maps, it needs 3: C3, C4, C5"):
        fpn(features()[1:])
