"""The FCOS head: per location of every pyramid level, class logits, box sides and centerness.

One head serves every level (its weights are shared): an object looks the same at stride 8 as
at stride 64 once the size ranges (the target assignment) have sent it to the level that fits
its size. Two stems of 3x3 convs read the level's features:

- the *classification stem* ends in ``num_classes`` logits per location (sigmoids, no
  background class);
- the *box stem* ends in 4 distances (left, top, right, bottom, in strides) and, with
  ``centerness_on="box"`` (the improved FCOS, torchvision and the course), the centerness
  logit. ``centerness_on="cls"`` puts centerness on the classification stem, as the first
  version of the paper did: the ablation of the improved version (Tian et al., 2020, table 3)
  found the box stem better, since centerness is a property of the box, not of the class.

Box distances must be non-negative: ``box_activation="relu"`` (torchvision and the course) or
``"exp"``, ``exp(s_l · x)`` with one learnable scale ``s_l`` per level (the paper's choice:
the shared head's raw outputs stay in one range while each level's distances keep theirs).

The last classification conv starts with bias ``-log((1 - p) / p)``, p = 0.01 (RetinaNet's
prior): at the start every location predicts "object" with probability 0.01 instead of 0.5, so
the ~10^4 background locations of an image do not swamp the focal loss and the first steps.

:func:`head_level_plain` is the head on one level, written out for the course's configuration
(ReLU, centerness on the box stem): the contract of notebook 04's exercise, proved equal to
:meth:`FCOSHead.forward` in the tests; :func:`fcos_lib.pieces.per_level` makes the model run it
(or a student's version) level by level.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fcos_lib.config import MODEL_CHOICES
from fcos_lib.validate import one_of, whole

NORMS = MODEL_CHOICES["norm"]
CENTERNESS_ON = MODEL_CHOICES["centerness_on"]
BOX_ACTIVATIONS = MODEL_CHOICES["box_activation"]


def head_level_plain(cls_stem: nn.Module, box_stem: nn.Module, cls_logits: nn.Module,
                     box_deltas: nn.Module, centerness: nn.Module, features: Tensor
                     ) -> list[Tensor]:
    """The head on one pyramid level, step by step (ReLU distances, centerness on the box
    stem): the contract of notebook 04's exercise.

    Args:
        cls_stem, box_stem: the two stems, (B, in_channels, H, W) -> (B, width, H, W).
        cls_logits, box_deltas, centerness: the final convs, (B, width, H, W) to C, 4 and 1
            channels.
        features: (B, in_channels, H, W), one level of the pyramid.

    Returns:
        ``[cls_logits (B, H·W, C), box_deltas (B, H·W, 4) >= 0, centerness (B, H·W)]``, one
        row per location, row-major over (H, W) (row 0 first, x fastest).

    >>> head = FCOSHead(num_classes=3, in_channels=8, num_levels=1)
    >>> out = head_level_plain(head.cls_stem, head.box_stem, head.cls_logits, head.box_deltas,
    ...                        head.centerness, torch.zeros(2, 8, 4, 5))
    >>> [tuple(t.shape) for t in out]
    [(2, 20, 3), (2, 20, 4), (2, 20)]
    """
    cls_features = cls_stem(features)                          # (B, width, H, W)
    box_features = box_stem(features)
    logits = cls_logits(cls_features)                          # (B, C, H, W)
    deltas = torch.relu(box_deltas(box_features))              # (B, 4, H, W): never negative
    ctr = centerness(box_features)                             # (B, 1, H, W): the BOX stem's
    # Channels last, then (H, W) flattened: row i of the map, then column j, as locations go.
    return [logits.permute(0, 2, 3, 1).flatten(1, 2), deltas.permute(0, 2, 3, 1).flatten(1, 2),
            ctr.flatten(1)]


def group_count(channels: int, most: int = 32) -> int:
    """GroupNorm's group count: 32 (the paper's) or, for narrow layers, the largest divisor
    of ``channels`` below it (GroupNorm needs channels divisible by groups)."""
    return max(g for g in range(1, min(most, channels) + 1) if channels % g == 0)


def make_norm(norm: str, channels: int) -> list[nn.Module]:
    """The normalization layer after a stem conv: GroupNorm, BatchNorm or none (as a list)."""
    if norm == "group":
        return [nn.GroupNorm(group_count(channels), channels)]
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    return []


def make_stem(in_channels: int, width: int, convs: int, norm: str) -> nn.Sequential:
    """``convs`` times (3x3 conv, norm, ReLU): the first maps ``in_channels`` to ``width``."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1),
                   *make_norm(norm, width), nn.ReLU()]
    return nn.Sequential(*layers)


