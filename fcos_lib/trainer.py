"""The training loop: one run's model, optimizer, schedule and data, stepped and saved.

``Trainer(cfg, model, train_set).run()`` trains ``model`` (already on its device) as
:class:`fcos_lib.config.TrainConfig` says, and returns the path of ``<out>/checkpoint.pt``;
:func:`fcos_lib.train.train` builds those three from the config alone. What makes it robust:

- Exact resume: a checkpoint holds every state the next step depends on (weights, optimizer
  moments, schedule position, scaler, random states); the batches come from
  :class:`fcos_lib.distributed.StepBatchSampler`, whose batch ``s`` does not depend on where
  the run started. Loading a checkpoint and going on gives the weights of a run never stopped.
- Ctrl-C saves the last finished step; a kill loses at most ``checkpoint_every`` steps; the
  checkpoint file is replaced atomically, so it is never half written.
- A non-finite loss stops the run before it touches the weights, and says which step.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fcos_lib.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fcos_lib.config import TrainConfig
from fcos_lib.data import collate
from fcos_lib.distributed import DistInfo, StepBatchSampler, any_process, barrier
from fcos_lib.optim import amp_dtype, build_optimizer, lr_factor
from fcos_lib.runlog import append_record, truncate_metrics


class NonFiniteLossError(RuntimeError):
    """The loss became inf or NaN; the run stopped, its last checkpoint kept."""


class Trainer:
    """One run: a config, a model on its device and a training set; :meth:`run` trains it.

    Args:
        cfg: the run's settings (optimizer, schedule, steps, batch size, where to save).
        model: the detector, on the device to train on (the trainer follows the model, and
            ``cfg.device`` is read only by :func:`fcos_lib.train.train`, which places it);
            ``model(images, targets)`` returns the loss dict; ``model.config`` (an
            ``FCOSConfig``) goes into the checkpoints.
        train_set: map-style dataset of ``(image (3, H, W), target)`` with ``class_names``.
        evaluate: ``evaluate(model) -> {"map50": ...}``, called on rank 0 every
            ``cfg.eval_every`` steps and at the end (None: no evaluation).
        on_log: called on rank 0 with each metrics record.
        progress: show a tqdm bar (rank 0 only).
        info: this process's place among the processes (default: the only one).
    """

    def __init__(self, cfg: TrainConfig, model: nn.Module, train_set: Dataset, *,
                 evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                 on_log: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
                 info: DistInfo | None = None):
        info = info or DistInfo()
        if cfg.batch_size % info.world_size:
            raise ValueError(f"batch_size={cfg.batch_size} does not split evenly over "
                             f"{info.world_size} processes")
        self.cfg, self.model, self.train_set, self.info = cfg, model, train_set, info
        self.evaluate, self.on_log = evaluate, on_log
        self.device = next(model.parameters()).device
        self.class_names = list(train_set.class_names)
        self.progress = progress and info.is_main
        self.out = Path(cfg.out)
        self.path = self.out / "checkpoint.pt"
        self.net = model  # what one_step calls: run() wraps it in DDP over several processes
        self.optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay,
                                         cfg.momentum)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, cfg))
        self.dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.dtype == torch.float16)
        self.step, self.seconds = 0, 0.0
        self.saved_step: int | None = None
        self.updating = False  # True while the weights are being changed: no saving then

    # -------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        """The checkpoint dict of the current step (see ``docs/design.md``)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "rng": rng_state(), "train_seconds": self.seconds,
                "config": {"train": asdict(self.cfg), "model": asdict(self.model.config),
                           "class_names": list(self.class_names)}}

    def save(self) -> None:
        """Write the checkpoint of the current step (rank 0), atomically."""
        if self.info.is_main:
            save_checkpoint(self.state(), self.path)
        self.saved_step = self.step

    def restore(self) -> None:
        """Continue from ``<out>/checkpoint.pt``: every state, the step, the clock."""
        state = load_checkpoint(self.path, self.device)
        check_same_run(self.cfg, state["config"]["train"], self.path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.step = self.saved_step = int(state["step"])
        self.seconds = float(state.get("train_seconds", 0.0))

    # -------------------------------------------------------------- the run

    def run(self, resume: bool = False) -> Path:
        """Train up to ``cfg.steps``; return the checkpoint's path."""
        if self.path.exists() and not resume:
            raise FileExistsError(f"{self.path} exists: resume it (--resume, resume=True) or "
                                  "choose another output folder")
        if resume and self.path.exists():
            self.restore()
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.out, self.step)
        if self.step >= self.cfg.steps:
            return self.path
        if self.info.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.model.train()
        try:
            self.loop()
        except KeyboardInterrupt:
            if self.saved_step != self.step and not self.updating:
                self.save()
                if self.info.is_main:
                    print(f"\ninterrupted: checkpoint of step {self.step} saved in "
                          f"{self.path}; run again with --resume (resume=True) to continue")
            raise
        return self.path

    def batches(self):
        """An iterator over the training batches from the current step on."""
        return iter(training_loader(self.train_set, self.cfg, self.step, self.info,
                                    pin_memory=self.device.type == "cuda"))

    def loop(self) -> None:
        """Step until ``cfg.steps``: log, save and evaluate on the way."""
        cfg = self.cfg
        batches = self.batches()
        window: dict[str, float] = {}
        window_start, window_seconds = self.step, 0.0
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step",
                   dynamic_ncols=True, **({} if self.progress else {"disable": True}))
        with bar:
            while self.step < cfg.steps:
                start = time.perf_counter()
                values, lr = self.one_step(next(batches))
                took = time.perf_counter() - start
                self.seconds += took
                window_seconds += took
                for k, v in values.items():
                    window[k] = window.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(loss=f"{values['total']:.3f}", refresh=False)
                last = self.step == cfg.steps
                if self.step % cfg.log_every == 0 or last:
                    n = self.step - window_start
                    self.log({"step": self.step, "lr": lr,
                              **{k: v / n for k, v in window.items()},
                              "steps_per_s": n / max(window_seconds, 1e-9),
                              "train_seconds": self.seconds})
                    window, window_start, window_seconds = {}, self.step, 0.0
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save()
                if self.evaluate and ((cfg.eval_every and self.step % cfg.eval_every == 0)
                                      or last):
                    if self.info.is_main:
                        self.log({"step": self.step, **self.evaluate(self.model)})
                    barrier()

    def one_step(self, batch) -> tuple[dict[str, float], float]:
        """Forward, non-finite check, backward, clip, update: the losses and the lr used."""
        images, targets = batch
        images = images.to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = [{k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v
                    for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            losses = self.net(images, targets)
        # One device-to-host copy for all the losses (each float() would wait for the GPU).
        values = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()])
                          .tolist()))
        if any_process(not math.isfinite(values["total"]), self.device):
            self.stop_non_finite(values)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total"]).backward()
        if self.cfg.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.updating = True
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.updating = False
        return values, lr

    def stop_non_finite(self, values: dict[str, float]) -> None:
        """Raise :class:`NonFiniteLossError` naming the step, the losses and the fix."""
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        kept = (f"the last good checkpoint, {self.path} (step {self.saved_step}), is kept"
                if self.saved_step is not None else "no checkpoint had been written yet")
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step + 1} ({parts}): training stopped; {kept}. "
            f"Lower the learning rate (lr={self.cfg.lr}), lengthen the warm-up or clip the "
            "gradients, then resume.")

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``<out>/metrics.jsonl`` and pass it to ``on_log`` (rank 0)."""
        if not self.info.is_main:
            return
        append_record(self.out, record)
        if self.on_log is not None:
            self.on_log(record)


def training_loader(train_set: Dataset, cfg: TrainConfig, step: int = 0,
                    info: DistInfo | None = None, pin_memory: bool = False) -> DataLoader:
    """The loader of a run's training batches from ``step`` on (this process's share):
    ``cfg.batch_size`` images per step over all processes, ``cfg.num_workers`` workers."""
    info = info or DistInfo()
    sampler = StepBatchSampler(len(train_set), cfg.batch_size // info.world_size,
                               cfg.seed, info.rank, info.world_size, step)
    # The loader's own generator, so that making it draws nothing from the global RNG,
    # which drives the random flips (in this process when num_workers=0: then a resumed
    # run flips exactly as an uninterrupted one; worker processes reseed per iterator).
    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    return DataLoader(train_set, batch_sampler=sampler, collate_fn=collate,
                      num_workers=cfg.num_workers, pin_memory=pin_memory, generator=generator)


# Settings a resumed run may change: where it writes, how far it goes, where it runs and how
# often it reports. Any other change would make the checkpoint's states wrong for the run.
RESUMABLE_CHANGES = ("out", "steps", "device", "num_workers", "cache", "cache_dir",
                     "log_every", "eval_every", "eval_images", "checkpoint_every")


def check_same_run(cfg: TrainConfig, saved: dict[str, Any], path: Path) -> None:
    """Raise ValueError if ``cfg`` differs from the checkpoint's ``saved`` config in more
    than :data:`RESUMABLE_CHANGES`."""
    now = json.loads(json.dumps(asdict(cfg)))  # tuples become lists, as in ``saved``
    saved = json.loads(json.dumps(saved))
    differ = [f"{k}: {saved.get(k)!r} in the checkpoint, {now[k]!r} now" for k in now
              if k not in RESUMABLE_CHANGES and now[k] != saved.get(k)]
    if differ:
        raise ValueError(f"cannot resume {path} with changed settings ({'; '.join(differ)}): "
                         "resume with the checkpoint's settings, or train the new settings "
                         "in another output folder (--out) or from scratch")
