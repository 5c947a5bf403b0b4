"""Training: a config, presets, the loop, checkpoints that resume exactly, and ``load_model``.

``train(get_preset("shapes", out="runs/shapes"))`` trains and returns the path of the last
checkpoint, ``<out>/checkpoint.pt``; ``load_model(path)`` rebuilds the trained model. The
loop is the course's recipe (SGD with momentum and weight decay, step decay; the paper's
linear warm-up in front) with what a real run needs:

- mixed precision on CUDA (bfloat16 where the GPU has it; else float16 with a gradient
  scaler, which skips the steps whose gradients overflowed), gradient clipping;
- a checkpoint every ``checkpoint_every`` steps, on Ctrl-C and at the end, written
  atomically, with every random state, so that ``resume=True`` continues as if never stopped;
- a stop at the first non-finite loss, naming the step, the last good checkpoint kept;
- ``<out>/metrics.jsonl``: one JSON line per logged step (losses, learning rate, time) and
  per evaluation (mAP@0.5 on the validation split);
- several processes with ``torchrun`` (see :mod:`fcos_lib.distributed`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcos_lib.checkpoint import load_checkpoint
from fcos_lib.distributed import barrier, init_distributed, shutdown_distributed
from fcos_lib.env import pick_device, seed_everything
from fcos_lib.trainer import NonFiniteLossError, Trainer, read_metrics

__all__ = ["TrainConfig", "PRESETS", "get_preset", "config_with", "train", "load_model",
           "evaluate_map", "NonFiniteLossError", "read_metrics", "main", "demo_main"]


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved in its checkpoints.

    Data: ``dataset`` and ``image_size`` (pixels, square) go to ``fcos_lib.data.build_dataset``
    with ``dataset_kwargs``; ``cache`` is ``"memory"``, ``"disk"`` (in ``cache_dir``) or
    ``"none"``. Model: ``FCOS`` keyword arguments in ``model``, or a model ``preset``
    name with overrides. Optimization: ``steps``
    optimizer steps of ``batch_size`` images (over all processes); ``optimizer`` ``"sgd"`` or
    ``"adamw"``; the learning rate rises linearly from ``lr * warmup_factor`` to ``lr`` over
    ``warmup_steps``, then ``schedule`` ``"step"`` multiplies it by ``gamma`` at each of the
    ``milestones`` (fractions of ``steps``) or ``"cosine"`` takes it down to 0;
    ``clip_grad_norm`` (None: off). ``amp``: ``"auto"`` (on CUDA only), ``"bf16"``,
    ``"fp16"`` or ``"off"``. Every ``log_every`` steps a metrics line, every ``eval_every``
    steps (0: only at the end) the mAP@0.5 on up to ``eval_images`` validation images,
    every ``checkpoint_every`` steps a checkpoint.
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
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r}: must be a whole number >= 1")
        for name in ("warmup_steps", "eval_every", "eval_images", "num_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r}: must be a whole number >= 0")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr={self.lr!r}: must be a number > 0, e.g. lr=0.01")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {allowed}")


# The settings that take one of a few words (checked by TrainConfig.__post_init__).
CHOICES: dict[str, tuple[str, ...]] = {
    "cache": ("memory", "disk", "none"), "optimizer": ("sgd", "adamw"),
    "schedule": ("step", "cosine"), "amp": ("auto", "bf16", "fp16", "off")}


PRESETS: dict[str, dict[str, Any]] = {
    # CPU-friendly: the tiny backbone on generated shapes (see `make demo`).
    "shapes": dict(dataset="shapes", image_size=128, model=dict(preset="tiny"),
                   steps=1500, batch_size=16, optimizer="sgd", lr=0.01, warmup_steps=100,
                   eval_every=500, eval_images=200, checkpoint_every=100),
    # EECS 498-007 A4: RegNetX-400MF (ImageNet weights), 224 px, batch 16, SGD lr 8e-3,
    # momentum 0.9, weight decay 1e-4, 9000 iterations, lr x0.1 at 60% and 90%.
    "voc2007-tiny": dict(dataset="voc2007-tiny", image_size=224, val_split="val",
                         # the course's network (see fcos_lib.model.PRESETS["course"])
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
    """The :class:`TrainConfig` of preset ``name`` (``"shapes"``, ``"voc2007-tiny"``,
    ``"paper"``), with ``overrides`` (field names of :class:`TrainConfig`) applied.

    ``model`` overrides are merged into the preset's model arguments, not substituted.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {sorted(PRESETS)}")
    return config_with(PRESETS[name], **{"preset": name, "out": f"runs/{name}", **overrides})


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


# ------------------------------------------------------------------ building blocks


