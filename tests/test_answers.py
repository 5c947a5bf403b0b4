"""The numbers in the notebooks' collapsed "Answers with a number" cells, recomputed here, each
in a way of its own where one exists (the gradient for receptive fields, torchvision's focal
loss), so that an answer cannot go stale or be wrong."""
from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from fcos_lib.backbone import build_backbone
from fcos_lib.data import ShapesDataset
from fcos_lib.fpn import FPN
from fcos_lib.model import FCOS
from fcos_lib.targets import assign_targets, default_size_ranges, pad_targets

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def answers(name: str) -> str:
    """The text of the notebook's answer cell, on one line (the prose wraps anywhere)."""
    cells = [c.source for c in nbformat.read(NOTEBOOKS / name, as_version=4).cells
             if c.cell_type == "markdown" and "<summary><b>Answers with a number" in c.source]
    assert len(cells) == 1, f"{name} should have one answer cell"
    return " ".join(cells[0].split())


def test_01_box_sizes_at_128_pixels():
    data = ShapesDataset("train", image_size=128)
    boxes = torch.cat([data.load(i)[1]["boxes"] for i in range(1000)])
    longer = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1)
    text = answers("01_data.ipynb")
    assert f"hold {len(longer)} boxes" in text
    assert f"at most {longer.max():.0f} px" in text
    assert f"{100 * (longer > 64).float().mean():.0f} % have a longer side above 64 px" in text
    assert (longer > 128).sum() == 0 and "**None** can reach P5" in text
    assert f"about {64 * 128 / 224:.0f} and {128 * 128 / 224:.0f} px" in text


def test_02_receptive_fields_of_resnet18_by_the_gradient():
    net = build_backbone("resnet18").eval()
    text = answers("02_backbone.ipynb")
    widths = []
    for level in range(3):
        x = torch.randn(1, 3, 512, 512, requires_grad=True)
        feature = net(x)[level]
        h, w = feature.shape[-2:]
        feature[0, :, h // 2, w // 2].sum().backward()
        rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero()
        widths.append(int(rows.max() - rows.min() + 1))
    assert f"**C3 sees {widths[0]} px**" in text
    assert f"**C4 sees {widths[1]} px** (and C5 {widths[2]} px)" in text
    # The hand computation the answer walks through: 7, 11, then 2 x stride a 3x3 convolution.
    stage1 = 11 + 4 * 2 * 4
    c3 = stage1 + 2 * 4 + 3 * 2 * 8
    assert (f"reaches {stage1} px" in text) and widths[:2] == [c3, c3 + 2 * 8 + 3 * 2 * 16]


def test_03_parameters_of_p6_from_c5_and_from_p5():
    text = answers("03_fpn.ipynb")
    counts = {}
    for source in ("c5", "p5"):
        fpn = FPN([512, 1024, 2048], 256, levels=(3, 4, 5, 6, 7), p6_from=source)
        p6 = next(m for m in fpn.extra.modules() if isinstance(m, torch.nn.Conv2d))
        counts[source] = (sum(p.numel() for p in p6.parameters()),
                          sum(p.numel() for p in fpn.parameters()))
    assert f"**{counts['c5'][0]:,}** parameters when it reads C5" in text
    assert f"**{counts['p5'][0]:,}** when it reads P5" in text
    assert f"drops from {counts['c5'][1]:,} to {counts['p5'][1]:,} parameters" in text


def test_04_the_bias_of_a_prior_and_the_initial_focal_loss():
    text = answers("04_head.ipynb")
    for prior, shown in ((0.1, "**b = −2.197**"), (0.01, "0.01 gives −4.595")):
        bias = torch.tensor([-math.log((1 - prior) / prior)])
        assert torch.sigmoid(bias).item() == pytest.approx(prior)
        assert shown.replace("−", "-") in text.replace("−", "-")
        assert f"{-bias.item():.3f}" in shown
    losses = {p: (sigmoid_focal_loss(torch.tensor([-math.log((1 - p) / p)]), torch.zeros(1)),
                  sigmoid_focal_loss(torch.tensor([-math.log((1 - p) / p)]), torch.ones(1)))
              for p in (0.1, 0.01)}
    (neg_1, pos_1), (neg_01, pos_01) = losses[0.1], losses[0.01]
    assert f"**{neg_1.item() * 1e4:.1f}·10⁻⁴**" in text
    assert f"{neg_01.item() * 1e7:.1f}·10⁻⁷" in text
    assert f"**{pos_1.item():.3f}** against {pos_01.item():.3f}" in text
    assert f"adds {1000 * neg_1.item():.2f} per positive" in text
    assert f"against {1000 * neg_01.item():.5f} at" in text


@pytest.mark.parametrize("bounds, words", [
    (None, "**{}** positives on P3, **{}** on P4 and only **{}** on P5"),
    ([(0.0, 32.0), (32.0, 64.0), (64.0, math.inf)], "evens the counts: {}, {} and {}"),
])
def test_05_positives_per_level_on_500_images(bounds, words):
    data = ShapesDataset("val", image_size=224)
    model = FCOS(6, backbone="tiny")
    grid, strides = model.grid(224, 224), model.strides
    ranges = bounds or default_size_ranges(strides)
    targets = [data.load(i)[1] for i in range(500)]
    counts = torch.zeros(len(strides), dtype=torch.long)
    for start in range(0, 500, 100):
        boxes, labels = pad_targets(targets[start:start + 100], 6)
        matched = assign_targets(boxes, labels, grid, strides, ranges)     # (100, L)
        for level, part in enumerate(matched.split([len(g) for g in grid], dim=1)):
            counts[level] += (part >= 0).sum()
    assert words.format(*counts.tolist()) in answers("05_targets_and_losses.ipynb")