def flatten_level(x: Tensor) -> Tensor:
    """(B, K, H, W) -> (B, H·W, K): one row per location, row-major over (H, W)."""
    return x.permute(0, 2, 3, 1).flatten(1, 2)


class FCOSHead(nn.Module):
    """The shared head of FCOS.

    Args:
        num_classes: C, the number of classes (no background).
        in_channels: channels of the pyramid levels.
        num_levels: how many levels (one learnable scale per level with ``"exp"``).
        stem_convs: 3x3 convs per stem (paper 4, course 2).
        width: channels of the stem convs (default ``in_channels``).
        norm: ``"group"``, ``"batch"`` or ``"none"``.
        centerness_on: ``"box"`` or ``"cls"``: which stem predicts centerness.
        box_activation: ``"relu"`` or ``"exp"``.
        prior: initial object probability of every class logit (0.01).
    """

    def __init__(self, num_classes: int, in_channels: int, num_levels: int, stem_convs: int = 2,
                 width: int | None = None, norm: str = "group", centerness_on: str = "box",
                 box_activation: str = "relu", prior: float = 0.01):
        super().__init__()
        for name, value, choices in (("norm", norm, NORMS),
                                     ("centerness_on", centerness_on, CENTERNESS_ON),
                                     ("box_activation", box_activation, BOX_ACTIVATIONS)):
            one_of(name, value, choices)
        whole("num_classes", num_classes, minimum=1)
        whole("stem_convs", stem_convs, minimum=0)
        width = width or in_channels
        top = width if stem_convs else in_channels
        self.centerness_on, self.box_activation = centerness_on, box_activation
        self.cls_stem = make_stem(in_channels, width, stem_convs, norm)
        self.box_stem = make_stem(in_channels, width, stem_convs, norm)
        self.cls_logits = nn.Conv2d(top, num_classes, 3, padding=1)
        self.box_deltas = nn.Conv2d(top, 4, 3, padding=1)
        self.centerness = nn.Conv2d(top, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(num_levels)) if box_activation == "exp" else None
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):  # small random weights: outputs start near the bias
                nn.init.normal_(conv.weight, std=0.01)
                nn.init.zeros_(conv.bias)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - prior) / prior))

    def forward(self, pyramid: Sequence[Tensor]) -> dict[str, list[Tensor]]:
        """Args: pyramid [P3, ...], (B, in_channels, H_l, W_l).

        Returns:
            Per-level lists: ``cls_logits`` (B, H_l·W_l, C), ``box_deltas`` (B, H_l·W_l, 4)
            LTRB in strides, >= 0, ``centerness`` (B, H_l·W_l) logits.
        """
        out: dict[str, list[Tensor]] = {"cls_logits": [], "box_deltas": [], "centerness": []}
        for level, features in enumerate(pyramid):
            cls_features = self.cls_stem(features)
            box_features = self.box_stem(features)
            deltas = self.box_deltas(box_features)
            if self.scales is None:
                deltas = torch.relu(deltas)
            else:
                deltas = torch.exp(self.scales[level] * deltas)
            ctr_features = box_features if self.centerness_on == "box" else cls_features
            out["cls_logits"].append(flatten_level(self.cls_logits(cls_features)))
            out["box_deltas"].append(flatten_level(deltas))
            out["centerness"].append(flatten_level(self.centerness(ctr_features))[..., 0])
        return out