def build_datasets(cfg: TrainConfig, splits: tuple[str, ...] = ("train", "val"),
                   progress: bool = True) -> list:
    """The datasets of ``splits`` (``"val"`` means ``cfg.val_split``), cached as
    ``cfg.cache`` says."""
    from fcos_lib.data import build_dataset
    from fcos_lib.data.cache import DecodedCache

    out = []
    for split in splits:
        name = cfg.val_split if split == "val" else split
        data = build_dataset(cfg.dataset, name, image_size=cfg.image_size, **cfg.dataset_kwargs)
        if cfg.cache != "none" and hasattr(data, "load"):
            data = DecodedCache(data, cfg.cache_dir if cfg.cache == "disk" else None,
                                progress=progress)
        out.append(data)
    return out


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """The model of ``cfg.model``: ``FCOS.from_preset(preset, num_classes, **rest)`` when it
    names a ``preset`` (see ``fcos_lib.model.PRESETS``), else ``FCOS(num_classes, **cfg.model)``."""
    from fcos_lib.model import FCOS

    args = dict(cfg.model)
    if "preset" in args:
        return FCOS.from_preset(args.pop("preset"), num_classes, **args)
    return FCOS(num_classes=num_classes, **args)


def load_model(path: str | Path, map_location: str | torch.device | None = None
               ) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint, in eval mode, and the checkpoint's config dict.

    Args:
        path: a checkpoint written by :func:`train`.
        map_location: where the weights go (default: the CPU).

    Returns:
        ``(model, config)``; ``config`` has ``train`` (the :class:`TrainConfig` as a dict),
        ``model`` (``FCOS`` arguments), ``class_names`` and ``step``.
    """
    from fcos_lib.model import FCOS

    state = load_checkpoint(path, map_location or "cpu")
    config = state["config"]
    model = FCOS(**{**config["model"], "pretrained": False})  # the weights are in the file
    model.load_state_dict(state["model"])
    return model.to(map_location or "cpu").eval(), {**config, "step": state["step"]}


def evaluate_map(model: nn.Module, dataset, max_images: int | None = None,
                 batch_size: int = 16) -> dict[str, float]:
    """mAP@0.5 (VOC area method) of ``model`` (on its own device) on the first ``max_images``
    of ``dataset``."""
    from fcos_lib.evaluate import mean_average_precision
    from fcos_lib.inference import predict_dataset

    predictions, targets = predict_dataset(model, dataset, batch_size, max_images)
    result = mean_average_precision(predictions, targets, iou_threshold=0.5, method="area")
    return {"map50": float(result["map"])}


# ------------------------------------------------------------------ the loop


def train(cfg: TrainConfig, *, resume: bool = False,
          on_log: Callable[[dict[str, Any]], None] | None = None, progress: bool = True) -> Path:
    """Train as ``cfg`` says; return the path of the last checkpoint, ``<out>/checkpoint.pt``.

    Args:
        cfg: the run (see :class:`TrainConfig`).
        resume: continue from ``<out>/checkpoint.pt`` if it exists (else start afresh);
            without it an existing checkpoint is an error, never silently overwritten.
        on_log: called on rank 0 with every metrics record (the dicts of ``metrics.jsonl``),
            e.g. to draw a live loss plot.
        progress: show a tqdm bar with the running losses.

    Raises:
        ValueError: resuming with settings other than the checkpoint's (only ``steps``,
            ``device``, ``num_workers``, caching and how often it logs, evaluates and saves
            may change).
        NonFiniteLossError: the loss became inf or NaN (the last checkpoint is kept).
        KeyboardInterrupt: after saving a checkpoint of the last finished step.
    """
    device = pick_device(cfg.device)
    owns_group = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    info = init_distributed(device.type)
    if info.active and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        seed_everything(cfg.seed)
        if not info.is_main:
            barrier()  # rank 0 fills an on-disk cache first; the others then read it
        train_set, val_set = build_datasets(cfg, progress=progress and info.is_main)
        if info.is_main:
            barrier()
        model = build_model(cfg, len(train_set.class_names)).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        from fcos_lib.data import collate

        def evaluate(net: nn.Module) -> dict[str, float]:
            return evaluate_map(net, val_set, cfg.eval_images)

        trainer = Trainer(cfg, model, train_set, collate, evaluate, device, info,
                          list(train_set.class_names), on_log, progress)
        path = trainer.run(resume)
        if info.is_main:
            plot_metrics(cfg.out)
        return path
    finally:
        if owns_group:
            shutdown_distributed()


def plot_metrics(out: str | Path) -> Path:
    """Draw the loss curves (and mAP points) of ``<out>/metrics.jsonl`` to
    ``<out>/loss_curve.png``; return that path."""
    import matplotlib.pyplot as plt

    from fcos_lib.viz import plot_loss_curves

    fig = plot_loss_curves(read_metrics(out))
    path = Path(out) / "loss_curve.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


class LiveLossPlot:
    """An ``on_log`` callback for notebooks: the loss curves, redrawn in place as it trains.

    Args:
        every: redraw after this many loss records (evaluation records always redraw).
        records: earlier records to start from (e.g. ``read_metrics(out)`` when resuming).
    """

    def __init__(self, every: int = 5, records: list[dict[str, Any]] | None = None):
        self.every, self.records, self.handle = every, list(records or []), None

    def __call__(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if "total" in record and sum("total" in r for r in self.records) % self.every:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        from fcos_lib.viz import plot_loss_curves

        fig = plot_loss_curves(self.records)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib train``: see :mod:`fcos_lib.train_cli`."""
    from fcos_lib.train_cli import train_main

    return train_main(argv)


def demo_main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib demo``: see :mod:`fcos_lib.demo`."""
    from fcos_lib.demo import main as demo

    return demo(argv)
