"""The GPU check, for the first machine with a GPU: ``make gpu-check`` or
``python -m bench.gpu_check``.

On CUDA it trains the ``voc2007-tiny`` recipe (the course's: RegNetX-400MF, a 128-channel FPN
over P3-P5, batch 16 of 224 px, mixed precision: bf16 where the GPU has it, else fp16 with a
gradient scaler) for a few hundred steps on a generated VOC-format folder whose images have
VOC 2007's sizes, through the real training step (:meth:`fcos_lib.trainer.Trainer.one_step`)
and loader, and prints the step time, images per second, peak memory, the time each step
waited for data (and its share of the step), and the estimated time of the full 9000 steps,
against the goal: **9000 steps in under 15 minutes on a T4-class GPU** with **data loading at
most 5 % of a step** (the course, EECS 498-007 A4, expects its 9000 iterations to take "about
30 minutes on a K80 GPU"). The same figures with channels-last tensors, and for
torchvision's FCOS built with the same backbone, pyramid and head depth (its head has
GroupNorm, the course's has none), on the same batches. Then it runs notebooks 06 and 07 in
quick mode on CUDA under nbval. Nothing comes from the network: the backbone starts from
random weights, which changes no timing.

Without CUDA it says so, measures the data loader alone (CPU work, the same on any machine
with as many cores) and exits 0. ``--device cpu`` runs the CUDA path on the CPU: the tests do
that, with a small batch and a few steps.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from bench.vocfolder import VOC_SIZES, random_voc_images, write_voc_folder
from fcos_lib.config import TrainConfig, get_preset
from fcos_lib.optim import amp_dtype
from fcos_lib.train import build_datasets, build_model
from fcos_lib.trainer import Trainer, training_loader

ROOT = Path(__file__).resolve().parents[1]
GOAL_MINUTES, GOAL_WAIT = 15.0, 0.05


def make_voc_folder(root: Path, images: int, seed: int = 0) -> Path:
    """Write a VOC-format folder, ``root/VOCdevkit/VOC2007``, of ``images`` JPEGs of VOC's
    sizes with one to five boxes each, split into ``train`` (all) and ``val`` (the first
    eighth). Returns ``root``."""
    pictures = random_voc_images(images, seed)
    ids = list(pictures)
    write_voc_folder(root / "VOCdevkit" / "VOC2007", pictures,
                     {"train": ids, "val": ids[:max(1, images // 8)]})
    return root


@dataclass
class Timing:
    """Per-step figures of a measured stretch of training."""
    step_ms: float
    wait_ms: float
    images_per_s: float
    peak_mib: float | None

    @property
    def wait_share(self) -> float:
        return self.wait_ms / self.step_ms

    def full_run_minutes(self, steps: int) -> float:
        return steps * self.step_ms / 60_000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step, batches, steps: int, warmup: int, device: torch.device,
            batch_size: int) -> Timing:
    """Run ``step(batch)`` ``warmup`` times, then time ``steps`` more: the whole loop, and
    apart the time spent waiting for ``next(batches)``."""
    for _ in range(warmup):
        step(next(batches))
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wait, start = 0.0, time.perf_counter()
    for _ in range(steps):
        asked = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - asked
        step(batch)
    _sync(device)
    total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return Timing(1000 * total / steps, 1000 * wait / steps, batch_size * steps / total, peak)


def torchvision_step(cfg: TrainConfig, device: torch.device, num_classes: int):
    """One training step of torchvision's FCOS with the recipe's network, its SGD and its
    mixed precision (a gradient scaler under float16)."""
    from fcos_lib.yardstick import torchvision_fcos

    net = build_model(cfg, num_classes).config
    model = torchvision_fcos(channels=net.fpn_channels, p6p7=max(net.levels) == 7,
                             head_convs=net.stem_convs, num_classes=num_classes,
                             size=cfg.image_size).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    dtype = amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    def step(batch) -> None:
        images, targets = batch
        images = list(images.to(device, non_blocking=True))
        targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)}
                   for t in targets]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            total = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
    return step


def notebook_command() -> list[str]:
    """The command that runs notebooks 06 and 07 in quick mode under nbval."""
    return [sys.executable, "-m", "pytest", "-q", "notebooks/06_train.ipynb",
            "notebooks/07_evaluate.ipynb"]


def _row(name: str, t: Timing, steps: int) -> str:
    peak = f"{t.peak_mib:.0f}" if t.peak_mib is not None else "n/a"
    return (f"{name:<18}{t.step_ms:9.1f}{t.images_per_s:10.1f}{t.wait_ms:9.1f} "
            f"({100 * t.wait_share:4.1f} %){peak:>10}{t.full_run_minutes(steps):9.1f} min")


def _verdicts(t: Timing, steps: int, gpu: str) -> list[str]:
    minutes = t.full_run_minutes(steps)
    speed = "met" if minutes <= GOAL_MINUTES else "NOT met"
    data = "met" if t.wait_share <= GOAL_WAIT else "NOT met"
    where = "" if "T4" in gpu else f" (the goal is for a T4-class GPU; this is {gpu})"
    return [f"goal, {steps} steps in under {GOAL_MINUTES:.0f} min: {speed}, about "
            f"{minutes:.1f} min{where}; the course expects about 30 min on a K80",
            f"goal, data loading at most {100 * GOAL_WAIT:.0f} % of a step: {data} "
            f"({100 * t.wait_share:.1f} %)"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", help="cuda (default when there is one), or cpu to run "
                        "the CUDA path on the CPU")
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default 200)")
    parser.add_argument("--warmup", type=int, default=60,
                        help="untimed steps first: cuDNN's choices, the image cache filling")
    parser.add_argument("--images", type=int, default=320, help="generated training images")
    parser.add_argument("--batch-size", type=int, help="default: the recipe's 16")
    parser.add_argument("--no-notebooks", action="store_true",
                        help="skip running notebooks 06 and 07")
    args = parser.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("no CUDA on this machine: the GPU check needs one (on Colab: Runtime > Change "
              "runtime type > GPU). Measuring the data loader alone.")
        device = None
    else:
        device = torch.device(args.device or "cuda")
    preset = get_preset("voc2007-tiny")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        data = make_voc_folder(Path(tmp) / "data", args.images)
        cfg = get_preset(
            "voc2007-tiny", out=str(Path(tmp) / "run"), model={"pretrained": False},
            dataset_kwargs={"root": str(data)}, device=device and device.type,
            batch_size=args.batch_size or preset.batch_size)
        (train_set,) = build_datasets(cfg, ("train",), progress=False)
        print(f"a generated VOC-format folder of {args.images} images of VOC's sizes "
              f"({', '.join(f'{w}x{h}' for w, h in VOC_SIZES[:3])}, ...); batch "
              f"{cfg.batch_size} x {cfg.image_size} px, {cfg.num_workers} loader workers")
        if device is None:
            return loader_only(cfg, train_set, args)
        return on_device(cfg, train_set, device, preset.steps, args)


def loader_only(cfg: TrainConfig, train_set, args) -> int:
    """The CPU part: how many images a second the recipe's loader delivers."""
    batches = iter(training_loader(train_set, cfg))
    t = measure(lambda batch: None, batches, args.steps, args.warmup, torch.device("cpu"),
                cfg.batch_size)
    needed = get_preset("voc2007-tiny").steps * cfg.batch_size / (GOAL_MINUTES * 60)
    print(f"data loader alone: {t.images_per_s:.0f} images/s ({t.wait_ms:.1f} ms a batch); "
          f"the {GOAL_MINUTES:.0f}-minute goal needs {needed:.0f} images/s")
    return 0


