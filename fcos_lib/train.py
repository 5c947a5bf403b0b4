"""Training from a config: ``train(get_preset("shapes", out="runs/shapes"))``.

:func:`train` builds what a :class:`fcos_lib.config.TrainConfig` describes (the datasets,
the model on the best device, an evaluation on the validation split) and hands them to a
:class:`fcos_lib.trainer.Trainer`, which runs the loop: the course's recipe (SGD with
momentum and weight decay, step decay; the paper's linear warm-up in front) with what a real
run needs:

- mixed precision on CUDA (bfloat16 where the GPU has it; else float16 with a gradient
  scaler, which skips the steps whose gradients overflowed), gradient clipping;
- a checkpoint every ``checkpoint_every`` steps, on Ctrl-C and at the end, written
  atomically, with every random state, so that ``resume=True`` continues as if never stopped;
- a stop at the first non-finite loss, naming the step, the last good checkpoint kept;
- ``<out>/metrics.jsonl`` (:mod:`fcos_lib.runlog`): the losses, learning rate and time of the
  logged steps, and the mAP@0.5 of each evaluation; ``<out>/loss_curve.png`` at the end;
- several processes with ``torchrun`` (see :mod:`fcos_lib.distributed`).

``FCOS.from_checkpoint(path)`` loads the trained model back.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fcos_lib.config import TrainConfig, model_config
from fcos_lib.curves import save_loss_curve
from fcos_lib.data import build_dataset
from fcos_lib.data.cache import DecodedCache
from fcos_lib.distributed import barrier, init_distributed, shutdown_distributed
from fcos_lib.env import pick_device, seed_everything
from fcos_lib.evaluate import evaluate_model, split_in_words
from fcos_lib.model import FCOS
from fcos_lib.pieces import Pieces
from fcos_lib.trainer import Trainer

__all__ = ["train", "build_datasets", "build_model"]


def build_datasets(cfg: TrainConfig, splits: tuple[str, ...] = ("train", "val"),
                   progress: bool = True) -> list:
    """The datasets of ``splits`` (``"val"`` means ``cfg.val_split``), cached as
    ``cfg.cache`` says."""
    out = []
    for split in splits:
        name = cfg.val_split if split == "val" else split
        data = build_dataset(cfg.dataset, name, image_size=cfg.image_size, **cfg.dataset_kwargs)
        if cfg.cache != "none" and hasattr(data, "load"):
            data = DecodedCache(data, cfg.cache_dir if cfg.cache == "disk" else None,
                                progress=progress)
        out.append(data)
    return out


def check_not_empty(cfg: TrainConfig, train_set: Dataset, val_set: Dataset) -> None:
    """Raise ValueError, before any step, when the training split or the validation split
    (evaluated every ``cfg.eval_every`` steps and at the end) has no images, naming the
    dataset, the split and the file that lists it."""
    for data, role, setting in ((train_set, "training", "the dataset"),
                                (val_set, "validation", f"--set val_split=... (now "
                                                        f"{cfg.val_split!r})")):
        if not len(data):
            raise ValueError(f"{split_in_words(data)} has no images, and it is the run's "
                             f"{role} split: add images to it, or choose another with "
                             f"{setting}")


def build_model(cfg: TrainConfig, num_classes: int) -> FCOS:
    """The model of ``cfg.model`` (a model preset with overrides, or the fields of an
    :class:`fcos_lib.config.FCOSConfig`), on the CPU."""
    return FCOS.from_config(model_config(cfg, num_classes))


def train(cfg: TrainConfig, *, resume: bool = False, change_schedule: bool = False,
          on_log: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
          pieces: Pieces | None = None) -> Path:
    """Train as ``cfg`` says; return the path of the last checkpoint, ``<out>/checkpoint.pt``.

    Args:
        cfg: the run (see :class:`fcos_lib.config.TrainConfig`).
        resume: continue from ``<out>/checkpoint.pt`` if it exists (else start afresh);
            without it an existing checkpoint is an error, never silently overwritten.
        change_schedule: when resuming, take this ``cfg``'s learning rate and schedule
            (``fcos_lib.trainer.SCHEDULE_CHANGES``) in place of the checkpoint's, and record
            the change in ``metrics.jsonl`` (after a non-finite loss, say).
        on_log: called on rank 0 with every metrics record (the dicts of ``metrics.jsonl``),
            e.g. :class:`fcos_lib.curves.LiveLossPlot` to draw the losses as they come.
        progress: show a tqdm bar with the running losses.
        pieces: the assignment, classification loss and NMS to train and evaluate with (see
            :mod:`fcos_lib.pieces`; default: the library's). They are not saved.

    Raises:
        ValueError: resuming with settings other than the checkpoint's (only ``steps``,
            ``device``, ``num_workers``, caching and how often it logs, evaluates and saves
            may change).
        fcos_lib.trainer.NonFiniteLossError: the loss or its gradient became inf or NaN (the
            last checkpoint is kept).
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
        check_not_empty(cfg, train_set, val_set)
        model = build_model(cfg, len(train_set.class_names)).to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if pieces is not None:
            model.use(pieces)

        def evaluate(net: torch.nn.Module) -> dict[str, float]:
            return {"map50": evaluate_model(net, val_set, max_images=cfg.eval_images)["map"]}

        trainer = Trainer(cfg, model, train_set, evaluate=evaluate, on_log=on_log,
                          progress=progress, info=info)
        path = trainer.run(resume, change_schedule)
        if info.is_main:
            save_loss_curve(cfg.out)
        return path
    finally:
        if owns_group:
            shutdown_distributed()
