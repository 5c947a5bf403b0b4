"""Weights from torchvision: an FCOS built by ``torchvision.models.detection`` becomes ours.

``from_torchvision(tv_fcos)`` reads the architecture off a torchvision FCOS, builds the same
network from fcos_lib's modules, and renames and loads its state dict key by key. With the
weights carried over, the two give the same raw outputs bit for bit
(``tests/test_model.py``): the parity that proves backbone, FPN and head are torchvision's
design, not merely alike.
"""
from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from fcos_lib.model import FCOS

__all__ = ["from_torchvision", "torchvision_key"]


def from_torchvision(tv_model: nn.Module) -> FCOS:
    """fcos_lib's own modules, configured like a torchvision FCOS, with its weights.

    Works for ``torchvision.models.detection.fcos_resnet50_fpn`` (COCO weights or random)
    and for an FCOS built in torchvision on a ``BackboneWithFPN`` whose body is a
    ResNet-18/50 (``conv1`` ... ``layer4``) or RegNetX-400MF (``stem``, ``block1`` ...
    ``block4``), with P3-P5 or P3-P7 (``LastLevelP6P7``, from P5 or from C5). Read from
    the model: the backbone, FrozenBatchNorm2d and frozen stages, the pyramid's width and
    levels, the head's stem depth; fixed as torchvision does them: ReLU boxes, points at
    i * stride, GroupNorm stems, GIoU, center sampling 1.5. The state dict is renamed key
    by key and loaded strictly: every weight must find its place. torchvision's image
    transform (resize, normalize) is not part of the result: feed normalized images of a
    size divisible by the largest stride.
    """
    body, fpn, head = tv_model.backbone.body, tv_model.backbone.fpn, tv_model.head
    backbone, stages = _torchvision_body(body)
    extra = fpn.extra_blocks
    if extra is not None and not isinstance(extra, LastLevelP6P7):
        raise ValueError(f"from_torchvision: the FPN's extra block {type(extra).__name__} "
                         "has no counterpart here (P6/P7 convs, LastLevelP6P7, are supported)")
    trainable = {name for name, p in body.named_parameters() if p.requires_grad}
    frozen = next((i for i, names in enumerate(stages)
                   if any(n.startswith(f"{s}.") for s in names for n in trainable)),
                  len(stages))
    model = FCOS.from_preset(
        "torchvision", head.classification_head.num_classes, backbone=backbone,
        fpn_channels=fpn.layer_blocks[0][0].out_channels,
        levels=(3, 4, 5, 6, 7) if extra is not None else (3, 4, 5),
        p6_from="p5" if extra is None or extra.use_P5 else "c5",
        freeze_bn=any(isinstance(m, FrozenBatchNorm2d) for m in body.modules()),
        frozen_stages=frozen,
        stem_convs=sum(isinstance(m, nn.Conv2d) for m in head.classification_head.conv))
    state = {torchvision_key(k): v for k, v in tv_model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    return model


def _torchvision_body(body: nn.Module) -> tuple[str, list[list[str]]]:
    """The name of the backbone in a torchvision FCOS's body, and its five stages' modules."""
    names = {name for name, _ in body.named_children()}
    if {"conv1", "layer4"} <= names:
        basic = isinstance(body.layer1[0], BasicBlock)
        if (basic, len(body.layer3)) in {(True, 2), (False, 6)}:
            return ("resnet18" if basic else "resnet50",
                    [["conv1", "bn1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]])
    if {"stem", "block4"} <= names and body.block4[0].proj[0].out_channels == 400:
        return "regnet_x_400mf", [["stem"], ["block1"], ["block2"], ["block3"], ["block4"]]
    raise ValueError(f"from_torchvision: a backbone body with parts {sorted(names)} is none of "
                     "resnet18, resnet50, regnet_x_400mf (the ones fcos_lib builds)")


# torchvision FCOS state-dict prefixes -> ours (longest first).
_RENAMES = (
    ("backbone.fpn.inner_blocks.", "fpn.lateral."),
    ("backbone.fpn.layer_blocks.", "fpn.output."),
    ("backbone.fpn.extra_blocks.p6.", "fpn.extra.0."),
    ("backbone.fpn.extra_blocks.p7.", "fpn.extra.1."),
    ("backbone.body.", "backbone.body."),
    ("head.classification_head.conv.", "head.cls_stem."),
    ("head.classification_head.cls_logits.", "head.cls_logits."),
    ("head.regression_head.conv.", "head.box_stem."),
    ("head.regression_head.bbox_reg.", "head.box_deltas."),
    ("head.regression_head.bbox_ctrness.", "head.centerness."),
)


def torchvision_key(key: str) -> str:
    """The name in fcos_lib's FCOS of torchvision FCOS's state-dict entry ``key``.

    The FPN's convs sit in a ``Conv2dNormActivation`` in torchvision (``inner_blocks.0.0``):
    the inner ``.0`` is dropped. Raises KeyError for an entry that has no place here.
    """
    for old, new in _RENAMES:
        if key.startswith(old):
            rest = key[len(old):]
            if old.endswith(("inner_blocks.", "layer_blocks.")):
                level, _, param = rest.split(".", 2)
                rest = f"{level}.{param}"
            return new + rest
    raise KeyError(f"torchvision FCOS entry {key!r} has no counterpart in fcos_lib's FCOS")
