"""A unit of training time that travels between machines: one training step of torchvision's
FCOS on a fixed network, measured in the same run as the time it measures.

Two CPU machines of the same kind can differ by 2x (one idle 2-core machine trained the demo
in 110 s, another in 247 s), so a time in seconds says little about the code. Divided by the
time of a fixed piece of work measured on the same machine at the same moment, it says much
more. The piece of work: one training step (forward, loss, backward, SGD update) of
torchvision's ``FCOS`` with RegNetX-400MF (random init), a 64-channel FPN over P3-P7 and a
4-conv head, on 16 random images of 224 px with up to 8 boxes each; ``bench/bench_train.py``
times fcos_lib's step of the same network against it, and ``make demo`` reports its training
time in these steps.
"""
from __future__ import annotations

import statistics
import time
from collections import OrderedDict

import torch
from torch import nn
from torchvision.models import regnet_x_400mf
from torchvision.models.detection import FCOS as TorchvisionFCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelP6P7

from fcos_lib.data import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["torchvision_fcos", "random_batch", "torchvision_step_seconds", "BATCH", "SIZE"]

BATCH, SIZE, NUM_CLASSES = 16, 224, 20


class NoExtraLevels(ExtraFPNBlock):
    """P3-P5 alone (BackboneWithFPN's default adds a max-pooled level)."""

    def forward(self, results: list[torch.Tensor], x: list[torch.Tensor], names: list[str]
                ) -> tuple[list[torch.Tensor], list[str]]:
        """The levels as they came: no extra level."""
        return results, names


def torchvision_fcos(channels: int = 64, p6p7: bool = True, head_convs: int = 4,
                     num_classes: int = NUM_CLASSES, size: int = SIZE) -> TorchvisionFCOS:
    """RegNetX-400MF + FPN of ``channels`` (P3-P7, or P3-P5 without ``p6p7``) + FCOS head
    with ``head_convs`` convs per stem, built by torchvision, random init (seed 0),
    ``size`` px in and out."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    regnet = regnet_x_400mf(weights=None)
    body = nn.Sequential(OrderedDict([("stem", regnet.stem),
                                      *regnet.trunk_output.named_children()]))
    backbone = BackboneWithFPN(body, {"block2": "p3", "block3": "p4", "block4": "p5"},
                               in_channels_list=[64, 160, 400], out_channels=channels,
                               extra_blocks=LastLevelP6P7(channels, channels) if p6p7
                               else NoExtraLevels())
    sizes = ((8,), (16,), (32,), (64,), (128,))[:5 if p6p7 else 3]
    anchors = AnchorGenerator(sizes, ((1.0,),) * len(sizes))
    head = FCOSHead(channels, 1, num_classes, num_convs=head_convs)
    model = TorchvisionFCOS(backbone, num_classes, min_size=size, max_size=size,
                            image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                            anchor_generator=anchors, head=head)
    torch.random.set_rng_state(generator_state)    # the caller's random stream untouched
    return model


def random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """``BATCH`` images (3, SIZE, SIZE) in [0, 1] (torchvision's input), the same normalized
    (fcos_lib's), and their targets: 1 to 8 boxes of 16 px or more, xyxy pixels."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(BATCH, 3, SIZE, SIZE, generator=gen)
    targets = []
    for _ in range(BATCH):
        n = int(torch.randint(1, 9, (1,), generator=gen))
        wh = 16 + torch.rand(n, 2, generator=gen) * (SIZE - 32)
        xy = torch.rand(n, 2, generator=gen) * (SIZE - wh)
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(0, NUM_CLASSES, (n,), generator=gen)})
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return images, (images - mean) / std, targets


def torchvision_step_seconds(repeats: int = 3) -> float:
    """The median seconds of one training step of :func:`torchvision_fcos` on
    :func:`random_batch`, on the CPU with this process's threads, after one warm-up step."""
    model = torchvision_fcos().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    images, _, targets = random_batch()
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        total = sum(model(list(images), targets).values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if i:                                  # the first step pays for one-time set-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)
