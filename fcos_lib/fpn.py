"""Feature pyramid network: C3-C5 of the backbone in, P3-P5 (and P6, P7) of one width out.

C3 is fine but shallow, C5 deep but coarse. The FPN (Lin et al., 2017) gives every level both:

1. *lateral* 1x1 convs bring C3, C4, C5 to the same number of channels;
2. the *top-down* pathway starts at C5's lateral and, level by level, upsamples the coarser
   result by 2 (``interpolation="nearest"``, as the FPN paper and torchvision do, or
   ``"bilinear"``) and adds it to the next finer lateral;
3. a 3x3 *output* conv on each sum smooths the upsampling's blockiness: P3, P4, P5.

For large objects FCOS adds P6 and P7 (strides 64 and 128): a stride-2 3x3 conv on P5 (the
improved FCOS and torchvision's ``LastLevelP6P7(256, 256)``) or on C5 (the first FCOS paper,
as RetinaNet), then ReLU and another stride-2 3x3 conv for P7.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from fcos_lib.config import LEVELS, MODEL_CHOICES
from fcos_lib.validate import one_of

INTERPOLATIONS = MODEL_CHOICES["interpolation"]
EXTRA_SOURCES = MODEL_CHOICES["p6_from"]


class FPN(nn.Module):
    """The feature pyramid over C3, C4, C5.

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: channels of every P level (the head's input width).
        levels: ``(3, 4, 5)`` or ``(3, 4, 5, 6, 7)``.
        interpolation: how the top-down pathway upsamples, ``"nearest"`` or ``"bilinear"``.
        p6_from: ``"p5"`` or ``"c5"``, the input of P6 (with levels up to 7).
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int,
                 levels: Sequence[int] = (3, 4, 5), interpolation: str = "nearest",
                 p6_from: str = "p5"):
        super().__init__()
        levels = tuple(levels)
        one_of("levels", levels, LEVELS)
        one_of("interpolation", interpolation, INTERPOLATIONS)
        one_of("p6_from", p6_from, EXTRA_SOURCES)
        if len(in_channels) != 3:
            raise ValueError(f"in_channels={list(in_channels)}: give the channels of C3, C4, C5")
        self.interpolation, self.p6_from = interpolation, p6_from
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                    for _ in in_channels)
        extra_in = out_channels if p6_from == "p5" else in_channels[-1]
        self.extra = nn.ModuleList(nn.Conv2d(c, out_channels, 3, stride=2, padding=1)
                                   for c in (extra_in, out_channels)[:len(levels) - 3])
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):  # the FPN paper's init (He uniform, a=1)
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)

    def upsample(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        """``x`` resized to ``size`` (H, W) with the chosen interpolation.

        Resizing to the finer map's size (not by a factor 2) keeps odd sizes aligned: a 5-wide
        C4 above a 3-wide C5 gets 5 columns, not 6.
        """
        if self.interpolation == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def top_down(self, laterals: Sequence[Tensor]) -> list[Tensor]:
        """The top-down pathway: from the coarsest map down, each level is its lateral map
        plus the level above it upsampled to its size.

        Args:
            laterals: [C3', C4', C5'] after the 1x1 lateral convs, (B, C, H_l, W_l).

        Returns:
            The merged maps, finest first, shapes as ``laterals``.
        """
        merged = [laterals[-1]]                                      # starts at C5
        for lateral in reversed(laterals[:-1]):                      # C4, then C3
            merged.insert(0, lateral + self.upsample(merged[0], lateral.shape[-2:]))
        return merged

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """Args: features [C3, C4, C5], (B, C_l, H_l, W_l). Returns: [P3, ..., P_max],
        (B, out_channels, H_l, W_l), each level half the size of the previous (rounded up)."""
        if len(features) != len(self.lateral):
            raise ValueError(f"the FPN got {len(features)} feature maps, it needs 3: C3, C4, C5 "
                             "of the backbone (strides 8, 16, 32)")
        laterals = [conv(c) for conv, c in zip(self.lateral, features, strict=True)]
        merged = self.top_down(laterals)
        pyramid = [conv(m) for conv, m in zip(self.output, merged, strict=True)]  # P3, P4, P5
        if self.extra:
            x = pyramid[-1] if self.p6_from == "p5" else features[-1]
            p6 = self.extra[0](x)
            pyramid += [p6, self.extra[1](F.relu(p6))]
        return pyramid
