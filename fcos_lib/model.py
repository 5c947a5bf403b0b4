"""The FCOS detector: backbone -> FPN -> shared head, plus the locations of every level.

``FCOS(num_classes, **options)`` returns raw per-level outputs (see ``docs/design.md``);
``model(images, targets)`` returns the losses of :func:`fcos_lib.losses.fcos_loss`, and
``model.predict(images)`` the detected boxes of :func:`fcos_lib.inference.detect`.

Where is a level's point for cell (i, j)? The paper and the course put it at the cell's centre,
``((j + 0.5) · s, (i + 0.5) · s)`` (``location_offset=0.5``): the point a stride-s cell sees
best. torchvision puts it at the cell's corner, ``(j · s, i · s)`` (``location_offset=0.0``),
half a cell up and left. Both train fine (the network learns distances from whichever point
it is given); only when weights move between the two conventions must the offset move too.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from fcos_lib.backbone import build_backbone
from fcos_lib.fpn import FPN
from fcos_lib.head import FCOSHead
from fcos_lib.inference import detect
from fcos_lib.losses import BOX_LOSSES, fcos_loss


def level_locations(height: int, width: int, stride: int, offset: float,
                    device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """The points of one level, ((j + offset) · stride, (i + offset) · stride), row-major.

    Args:
        height, width: the level's size in cells.
        stride: its stride in input pixels.
        offset: 0.5 (cell centres) or 0.0 (torchvision's cell corners).

    Returns:
        (height·width, 2) xy in input pixels; row i = 0 first, j fastest.
    """
    ys = (torch.arange(height, device=device, dtype=dtype) + offset) * stride
    xs = (torch.arange(width, device=device, dtype=dtype) + offset) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)


# Each preset: FCOS keyword arguments. A preset with pretrained=True adds "when_pretrained".
PRESETS: dict[str, dict[str, Any]] = {
    # CPU and tests: the tiny backbone, a narrow pyramid, two-conv GroupNorm stems.
    "tiny": dict(backbone="tiny", fpn_channels=64, levels=(3, 4, 5), stem_convs=2,
                 norm="group"),
    # EECS 498-007 A4 (Justin Johnson, U. Michigan): RegNetX-400MF with ImageNet weights,
    # DetectorBackboneWithFPN(out_channels=64) over P3-P5, FCOSPredictionNetwork(
    # stem_channels=[64, 64]) of 3x3 conv + ReLU without normalization, points at cell
    # centres, L1 loss on the distances in strides, centerness on the box stem.
    "course": dict(backbone="regnet_x_400mf", fpn_channels=64, levels=(3, 4, 5), stem_convs=2,
                   norm="none", box_loss="l1"),
    # The paper, improved version (Tian et al. 2019/2020): ResNet-50, P3-P7 (P6 from P5),
    # 256 channels, 4-conv GroupNorm stems, exp with a learnable scale per level, GIoU,
    # center sampling radius 1.5, centerness on the box stem. With ImageNet weights the
    # backbone's BatchNorm and its first two stages (stem, res2) are frozen, as in Detectron.
    "paper": dict(backbone="resnet50", fpn_channels=256, levels=(3, 4, 5, 6, 7), stem_convs=4,
                  norm="group", box_activation="exp", box_loss="giou",
                  center_sampling_radius=1.5,
                  when_pretrained=dict(freeze_bn=True, frozen_stages=2)),
    # torchvision's fcos_resnet50_fpn: the paper's design with ReLU boxes and points at
    # i * stride (see FCOS.from_torchvision).
    "torchvision": dict(backbone="resnet50", fpn_channels=256, levels=(3, 4, 5, 6, 7),
                        stem_convs=4, norm="group", box_activation="relu", box_loss="giou",
                        center_sampling_radius=1.5, location_offset=0.0,
                        when_pretrained=dict(freeze_bn=True, frozen_stages=2)),
}


class FCOS(nn.Module):
    """Fully convolutional one-stage detector (Tian et al., arXiv:1904.01355).

    Args:
        num_classes: C, classes without background.
        backbone: ``"tiny"``, ``"regnet_x_400mf"``, ``"resnet18"`` or ``"resnet50"``.
        pretrained: ImageNet weights for a torchvision backbone (offline: warning, random).
        freeze_bn, frozen_stages: see :func:`fcos_lib.backbone.build_backbone`.
        fpn_channels: width of the pyramid and of the head.
        levels: ``(3, 4, 5)`` or ``(3, 4, 5, 6, 7)``: P3-P5 or P3-P7.
        interpolation: FPN top-down upsampling, ``"nearest"`` or ``"bilinear"``.
        p6_from: ``"p5"`` (improved FCOS, torchvision) or ``"c5"`` (first paper).
        stem_convs, norm, centerness_on, box_activation: see :class:`fcos_lib.head.FCOSHead`.
        location_offset: 0.5 (cell centres) or 0.0 (torchvision's corners).
        box_loss, center_sampling_radius, size_ranges: passed to ``fcos_loss``.
    """

    def __init__(self, num_classes: int, backbone: str = "tiny", pretrained: bool = False,
                 fpn_channels: int = 64, levels: tuple[int, ...] = (3, 4, 5),
                 interpolation: str = "nearest", stem_convs: int = 2, norm: str = "group",
                 centerness_on: str = "box", box_activation: str = "relu",
                 location_offset: float = 0.5, box_loss: str = "l1",
                 center_sampling_radius: float | None = None,
                 size_ranges: list[tuple[float, float]] | None = None,
                 freeze_bn: bool = False, frozen_stages: int = 0, p6_from: str = "p5"):
        super().__init__()
        levels = tuple(int(level) for level in levels)
        if fpn_channels < 1:
            raise ValueError(f"fpn_channels={fpn_channels}: the pyramid and the head need at "
                             "least 1 channel (the tiny preset uses 64, the paper 256)")
        if box_loss not in BOX_LOSSES:
            raise ValueError(f"box_loss={box_loss!r}: choose one of {BOX_LOSSES}")
        if size_ranges is not None and len(size_ranges) != len(levels):
            raise ValueError(f"{len(size_ranges)} size ranges for levels {levels}: give one "
                             "(lo, hi) pair per level, or None for the paper's rule")
        self.backbone = build_backbone(backbone, pretrained, freeze_bn, frozen_stages)
        self.fpn = FPN(self.backbone.out_channels, fpn_channels, levels, interpolation, p6_from)
        self.head = FCOSHead(num_classes, fpn_channels, len(levels), stem_convs, norm=norm,
                             centerness_on=centerness_on, box_activation=box_activation)
        self.num_classes = num_classes
        self.strides = [2 ** level for level in levels]
        self.location_offset = float(location_offset)
        ranges = None if size_ranges is None else [[float(lo), float(hi)] for lo, hi in size_ranges]
        self.loss_config = {"box_loss": box_loss,
                            "center_sampling_radius": (None if center_sampling_radius is None
                                                       else float(center_sampling_radius)),
                            "size_ranges": ranges}
        self.config = {"num_classes": int(num_classes), "backbone": backbone,
                       "pretrained": bool(pretrained), "fpn_channels": int(fpn_channels),
                       "levels": list(levels), "interpolation": interpolation,
                       "stem_convs": int(stem_convs), "norm": norm,
                       "centerness_on": centerness_on, "box_activation": box_activation,
                       "location_offset": self.location_offset, **self.loss_config,
                       # what the backbone applied: without downloaded weights, no freezing
                       "freeze_bn": self.backbone.freeze_bn,
                       "frozen_stages": self.backbone.frozen_stages,
                       "p6_from": p6_from}
        self._locations: dict[tuple, list[Tensor]] = {}

    # ------------------------------------------------------------------ forward

    def check_images(self, images: Tensor) -> None:
        """Raise a ValueError naming the fix when ``images`` is not a (B, 3, H, W) float batch
        of the weights' dtype and device, with H and W divisible by 32."""
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}; batch single "
                             "images with images[None] or fcos_lib.data.collate")
        if not images.is_floating_point():
            raise ValueError(f"images must be float (normalized with ImageNet mean and std), "
                             f"got {images.dtype}")
        weight = next(self.parameters())
        if images.device != weight.device or images.dtype != weight.dtype:
            raise ValueError(f"images are {images.dtype} on {images.device}, the model's weights "
                             f"{weight.dtype} on {weight.device}: move one to the other, e.g. "
                             "images.to(weight) or model.to(images.device); for mixed precision "
                             "use torch.autocast")
        # Then every C3-C5 cell is a whole block of stride x stride pixels and every point
        # lies inside the image; otherwise the strided convs round up and the last cell hangs
        # over the edge into the padding (torchvision, too, pads batches to a multiple of 32).
        # P6 and P7 may round up rather than ask for multiples of 128 (256 for a 224 image).
        height, width = images.shape[-2:]
        if height % 32 or width % 32:
            raise ValueError(
                f"image size {height}x{width} is not divisible by 32, the stride of C5: "
                f"resize or pad to {math.ceil(height / 32) * 32}x{math.ceil(width / 32) * 32}")

    def locations(self, sizes: list[tuple[int, int]], device: torch.device) -> list[Tensor]:
        """The points of every level (cached per sizes and device): (H_l·W_l, 2) xy pixels."""
        key = (tuple(sizes), str(device))
        if key not in self._locations:
            self._locations[key] = [level_locations(h, w, s, self.location_offset, device)
                                    for (h, w), s in zip(sizes, self.strides)]
        return self._locations[key]

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Any]:
        """Raw outputs, or the losses when ``targets`` are given.

        Args:
            images: (B, 3, H, W) float32, normalized; H and W divisible by 32.
            targets: optional, B dicts with ``boxes`` (N_i, 4) xyxy pixels, ``labels`` (N_i,).

        Returns:
            Without targets, per-level lists (P3 first): ``cls_logits`` (B, H_l·W_l, C),
            ``box_deltas`` (B, H_l·W_l, 4) LTRB in strides, ``centerness`` (B, H_l·W_l)
            logits, ``locations`` (H_l·W_l, 2) xy pixels, ``strides`` ints. With targets,
            ``fcos_loss(outputs, targets, **self.loss_config)``: ``classification``,
            ``bbox_regression``, ``bbox_ctrness``, ``total``.
        """
        self.check_images(images)
        pyramid = self.fpn(self.backbone(images))
        outputs: dict[str, Any] = self.head(pyramid)
        outputs["locations"] = self.locations([tuple(p.shape[-2:]) for p in pyramid],
                                              images.device)
        outputs["strides"] = list(self.strides)
        if targets is None:
            return outputs
        if len(targets) != len(images):
            raise ValueError(f"{len(targets)} targets for {len(images)} images: give one dict "
                             "(boxes, labels) per image")
        return fcos_loss(outputs, targets, **self.loss_config)

    @torch.no_grad()
    def predict(self, images: Tensor, score_thresh: float = 0.05, nms_thresh: float = 0.6,
                topk_candidates: int = 1000, detections_per_img: int = 100,
                centerness_in_score: bool = True) -> list[dict[str, Tensor]]:
        """Detected boxes per image, in eval mode (restored afterwards), without gradients.

        Args:
            images: (B, 3, H, W) as for ``forward``.
            score_thresh, nms_thresh, topk_candidates, detections_per_img,
            centerness_in_score: see :func:`fcos_lib.inference.detect`.

        Returns:
            B dicts: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,), ``labels`` (K,) int64.
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        return detect(outputs, image_size=tuple(images.shape[-2:]), score_thresh=score_thresh,
                      nms_thresh=nms_thresh, topk_candidates=topk_candidates,
                      detections_per_img=detections_per_img,
                      centerness_in_score=centerness_in_score)

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_preset(cls, name: str, num_classes: int, pretrained: bool = False,
                    **overrides: Any) -> FCOS:
        """A model configured by preset ``name`` (``"tiny"``, ``"course"``, ``"paper"``,
        ``"torchvision"``; see :data:`PRESETS`), with ``overrides`` applied last."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)}")
        options = dict(PRESETS[name])
        if_pretrained = options.pop("when_pretrained", {})
        if pretrained:
            options.update(if_pretrained)
        return cls(num_classes=num_classes, pretrained=pretrained, **{**options, **overrides})

    @classmethod
    def from_torchvision(cls, tv_model: nn.Module) -> FCOS:
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
        from torchvision.ops import FrozenBatchNorm2d
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

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
        model = cls.from_preset(
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
    from torchvision.models.resnet import BasicBlock

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
