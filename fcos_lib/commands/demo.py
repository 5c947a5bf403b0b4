"""``make demo``: train the demo preset on shapes on the CPU, evaluate it, draw what it sees.

The ``demo`` preset (:data:`fcos_lib.config.TRAIN_PRESETS`) is notebook 06's ``shapes`` run
with the two largest gains that notebook 08 measures, center sampling and size ranges halved
for 128-pixel images, at four times the learning rate, in 1000 steps in place of 1500
(``bench/bench_demo.py``: what each change does).

``python -m fcos_lib demo --out runs/demo`` writes to ``runs/demo/``:

- ``checkpoint.pt`` and ``metrics.jsonl``, as every training run does;
- ``metrics.json``: on the whole validation split, the mAP@0.5 (VOC area method) under
  ``map50`` and the COCO mAP (0.50:0.95, 101 points) under ``map_coco``; the training time in
  seconds and in steps of torchvision's FCOS on the bench network, measured in the same run
  (:mod:`fcos_lib.yardstick`: the unit travels between machines where seconds do not); and
  the targets it is held to;
- ``loss_curve.png``: the losses over the steps; ``predictions.png``: predicted boxes on
  validation images next to the ground truth.

Running it again continues the run in ``--out`` (or just re-evaluates a finished one);
``--fresh`` starts over. A run there with other settings (an older demo's) is refused, naming
them. A folder with some of these files but no run to continue (no
``checkpoint.pt``: files of yours, say) is refused unless ``--overwrite``. The folder is
locked while the demo runs: a second demo on it stops with a one-line error.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fcos_lib.checkpoint import CheckpointError, load_checkpoint
from fcos_lib.commands._common import error, os_error
from fcos_lib.config import get_preset
from fcos_lib.curves import save_loss_curve
from fcos_lib.data import collate
from fcos_lib.env import pick_device
from fcos_lib.evaluate import mean_average_precision
from fcos_lib.files import FolderBusyError, folder_lock, write_atomic
from fcos_lib.inference import predict_dataset
from fcos_lib.model import FCOS
from fcos_lib.train import build_datasets, train
from fcos_lib.trainer import NonFiniteLossError, changed_settings
from fcos_lib.viz import plot_detections_grid
from fcos_lib.yardstick import torchvision_step_seconds

# The demo's targets (issue 24): both numbers on the shapes validation split (500 images)
# within TARGET_STEPS steps of torchvision's FCOS (fcos_lib.yardstick) of CPU training time.
TARGET_MAP50, TARGET_MAP_COCO, TARGET_STEPS = 0.95, 0.70, 190


def draw_predictions(model: torch.nn.Module, dataset: Dataset, path: Path, count: int = 8) -> Path:
    """Save a grid of ``count`` validation images with predicted and true boxes to ``path``."""
    import matplotlib.pyplot as plt

    images, targets = collate([dataset[i] for i in range(min(count, len(dataset)))])
    device = next(model.parameters()).device
    with torch.no_grad():
        predictions = model.predict(images.to(device))
    fig = plot_detections_grid(images, [{k: v.cpu() for k, v in p.items()} for p in predictions],
                               targets, class_names=list(dataset.class_names))
    picture = io.BytesIO()
    fig.savefig(picture, format="png", dpi=100, bbox_inches="tight")   # labels sized for 100
    plt.close(fig)
    return write_atomic(path, picture.getvalue())


def run_demo(out: str | Path = "runs/demo", steps: int | None = None, device: str | None = None,
             fresh: bool = False, progress: bool = True, overwrite: bool = False
             ) -> dict[str, Any]:
    """Train (or continue) the demo preset in ``out``, evaluate, write the files above
    (``fresh``: start over; ``overwrite``: replace them even where there is no run).

    Returns:
        The contents of ``metrics.json``.
    """
    out = Path(out)
    with folder_lock(out):
        return _run_demo(out, steps, device, fresh, progress, overwrite)


OUTPUTS = ("checkpoint.pt", "metrics.jsonl", "metrics.json", "loss_curve.png",
           "predictions.png")


def _run_demo(out: Path, steps: int | None, device: str | None, fresh: bool, progress: bool,
              overwrite: bool) -> dict[str, Any]:
    """:func:`run_demo`, the folder held."""
    found = [name for name in OUTPUTS if (out / name).exists()]
    if found and not (out / "checkpoint.pt").exists() and not overwrite:
        raise FileExistsError(f"{out} holds {', '.join(found)} but no run to continue "
                              "(no checkpoint.pt): choose another --out, or pass --overwrite "
                              "to replace them")
    overrides: dict[str, Any] = {"device": device}
    if steps is not None:
        overrides["steps"] = steps
    cfg = get_preset("demo", out=str(out), **overrides)
    if fresh:
        for name in found:
            (out / name).unlink()
    elif "checkpoint.pt" in found:             # the demo's own words for the trainer's check
        differ = changed_settings(cfg, load_checkpoint(out / "checkpoint.pt")["config"]["train"])
        if differ:
            first = "preset" if "preset" in differ else next(iter(differ))
            rest = [k for k in differ if k != first]
            names = " and ".join([", ".join(rest[:-1]), rest[-1]] if len(rest) > 1 else rest)
            too = f"; {names} differ{'s' if len(rest) == 1 else ''} too" if rest else ""
            raise ValueError(f"{out} holds a training run with settings other than the demo's "
                             f"({first}: {differ[first][0]!r} there, {differ[first][1]!r} now"
                             f"{too}; from an older make demo?): pass --fresh to start the "
                             "demo over there, or choose another --out")
    where = pick_device(device)
    print(f"training the demo preset on {where}: {cfg.steps} steps of {cfg.batch_size} "
          f"images of {cfg.image_size} px; writing {out}/", flush=True)
    wall = time.perf_counter()
    path = train(cfg, resume=True, progress=progress)
    wall = time.perf_counter() - wall
    state = load_checkpoint(path)
    model, _ = FCOS.from_checkpoint(path, where)
    (val_set,) = build_datasets(cfg, ("val",), progress=False)
    predictions, targets = predict_dataset(model, val_set)      # every validation image
    n = len(val_set.class_names)
    map50 = mean_average_precision(predictions, targets, 0.5, "area", num_classes=n)["map"]
    map_coco = mean_average_precision(predictions, targets, "coco", "coco101", num_classes=n,
                                      max_detections=100)["map"]
    seconds = float(state.get("train_seconds", 0.0))
    unit = torchvision_step_seconds() if where.type == "cpu" else None
    in_steps = round(seconds / unit, 1) if unit else None
    metrics = {"map50": map50, "map_coco": map_coco, "target_map50": TARGET_MAP50,
               "target_map_coco": TARGET_MAP_COCO, "target_torchvision_steps": TARGET_STEPS,
               "reached_target": (map50 >= TARGET_MAP50 and map_coco >= TARGET_MAP_COCO
                                  and in_steps is not None and in_steps <= TARGET_STEPS),
               "torchvision_step_seconds": round(unit, 3) if unit else None,
               "train_torchvision_steps": in_steps,
               "steps": int(state["step"]), "train_seconds": round(seconds, 1),
               "steps_per_s": round(state["step"] / seconds, 3) if seconds else None,
               "wall_seconds_this_call": round(wall, 1), "val_images": len(val_set),
               "device": str(where), "threads": torch.get_num_threads(), "preset": "demo"}
    write_atomic(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    save_loss_curve(out)
    draw_predictions(model, val_set, out / "predictions.png")
    return metrics


def for_the_demo(advice: str, out: str) -> str:
    """The trainer's advice after a non-finite stop in the demo's words: the demo has no
    ``--set`` nor ``--change-schedule``, but its folder is a training run that ``train``
    continues; its ``--fresh`` starts over.

    >>> for_the_demo("then resume: --resume --change-schedule (train(...))", "runs/demo")
    'then resume: python -m fcos_lib train --out runs/demo --resume --change-schedule (train(...))'
    """
    return (advice.replace("--resume --change-schedule",
                           f"python -m fcos_lib train --out {out} --resume --change-schedule")
            .replace("another --out, or --overwrite", "another --out, or --fresh")
            .replace("train afresh", "run the demo afresh"))


def _is_file(path: Path) -> bool:
    """Whether ``path`` is a file (False where the system cannot even look)."""
    try:
        return path.is_file()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib demo [--out DIR] [--steps N] [--fresh]``; 0 when done, 2 on an
    error (one line on stderr), 130 interrupted."""
    parser = argparse.ArgumentParser(prog="python -m fcos_lib demo", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best here)")
    parser.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the demo's files in --out even where there is no run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        m = run_demo(args.out, args.steps, args.device, args.fresh, not args.no_progress,
                     args.overwrite)
    except KeyboardInterrupt:
        return 130
    except NonFiniteLossError as err:
        return error(for_the_demo(str(err), args.out))
    except (CheckpointError, ValueError, FolderBusyError, FileExistsError) as err:
        return error(err)
    except OSError as err:
        kept = Path(args.out) / "checkpoint.pt"
        return os_error(err, f". The last checkpoint, {kept}, is intact: once that is fixed, "
                             "run the demo again to go on from it" if _is_file(kept) else "")
    print(summary(m) + f"\nwrote {args.out}/metrics.json, loss_curve.png, predictions.png")
    return 0


