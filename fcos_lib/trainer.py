"""The training loop: one run's model, optimizer, schedule and data, stepped and saved.

Why this module is longer than 300 lines: the loop and the paths out of it (resume, Ctrl-C
and SIGTERM, non-finite values, a changed schedule) share the trainer's state; split, each
piece would reach into the others'.

``Trainer(cfg, model, train_set).run()`` trains ``model`` (already on its device) as
:class:`fcos_lib.config.TrainConfig` says, and returns the path of ``<out>/checkpoint.pt``;
:func:`fcos_lib.train.train` builds those three from the config alone. What makes it robust:

- Exact resume: a checkpoint holds every state the next step depends on (weights, optimizer
  moments, schedule position, scaler, random states); the batches come from
  :class:`fcos_lib.distributed.StepBatchSampler`, whose batch ``s`` does not depend on where
  the run started. Loading a checkpoint and going on gives the weights of a run never stopped.
- Ctrl-C, and SIGTERM (what Colab and job schedulers send), only raise a flag: the step under
  way finishes, is logged and saved, and the run stops (so the resume is exact). A second
  Ctrl-C stops at once, keeping the last checkpoint, as does a kill (losing at most
  ``checkpoint_every`` steps); the checkpoint file is replaced atomically, never half written.
- A non-finite loss or gradient stops the run before it touches the weights, and says which
  step; weights that are not finite are never saved. To go on with a smaller learning rate,
  resume with ``change_schedule=True`` (``--change-schedule``), which the log records.
"""
from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fcos_lib.checkpoint import (
    check_layout,
    load_checkpoint,
    load_weights,
    resuming,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fcos_lib.config import TrainConfig
from fcos_lib.data import collate
from fcos_lib.distributed import DistInfo, StepBatchSampler, any_process, barrier
from fcos_lib.files import folder_lock, remove_leftovers
from fcos_lib.optim import amp_dtype, build_optimizer, lr_factor
from fcos_lib.runlog import append_record, truncate_metrics


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled as Ctrl-C is, the step under way finished and saved."""


class NonFiniteLossError(RuntimeError):
    """The loss or its gradient became inf or NaN; the run stopped, its last checkpoint kept."""


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
        self.rng: dict[str, Any] | None = None  # the random states after the last finished step
        # The one stop flag: the signal (SIGINT or SIGTERM) that asked the run to stop. The
        # handler only sets it; the loop reads it between steps.
        self.stop_signal: int | None = None

    # -------------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        """The checkpoint dict of the current step (see ``docs/design.md``)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "step": self.step, "rng": self.rng or rng_state(), "train_seconds": self.seconds,
                "config": {"train": asdict(self.cfg), "model": asdict(self.model.config),
                           "class_names": list(self.class_names)}}

    def save(self) -> None:
        """Write the checkpoint of the current step (rank 0), atomically; never weights that
        are not finite (the last good checkpoint stays)."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            self.stop_non_finite({}, "weights")
        if self.info.is_main:
            save_checkpoint(self.state(), self.path)
        self.saved_step = self.step

    def restore(self, change_schedule: bool = False) -> None:
        """Continue from ``<out>/checkpoint.pt``: every state, the step, the clock; with
        ``change_schedule``, this run's :data:`SCHEDULE_CHANGES` in place of the saved ones."""
        state = load_checkpoint(self.path, self.device)
        check_layout(state, self.path)          # a run's config and weights, not another's
        saved = json.loads(json.dumps(state["config"]["train"]))    # tuples as lists
        check_same_run(self.cfg, saved, self.path, change_schedule)
        with resuming(state, self.path):        # another program's: one line, not a trace
            load_weights(self.model, state["model"], self.path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            self.step = self.saved_step = int(state["step"])
        self.seconds = float(state.get("train_seconds", 0.0))
        changed = {k: [saved.get(k), v] for k, v in json.loads(json.dumps(asdict(self.cfg)))
                   .items() if k in SCHEDULE_CHANGES and v != saved.get(k)}
        if changed:   # the new base rate, at the schedule's present step
            self.scheduler.base_lrs = [self.cfg.lr for _ in self.optimizer.param_groups]
            for group in self.optimizer.param_groups:
                group["initial_lr"] = self.cfg.lr
                group["lr"] = self.cfg.lr * lr_factor(self.step, self.cfg)
            self.log({"step": self.step, "changed": changed})

    # -------------------------------------------------------------- the run

    def run(self, resume: bool = False, change_schedule: bool = False) -> Path:
        """Train up to ``cfg.steps``; return the checkpoint's path. ``resume``: from the
        checkpoint if there is one; ``change_schedule``: allow the settings of
        :data:`SCHEDULE_CHANGES` to differ from the checkpoint's. The folder is locked
        meanwhile: a second process on it gets ``fcos_lib.files.FolderBusyError``."""
        with folder_lock(self.out) if self.info.is_main else nullcontext():
            return self._run(resume, change_schedule)

    def _run(self, resume: bool, change_schedule: bool) -> Path:
        """:meth:`run`, the folder held."""
        if self.path.exists() and not resume:
            raise FileExistsError(f"{self.path} exists: resume it (--resume, resume=True) or "
                                  "choose another output folder")
        if resume and self.path.exists():
            self.restore(change_schedule)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            truncate_metrics(self.out, self.step)
            remove_leftovers(self.out)    # half a checkpoint from a run killed while saving
        if self.step >= self.cfg.steps:
            return self.path
        if self.info.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.model.train()
        previous = self._stop_on_signals()
        try:
            stopped = self.loop()
        except KeyboardInterrupt:   # a second Ctrl-C, or one raised where no handler was set
            if self.info.is_main:
                kept = (f"the checkpoint of step {self.saved_step} in {self.path} is kept; run "
                        "again with --resume (resume=True) to continue from it"
                        if self.saved_step is not None else "no checkpoint had been written")
                print(f"\ninterrupted after step {self.step}: {kept}")
            raise
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        if stopped:
            raise Terminated() if self.stop_signal == signal.SIGTERM else KeyboardInterrupt()
        return self.path

    def _stop_on_signals(self) -> dict:
        """Ctrl-C and SIGTERM set :attr:`stop_signal` (a second one stops at once, as Python
        does); returns the handlers replaced."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict = {}

        def stop(number: int, frame: FrameType | None) -> None:
            if self.stop_signal is not None:      # asked twice: stop now
                raise Terminated() if number == signal.SIGTERM else KeyboardInterrupt()
            self.stop_signal = number
            if self.info.is_main:
                print(f"\nstopping after step {self.step + 1} (Ctrl-C again to stop at once)",
                      flush=True)

        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, stop)
        return previous

    def stop_here(self) -> None:
        """Asked to stop (on any process): save this finished step and say so; :meth:`run`
        then raises KeyboardInterrupt, or :class:`Terminated` for SIGTERM."""
        if self.saved_step != self.step:
            self.save()
        if self.info.is_main:
            print(f"\n{'terminated' if self.stop_signal == signal.SIGTERM else 'interrupted'}"
                  f": checkpoint of step {self.step} saved in {self.path}; run again with "
                  "--resume (resume=True) to continue")

    def batches(self) -> Iterator:
        """An iterator over the training batches from the current step on."""
        return iter(training_loader(self.train_set, self.cfg, self.step, self.info,
                                    pin_memory=self.device.type == "cuda"))

    def loop(self) -> bool:
        """Step until ``cfg.steps``: log, save and evaluate on the way; True when it stopped
        early because a process was asked to (:attr:`stop_signal`)."""
        cfg = self.cfg
        batches = self.batches()
        self.rng = rng_state()
        window: dict[str, float] = {}
        window_start, window_seconds = self.step, 0.0
        bar = tqdm(total=cfg.steps, initial=self.step, desc="training", unit="step",
                   dynamic_ncols=True, **({} if self.progress else {"disable": True}))
        with bar:
            while self.step < cfg.steps:
                start = time.perf_counter()
                values, lr = self.one_step(next(batches))
                self.rng = rng_state()    # before the next batch draws its flips
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
                if any_process(self.stop_signal is not None, self.device):
                    self.stop_here()      # the step, its record and checkpoint are whole
                    return True
                if self.evaluate and ((cfg.eval_every and self.step % cfg.eval_every == 0)
                                      or last):
                    if self.info.is_main:
                        self.log({"step": self.step, **self.evaluate(self.model)})
                    barrier()
        return False

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
        self.scaler.unscale_(self.optimizer)     # (nothing to undo without fp16's scaling)
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(),
                                              self.cfg.clip_grad_norm or math.inf))
        # fp16's scaler skips a step whose gradient overflowed, by design; otherwise stop.
        if not self.scaler.is_enabled() and any_process(not math.isfinite(norm), self.device):
            self.stop_non_finite({**values, "gradient norm": norm}, "gradient")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return values, lr

    def stop_non_finite(self, values: dict[str, float], what: str = "loss") -> None:
        """Raise :class:`NonFiniteLossError` naming the step, the values and the fixes that
        can work (:func:`non_finite_advice`)."""
        parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        kept = (f"the last good checkpoint, {self.path} (step {self.saved_step}), is kept"
                if self.saved_step is not None else "no checkpoint had been written yet")
        step = self.step + (what != "weights")
        advice = non_finite_advice(self.cfg, self.step, what,
                                   half=self.dtype == torch.float16,
                                   kept=self.saved_step is not None)
        raise NonFiniteLossError(f"non-finite {what} at step {step}"
                                 f"{f' ({parts})' if parts else ''}: training stopped; {kept}. "
                                 f"{advice}")

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


# Beyond these, a setting that --change-schedule cannot change may be why a run diverged.
USUAL_WEIGHT_DECAY, USUAL_MOMENTUM = 0.1, 0.99


def non_finite_advice(cfg: TrainConfig, step: int, what: str = "loss", *, half: bool = False,
                      kept: bool = True) -> str:
    """What can fix a run stopped by a non-finite ``what`` (``"loss"``, ``"gradient"`` or
    ``"weights"``) after ``step`` finished steps, naming only switches that can: not the
    learning rate for a first step (no update has happened yet: the data or the model is
    the cause) nor for float16 overflowing, and the settings that resuming cannot change
    (``amp``, ``weight_decay``, ``momentum``) as such.

    >>> non_finite_advice(TrainConfig(), 0)[:60]
    'Nothing was updated yet, so the learning rate is not the cau'
    """
    afresh = "train afresh (another --out, or --overwrite)"
    if step == 0 and what != "weights":
        return ("Nothing was updated yet, so the learning rate is not the cause: look at the "
                "data (images or boxes that are not finite, a dataset_kwargs setting) and the "
                f"model's settings (model.*), then {afresh}.")
    if half and what == "loss":
        return ("float16 (amp) overflowed in the forward pass: train with --set amp=bf16 on a "
                f"GPU that has it, or amp=off; amp cannot change on resume, so {afresh}.")
    fixes = [f"lower the learning rate (now lr={cfg.lr:g}; e.g. --set lr={cfg.lr / 5:g})"]
    if step <= 2 * max(cfg.warmup_steps, 50):
        fixes.append(f"lengthen the warm-up (warmup_steps={cfg.warmup_steps})")
    if cfg.clip_grad_norm is None and what != "gradient":
        fixes.append("clip the gradients (--set clip_grad_norm=10)")
    then = ("resume with the changed settings: --resume --change-schedule (train(..., "
            "resume=True, change_schedule=True))" if kept else f"{afresh} with them")
    text = f"{', '.join(fixes[:-1]) + ' or ' if len(fixes) > 1 else ''}{fixes[-1]}, then {then}."
    text = text[0].upper() + text[1:]
    odd = [f"weight_decay={cfg.weight_decay:g} (usual: 1e-4 with SGD, up to 0.05 with AdamW)"
           ] if cfg.weight_decay > USUAL_WEIGHT_DECAY else []
    if cfg.optimizer == "sgd" and cfg.momentum > USUAL_MOMENTUM:
        odd.append(f"momentum={cfg.momentum:g} (usual: 0.9)")
    if odd:
        text += (f" This run also has {' and '.join(odd)}, which resuming cannot change: if "
                 f"that is the cause, {afresh} with a usual value.")
    return text


# Settings a resumed run may change: where it writes, how far it goes, where it runs and how
# often it reports. Any other change would make the checkpoint's states wrong for the run.
RESUMABLE_CHANGES = ("out", "steps", "device", "num_workers", "cache", "cache_dir",
                     "log_every", "eval_every", "eval_images", "checkpoint_every")
# The schedule's settings, which a resume may change when asked to (after a non-finite loss).
SCHEDULE_CHANGES = ("lr", "warmup_steps", "warmup_factor", "schedule", "milestones", "gamma",
                    "clip_grad_norm")


def changed_settings(cfg: TrainConfig, saved: dict[str, Any], change_schedule: bool = False
                     ) -> dict[str, tuple[Any, Any]]:
    """The settings of ``cfg`` that differ from the checkpoint's ``saved`` config beyond
    :data:`RESUMABLE_CHANGES` (and :data:`SCHEDULE_CHANGES` with ``change_schedule``):
    name -> (the checkpoint's value, ``cfg``'s), in ``cfg``'s order."""
    now = json.loads(json.dumps(asdict(cfg)))  # tuples become lists, as in ``saved``
    saved = json.loads(json.dumps(saved))
    allowed = RESUMABLE_CHANGES + (SCHEDULE_CHANGES if change_schedule else ())
    return {k: (saved.get(k), now[k]) for k in now if k not in allowed and now[k] != saved.get(k)}


def check_same_run(cfg: TrainConfig, saved: dict[str, Any], path: Path,
                   change_schedule: bool = False) -> None:
    """Raise ValueError if ``cfg`` differs from the checkpoint's ``saved`` config in more
    than a resume may change (:func:`changed_settings`)."""
    differ = changed_settings(cfg, saved, change_schedule)
    if differ:
        said = "; ".join(f"{k}: {was!r} in the checkpoint, {now!r} now"
                         for k, (was, now) in differ.items())
        hint = (" To change the schedule (" + ", ".join(k for k in differ if k in
                SCHEDULE_CHANGES) + ") and go on, add --change-schedule "
                "(change_schedule=True)." if set(differ) <= set(SCHEDULE_CHANGES) else "")
        raise ValueError(f"cannot resume {path} with changed settings ({said}): resume with "
                         "the checkpoint's settings, or train the new settings in another "
                         f"output folder (--out) or from scratch.{hint}")