def ours_step(cfg: TrainConfig, model: torch.nn.Module, train_set, device: torch.device,
              args) -> Timing:
    """fcos_lib's training step (the trainer's own, with its loader) measured; the model's
    memory freed afterwards."""
    trainer = Trainer(cfg, model, train_set, progress=False)
    timing = measure(trainer.one_step, trainer.batches(), args.steps, args.warmup, device,
                     cfg.batch_size)
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return timing


def on_device(cfg: TrainConfig, train_set, device: torch.device, full_steps: int, args) -> int:
    """The CUDA path: fcos_lib's training step and torchvision's, then the notebooks."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    dtype = amp_dtype(cfg.amp, device)
    model = build_model(cfg, len(train_set.class_names)).to(device)
    net = model.config
    print(f"device: {gpu}; mixed precision: {dtype or 'off'}; network: {net.backbone} (random "
          f"init), FPN of {net.fpn_channels} channels over P{min(net.levels)}-"
          f"P{max(net.levels)}, {net.stem_convs}-conv stems")
    ours = ours_step(cfg, model, train_set, device, args)
    del model
    cl_cfg = replace(cfg, channels_last=True)
    channels_last = ours_step(cl_cfg, build_model(cl_cfg, len(train_set.class_names)).to(
        device, memory_format=torch.channels_last), train_set, device, args)
    theirs_step = torchvision_step(cfg, device, len(train_set.class_names))
    batches = iter(training_loader(train_set, cfg, pin_memory=device.type == "cuda"))
    theirs = measure(theirs_step, batches, args.steps, args.warmup, device, cfg.batch_size)
    print(f"\n{'':<18}{'ms/step':>9}{'images/s':>10}{'data wait, ms (%)':>18}{'peak MiB':>10}"
          f"{f'{full_steps} steps':>13}")
    print(_row("fcos_lib", ours, full_steps))
    print(_row("  channels-last", channels_last, full_steps))
    print(_row("torchvision FCOS", theirs, full_steps))
    print(f"fcos_lib / torchvision step time: {ours.step_ms / theirs.step_ms:.2f} "
          f"({channels_last.step_ms / theirs.step_ms:.2f} channels-last)")
    for line in _verdicts(ours, full_steps, gpu):
        print(line)
    if args.no_notebooks:
        return 0
    print("\nnotebooks 06 and 07, quick mode:", flush=True)
    return subprocess.run(notebook_command(), cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
