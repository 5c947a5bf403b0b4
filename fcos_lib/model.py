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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcos_lib.backbone import build_backbone
from fcos_lib.checkpoint import load_checkpoint
from fcos_lib.config import FCOSConfig, model_preset
from fcos_lib.fpn import FPN
from fcos_lib.head import FCOSHead
from fcos_lib.losses import fcos_loss
from fcos_lib.pieces import Pieces


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


class FCOS(nn.Module):
    """Fully convolutional one-stage detector (Tian et al., arXiv:1904.01355).

    ``FCOS(num_classes, **options)``: ``options`` are the fields of
    :class:`fcos_lib.config.FCOSConfig` (backbone, levels, head, loss), which documents them;
    ``model.config`` is that dataclass, and ``FCOS.from_config(model.config)`` rebuilds the
    model. :meth:`from_preset` builds a named configuration, :meth:`from_checkpoint` a
    trained one.

    Args:
        num_classes: C, classes without background.
        **options: :class:`fcos_lib.config.FCOSConfig` fields.
    """

    def __init__(self, num_classes: int, **options: Any):
        super().__init__()
        cfg = FCOSConfig(num_classes=num_classes, **options)
        self.backbone = build_backbone(cfg.backbone, cfg.pretrained, cfg.freeze_bn,
                                       cfg.frozen_stages)
        self.fpn = FPN(self.backbone.out_channels, cfg.fpn_channels, cfg.levels,
                       cfg.interpolation, cfg.p6_from)
        self.head = FCOSHead(cfg.num_classes, cfg.fpn_channels, len(cfg.levels),
                             cfg.stem_convs, norm=cfg.norm, centerness_on=cfg.centerness_on,
                             box_activation=cfg.box_activation)
        # What the backbone applied: without downloaded weights, no freezing.
        self.config = replace(cfg, freeze_bn=self.backbone.freeze_bn,
                              frozen_stages=self.backbone.frozen_stages)
        self.num_classes = cfg.num_classes
        self.strides = cfg.strides
        self.location_offset = cfg.location_offset
        self.loss_config = cfg.loss_options
        self.pieces = Pieces()
        self._locations: dict[tuple, list[Tensor]] = {}

    def use(self, pieces: Pieces) -> FCOS:
        """Run, train and detect with ``pieces`` (head pass, assignment, classification loss,
        loss assembly, NMS, detection) instead of the library's; see :mod:`fcos_lib.pieces`.
        Returns the model itself."""
        if not isinstance(pieces, Pieces):
            raise ValueError(f"use() takes a fcos_lib.pieces.Pieces, got {type(pieces).__name__}: "
                             "build one with Pieces(...) or pieces.from_student(...)")
        self.pieces = pieces
        return self

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

    def grid(self, height: int, width: int, device: torch.device | str = "cpu") -> list[Tensor]:
        """The locations of every level for an image of ``height`` x ``width`` pixels, as
        :meth:`forward` makes them: level l has ceil(H / s_l) x ceil(W / s_l) cells (each
        stride-2 conv rounds up).

        Returns:
            Per level, (H_l·W_l, 2) xy pixels, row-major.
        """
        sizes = [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]
        return self.locations(sizes, torch.device(device))

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
        outputs: dict[str, Any] = self.pieces.head(self.head, pyramid)
        outputs["locations"] = self.locations([tuple(p.shape[-2:]) for p in pyramid],
                                              images.device)
        outputs["strides"] = list(self.strides)
        if targets is None:
            return outputs
        if len(targets) != len(images):
            raise ValueError(f"{len(targets)} targets for {len(images)} images: give one dict "
                             "(boxes, labels) per image")
        return fcos_loss(outputs, targets, **self.loss_config, assign=self.pieces.assign,
                         focal=self.pieces.focal, terms=self.pieces.losses)

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
            B dicts: ``boxes`` (K, 4) xyxy pixels, ``scores`` (K,), ``labels`` (K,) int64,
            ``levels`` (K,) int64 (the pyramid level of each box: 0 for the first; absent
            when a student's detection, ``model.use(from_student(detect=...))``, made them).
        """
        was_training = self.training
        self.eval()
        try:
            outputs = self(images)
        finally:
            self.train(was_training)
        return self.pieces.detect(outputs, image_size=tuple(images.shape[-2:]),
                                  score_thresh=score_thresh, nms_thresh=nms_thresh,
                                  topk_candidates=topk_candidates,
                                  detections_per_img=detections_per_img,
                                  centerness_in_score=centerness_in_score, nms=self.pieces.nms)

    # ------------------------------------------------------------------ builders

    @classmethod
    def from_config(cls, config: FCOSConfig | dict[str, Any]) -> FCOS:
        """The model of a :class:`fcos_lib.config.FCOSConfig` (or of its ``asdict``)."""
        return cls(**(asdict(config) if isinstance(config, FCOSConfig) else config))

    @classmethod
    def from_preset(cls, name: str, num_classes: int, pretrained: bool = False,
                    **overrides: Any) -> FCOS:
        """A model configured by preset ``name`` (``"tiny"``, ``"course"``, ``"paper"``,
        ``"torchvision"``; see :data:`fcos_lib.config.MODEL_PRESETS`), ``overrides`` last."""
        return cls.from_config(model_preset(name, num_classes, pretrained, **overrides))

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device | None = None
                        ) -> tuple[FCOS, dict[str, Any]]:
        """The trained model of a checkpoint, in eval mode, and what the run recorded.

        Args:
            path: a ``checkpoint.pt`` written by :func:`fcos_lib.train.train`.
            map_location: where the weights go (default: the CPU).

        Returns:
            ``(model, run)``: ``run`` has ``train`` (the run's ``TrainConfig`` as a dict),
            ``model`` (the ``FCOSConfig`` as a dict), ``class_names`` and ``step``.

        Raises:
            fcos_lib.checkpoint.CheckpointError: no checkpoint there, not a readable one,
                not laid out as ours, or weights that do not fit its config; the message
                names what is missing or unexpected.
        """
        from dataclasses import fields

        from fcos_lib.checkpoint import CheckpointError, check_layout, load_weights

        state = load_checkpoint(path, map_location or "cpu")
        check_layout(state, path)       # a run's config and weights, not another program's
        config = state["config"]
        try:      # the weights are in the file: nothing to download
            model = cls.from_config({**config["model"], "pretrained": False})
        except (TypeError, ValueError) as err:     # a field renamed or gone since
            known = {f.name for f in fields(FCOSConfig)}
            odd = sorted(set(config["model"]) - known)
            what = f"settings this version does not know: {odd[:3]}" if odd else str(err)
            raise CheckpointError(f"the model config in {path} has {what}; it was written by "
                                  "another version of fcos_lib: load it with that version, or "
                                  "train again (python -m fcos_lib train)") from None
        load_weights(model, state["model"], path)
        return model.to(map_location or "cpu").eval(), {**config, "step": state["step"]}