def summary(m: dict[str, Any]) -> str:
    """The demo's result in two lines: both mAPs and the training time against the targets.

    >>> print(summary({"val_images": 500, "map50": 0.92, "map_coco": 0.65, "steps": 1500,
    ...     "train_seconds": 136.0, "steps_per_s": 11.0, "torchvision_step_seconds": 0.62,
    ...     "train_torchvision_steps": 219.4, "reached_target": False}))
    mAP@0.5 0.920 and COCO mAP 0.650 on 500 validation images (targets 0.95 and 0.70)
    1500 steps in 136 s of training = 219.4 steps of torchvision's FCOS (0.62 s each, measured now; target 190): BELOW the targets
    """
    if m.get("train_torchvision_steps") is None:
        took = "(not measured in torchvision steps off the CPU)"
    else:
        took = (f"= {m['train_torchvision_steps']} steps of torchvision's FCOS "
                f"({m['torchvision_step_seconds']:.2f} s each, measured now; target "
                f"{TARGET_STEPS})")
    verdict = "reached the targets" if m["reached_target"] else "BELOW the targets"
    return (f"mAP@0.5 {m['map50']:.3f} and COCO mAP {m['map_coco']:.3f} on {m['val_images']} "
            f"validation images (targets {TARGET_MAP50} and {TARGET_MAP_COCO:.2f})\n"
            f"{m['steps']} steps in {m['train_seconds']:.0f} s of training {took}: {verdict}")
