"""Every setting in one place: the detector's (:class:`FCOSConfig`), a training run's
(:class:`TrainConfig`), and their presets.

Both are dataclasses of plain values: ``dataclasses.asdict`` saves them into a checkpoint
and ``FCOSConfig(**saved)`` / ``TrainConfig(**saved)`` rebuild them, checking every value on
the way (a bad setting is refused here, with its name and the fix, not deep inside a run).
Adding an option is one field plus one line of its class's docstring.

========================  ============================================================
model presets             what they build (:func:`model_preset`)
========================  ============================================================
``tiny``                  CPU and tests: a small CNN, P3-P5, 64 channels
``course``                EECS 498-007 A4: RegNetX-400MF, P3-P5, 128 channels, no norm
``paper``                 the improved FCOS: ResNet-50, P3-P7, 256 channels, GIoU
``torchvision``           torchvision's ``fcos_resnet50_fpn``
========================  ============================================================

Training presets (:func:`get_preset`): ``shapes`` (the tiny model on generated shapes, on a
CPU), ``demo`` (``make demo``'s: ``shapes`` with two of notebook 08's gains), ``voc2007-tiny``
(the course's recipe) and ``paper``.

Why this module is longer than 300 lines: every setting and every preset of the series is
here, checked in one place; the presets apart would make two places to read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from fcos_lib.validate import number, one_of, whole

__all__ = ["FCOSConfig", "MODEL_PRESETS", "model_preset", "TrainConfig", "TRAIN_PRESETS",
           "get_preset", "config_with", "model_config"]

LEVELS = ((3, 4, 5), (3, 4, 5, 6, 7))


@dataclass
class FCOSConfig:
    """The detector: everything ``FCOS`` needs to build itself (``docs/design.md``).

    Args:
        num_classes: C, classes without background.
        backbone: ``"tiny"``, ``"regnet_x_400mf"``, ``"resnet18"`` or ``"resnet50"``.
        pretrained: ImageNet weights for a torchvision backbone (offline: warning, random).
        fpn_channels: width of the pyramid and of the head.
        levels: ``(3, 4, 5)`` or ``(3, 4, 5, 6, 7)``: P3-P5 or P3-P7.
        interpolation: FPN top-down upsampling, ``"nearest"`` or ``"bilinear"``.
        stem_convs: 3x3 convs in each head stem; norm: ``"group"``, ``"batch"`` or ``"none"``.
        centerness_on: the stem that predicts centerness, ``"box"`` or ``"cls"``.
        box_activation: ``"relu"`` or ``"exp"`` (with a learnable scale per level).
        location_offset: 0.5 (cell centres: the paper, the course) or 0.0 (torchvision).
        box_loss: ``"l1"`` (the course) or ``"giou"`` (the improved paper, torchvision).
        center_sampling_radius: None (the whole box) or a radius in strides (paper: 1.5).
        size_ranges: None (the paper's rule) or one ``(lo, hi)`` pair in pixels per level.
        freeze_bn, frozen_stages: FrozenBatchNorm2d; backbone stages without gradient.
        p6_from: ``"p5"`` (FCOS, torchvision) or ``"c5"`` (RetinaNet).
    """

    num_classes: int
    backbone: str = "tiny"
    pretrained: bool = False
    fpn_channels: int = 64
    levels: tuple[int, ...] = (3, 4, 5)
    interpolation: str = "nearest"
    stem_convs: int = 2
    norm: str = "group"
    centerness_on: str = "box"
    box_activation: str = "relu"
    location_offset: float = 0.5
    box_loss: str = "l1"
    center_sampling_radius: float | None = None
    size_ranges: tuple[tuple[float, float], ...] | None = None
    freeze_bn: bool = False
    frozen_stages: int = 0
    p6_from: str = "p5"

    def __post_init__(self) -> None:
        """Check every value and give it one type (tuples, floats), so that a config saved
        in a checkpoint and read back compares equal to the one that was saved."""
        self.num_classes = whole("num_classes", self.num_classes, minimum=1)
        self.fpn_channels = whole("fpn_channels", self.fpn_channels, minimum=1,
                                  hint="the tiny preset uses 64, the paper 256")
        self.stem_convs = whole("stem_convs", self.stem_convs, minimum=0)
        self.frozen_stages = whole("frozen_stages", self.frozen_stages, minimum=0)
        self.levels = one_of("levels", tuple(int(v) for v in self.levels), LEVELS)
        for name, allowed in MODEL_CHOICES.items():
            one_of(name, getattr(self, name), allowed)
        self.location_offset = number("location_offset", self.location_offset, 0.0, 1.0)
        if self.center_sampling_radius is not None:
            self.center_sampling_radius = number("center_sampling_radius",
                                                 self.center_sampling_radius, 0.0,
                                                 low_open=True, hint="the paper uses 1.5")
        if self.size_ranges is not None:
            self.size_ranges = tuple((float(lo), float(hi)) for lo, hi in self.size_ranges)
            if len(self.size_ranges) != len(self.levels):
                raise ValueError(f"{len(self.size_ranges)} size ranges for levels {self.levels}"
                                 ": give one (lo, hi) pair per level, or None for the paper's "
                                 "rule")
        self.pretrained, self.freeze_bn = bool(self.pretrained), bool(self.freeze_bn)

    @property
    def strides(self) -> list[int]:
        """The levels' strides in pixels: 2 ** level."""
        return [2 ** level for level in self.levels]

    @property
    def loss_options(self) -> dict[str, Any]:
        """The keyword arguments of ``fcos_lib.losses.fcos_loss`` that this config fixes."""
        ranges = None if self.size_ranges is None else [list(r) for r in self.size_ranges]
        return {"box_loss": self.box_loss, "center_sampling_radius": self.center_sampling_radius,
                "size_ranges": ranges}


# The settings of the model that take one of a few words.
MODEL_CHOICES: dict[str, tuple[str, ...]] = {
    "backbone": ("tiny", "regnet_x_400mf", "resnet18", "resnet50"),
    "interpolation": ("nearest", "bilinear"), "norm": ("group", "batch", "none"),
    "centerness_on": ("box", "cls"), "box_activation": ("relu", "exp"),
    "box_loss": ("l1", "giou"), "p6_from": ("p5", "c5")}


# Each preset: FCOSConfig fields; "when_pretrained" adds fields for pretrained=True.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    # CPU and tests: the tiny backbone, a narrow pyramid, two-conv GroupNorm stems.
    "tiny": dict(backbone="tiny", fpn_channels=64, levels=(3, 4, 5), stem_convs=2,
                 norm="group"),
    # EECS 498-007 A4 (Justin Johnson, U. Michigan), its full training run (notebook
    # one_stage_detector.ipynb: FCOS(num_classes, fpn_channels=128, stem_channels=[128, 128]);
    # its overfitting check uses 64): RegNetX-400MF with ImageNet weights, an FPN over P3-P5,
    # two 3x3 conv + ReLU per stem without normalization, points at cell centres, L1 loss on
    # the distances in strides, centerness on the box stem.
    "course": dict(backbone="regnet_x_400mf", fpn_channels=128, levels=(3, 4, 5), stem_convs=2,
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
    # i * stride (see fcos_lib.torchvision_port).
    "torchvision": dict(backbone="resnet50", fpn_channels=256, levels=(3, 4, 5, 6, 7),
                        stem_convs=4, norm="group", box_activation="relu", box_loss="giou",
                        center_sampling_radius=1.5, location_offset=0.0,
                        when_pretrained=dict(freeze_bn=True, frozen_stages=2)),
}


def model_preset(name: str, num_classes: int, pretrained: bool = False,
                 **overrides: Any) -> FCOSConfig:
    """The :class:`FCOSConfig` of model preset ``name`` (see :data:`MODEL_PRESETS`), with
    ``overrides`` (its field names) applied last."""
    options = dict(MODEL_PRESETS[one_of("preset", name, tuple(MODEL_PRESETS))])
    if_pretrained = options.pop("when_pretrained", {})
    if pretrained:
        options.update(if_pretrained)
    return FCOSConfig(num_classes=num_classes, pretrained=pretrained, **{**options, **overrides})


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in its checkpoints.

    Data: ``dataset`` and ``image_size`` (pixels, square) go to ``fcos_lib.data.build_dataset``
    with ``dataset_kwargs``; ``cache`` is ``"memory"``, ``"disk"`` (in ``cache_dir``) or
    ``"none"``; ``num_workers`` loader processes. Model: :class:`FCOSConfig` fields in
    ``model``, or a model ``preset`` name with overrides. Optimization: ``steps`` optimizer
    steps of ``batch_size`` images (over all processes); ``optimizer`` ``"sgd"`` or
    ``"adamw"``; the learning rate rises linearly from ``lr * warmup_factor`` to ``lr`` over
    ``warmup_steps``, then ``schedule`` ``"step"`` multiplies it by ``gamma`` at each of the
    ``milestones`` (fractions of ``steps``) or ``"cosine"`` takes it down to 0;
    ``clip_grad_norm`` (None: off). ``amp``: ``"auto"`` (on CUDA only), ``"bf16"``,
    ``"fp16"`` or ``"off"``; ``channels_last`` memory format. Every ``log_every`` steps a
    metrics line, every ``eval_every`` steps (0: only at the end) the mAP@0.5 on up to
    ``eval_images`` validation images, every ``checkpoint_every`` steps a checkpoint.
    ``seed`` fixes the weights, the batches and the flips; ``device`` None picks the best.
    """

    preset: str = "shapes"
    out: str = "runs/shapes"
    dataset: str = "shapes"
    image_size: int = 128
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    val_split: str = "val"
    cache: str = "memory"
    cache_dir: str = "data/cache"
    num_workers: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    warmup_factor: float = 0.001
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.6, 0.9)
    gamma: float = 0.1
    clip_grad_norm: float | None = 10.0
    amp: str = "auto"
    channels_last: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int = 0
    eval_images: int = 500
    checkpoint_every: int = 100
    device: str | None = None

    def __post_init__(self) -> None:
        """Refuse a bad setting here, with its name and the fix, not deep inside the loop."""
        # Checked values are stored back as plain ints and floats (a NumPy or torch number
        # would not load from a checkpoint with weights_only=True).
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "image_size"):
            setattr(self, name, whole(name, getattr(self, name), minimum=1))
        for name in ("warmup_steps", "eval_every", "eval_images", "num_workers", "seed"):
            setattr(self, name, whole(name, getattr(self, name), minimum=0))
        self.lr = number("lr", self.lr, 0.0, low_open=True, hint="e.g. lr=0.01")
        for name, allowed in TRAIN_CHOICES.items():
            one_of(name, getattr(self, name), allowed)
        self.gamma = number("gamma", self.gamma, 0.0, low_open=True, hint="e.g. gamma=0.1")
        for name in ("momentum", "weight_decay", "warmup_factor"):   # (a decay above 1: never)
            setattr(self, name, number(name, getattr(self, name), 0.0, 1.0))
        if self.clip_grad_norm is not None:
            self.clip_grad_norm = number("clip_grad_norm", self.clip_grad_norm, 0.0,
                                         low_open=True, hint="or None for no clipping")
        for name in ("dataset_kwargs", "model"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}={getattr(self, name)!r}: must be a dict of "
                                 f"settings, e.g. {name}={{}}")
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones={self.milestones!r}: must be a list of fractions "
                             "of steps, e.g. milestones=(0.6, 0.9)")
        # A checkpoint stores the milestones as a list: one type, so that resume compares.
        self.milestones = tuple(number("milestones", m, 0.0, 1.0) for m in self.milestones)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones={self.milestones}: must rise, e.g. (0.6, 0.9)")


# The settings of a run that take one of a few words.
TRAIN_CHOICES: dict[str, tuple[str, ...]] = {
    "cache": ("memory", "disk", "none"), "optimizer": ("sgd", "adamw"),
    "schedule": ("step", "cosine"), "amp": ("auto", "bf16", "fp16", "off")}


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # CPU-friendly: the tiny backbone on generated shapes (see `make demo`).
    "shapes": dict(dataset="shapes", image_size=128, model=dict(preset="tiny"),
                   steps=1500, batch_size=16, optimizer="sgd", lr=0.01, warmup_steps=100,
                   eval_every=500, eval_images=200, checkpoint_every=100),
    # `make demo`: shapes with the two largest gains of notebook 08, center sampling and the
    # paper's size ranges halved for 128-px images (the paper's send nothing to P5 at 128
    # px), four times the rate, 1000 steps (bench/bench_demo.py: what each change does).
    # The notebooks keep the plain rules, which 08 measures against.
    "demo": dict(dataset="shapes", image_size=128,
                 model=dict(preset="tiny", center_sampling_radius=1.5,
                            size_ranges=((0, 32), (32, 64), (64, math.inf))),
                 steps=1000, batch_size=16, optimizer="sgd", lr=0.04, warmup_steps=100,
                 checkpoint_every=100),
    # EECS 498-007 A4: RegNetX-400MF (ImageNet weights), 224 px, batch 16, SGD lr 8e-3,
    # momentum 0.9, weight decay 1e-4, 9000 iterations, lr x0.1 at 60% and 90%.
    "voc2007-tiny": dict(dataset="voc2007-tiny", image_size=224, val_split="val",
                         model=dict(preset="course", pretrained=True),
                         steps=9000, batch_size=16, optimizer="sgd", lr=8e-3, warmup_steps=0,
                         milestones=(0.6, 0.9), num_workers=2, eval_every=1000,
                         checkpoint_every=250),
    # The paper's detector: ResNet-50, P3-P7, GIoU, center sampling, 1x schedule shape.
    "paper": dict(dataset="voc2007-tiny", image_size=512,
                  model=dict(preset="paper", pretrained=True),
                  steps=18000, batch_size=16, optimizer="sgd", lr=0.01, warmup_steps=500,
                  warmup_factor=1 / 3, milestones=(2 / 3, 8 / 9), num_workers=4,
                  eval_every=2000, checkpoint_every=500),
}


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of training preset ``name`` (``"shapes"``, ``"demo"``,
    ``"voc2007-tiny"``, ``"paper"``), with ``overrides`` (its field names) applied.

    ``model`` overrides are merged into the preset's model arguments, not substituted.
    """
    one_of("preset", name, tuple(TRAIN_PRESETS))
    return config_with(TRAIN_PRESETS[name], **{"preset": name, "out": f"runs/{name}",
                                               **overrides})


def config_with(values: dict[str, Any], **overrides: Any) -> TrainConfig:
    """The :class:`TrainConfig` of ``values`` (a preset, or a checkpoint's saved config) with
    ``overrides`` on top; ``model`` overrides are merged into ``values["model"]``.

    Raises:
        ValueError: an override is not a field of :class:`TrainConfig`, or a value is bad.
    """
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; TrainConfig has {sorted(known)}")
    model = {**values.get("model", {}), **overrides.pop("model", {})}
    return TrainConfig(**{**values, **overrides, "model": model})


def model_config(cfg: TrainConfig, num_classes: int) -> FCOSConfig:
    """The :class:`FCOSConfig` of a run: ``cfg.model`` names a ``preset`` (with overrides)
    or holds the fields themselves."""
    args = dict(cfg.model)
    if "preset" in args:
        return model_preset(args.pop("preset"), num_classes, **args)
    return FCOSConfig(num_classes=num_classes, **args)

