"""``python -m fcos_lib train``: train a preset from the shell, resumable, under torchrun too.

Examples::

    python -m fcos_lib train --preset shapes --out runs/shapes
    python -m fcos_lib train --out runs/shapes --resume             # after Ctrl-C or a crash
    python -m fcos_lib train --out runs/shapes --resume --change-schedule --set lr=0.002
                                                        # after a non-finite loss
    python -m fcos_lib train --preset shapes --out runs/s2 --steps 300 --set lr=0.02 \
        --set model.fpn_channels=32
    python -m fcos_lib train --preset shapes --out runs/shapes --overwrite   # start over
    torchrun --nproc_per_node=2 -m fcos_lib train --preset voc2007-tiny --out runs/voc

The run folder is locked while it trains: a second ``train`` on it stops at once, naming the
first. Exit status: 0 done, 2 an error (one line on stderr: a setting, missing data, no such
device, a full disk, a non-finite loss, a folder in use or holding another run...), 130 interrupted (Ctrl-C), 143 terminated
(SIGTERM); after either of the last two, a checkpoint of the last finished step.
"""
from __future__ import annotations

import argparse
import ast
import os
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

from fcos_lib.checkpoint import CheckpointError, check_layout, load_checkpoint
from fcos_lib.commands._common import error, os_error
from fcos_lib.config import TRAIN_PRESETS, TrainConfig, config_with, get_preset
from fcos_lib.data import DownloadError, check_dataset_arguments
from fcos_lib.env import pick_device
from fcos_lib.files import FolderBusyError, folder_lock
from fcos_lib.runlog import read_metrics
from fcos_lib.train import train
from fcos_lib.trainer import NonFiniteLossError, Terminated


def _parse_value(text: str) -> Any:
    """A ``--set`` value: a Python literal (number, tuple, None, ...) or else a bare word."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run the command line asks for: the checkpoint's own config when resuming, else
    the preset; then ``--steps`` and every ``--set KEY=VALUE`` on top."""
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: write KEY=VALUE, e.g. --set lr=0.005")
        if key.startswith("model."):
            overrides.setdefault("model", {})[key[6:]] = _parse_value(value)
        else:
            overrides[key] = _parse_value(value)
    if args.steps is not None:
        overrides["steps"] = args.steps
    checkpoint = Path(args.out) / "checkpoint.pt"
    if args.resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        check_layout(state, checkpoint)       # another program's file: one line, not a trace
        saved = state["config"]["train"]
        if args.preset is not None and args.preset != saved.get("preset"):
            raise ValueError(f"--preset {args.preset}: the run in {args.out} was trained with "
                             f"--preset {saved.get('preset')}; resume it without --preset (or "
                             f"with --preset {saved.get('preset')}), or train {args.preset} in "
                             "another --out folder")
        try:
            cfg = config_with(saved, **{**overrides, "out": str(args.out)})
        except TypeError:        # the run's settings name fields this version lacks
            known = {f.name for f in fields(TrainConfig)}
            raise CheckpointError(
                f"{checkpoint} was saved with settings this version does not know "
                f"({sorted(set(saved) - known)[:3]}): it was written by another version of "
                "fcos_lib; resume it with that version, or train afresh in another --out "
                "folder") from None
    else:
        cfg = get_preset(args.preset or "shapes", out=str(args.out), **overrides)
    check_dataset_arguments(cfg.dataset, cfg.dataset_kwargs)   # refused now, not mid-run
    pick_device(cfg.device)
    return cfg


def what_is_kept(out: Path) -> str:
    """After a failed write: the checkpoint left in ``out``, if there is one, and how to go
    on from it (a run that saved none has nothing to resume)."""
    try:
        kept = (out / "checkpoint.pt").is_file()
    except OSError:
        kept = False
    if not kept:
        return ""
    return (f". The last checkpoint, {out / 'checkpoint.pt'}, is intact: once that is fixed, "
            "go on from it with --resume")


RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "loss_curve.png")


def make_room(out: Path, resume: bool, overwrite: bool) -> None:
    """Before a run that is not a resume: refuse a folder that holds a run's files (the
    checkpoint, the log, the curve), or remove them with ``overwrite``.

    Raises:
        FileExistsError: naming the files and the three ways on.
    """
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume or not found:
        return
    if not overwrite:
        what = "a run" if "checkpoint.pt" in found else "files of a run without a checkpoint"
        raise FileExistsError(f"{out} already holds {what} ({', '.join(found)}): continue it "
                              "with --resume, start over with --overwrite (they are replaced), "
                              "or choose another --out folder")
    for name in found:
        (out / name).unlink()


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib train``: train a preset, resumable; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="python -m fcos_lib train",
        description="Train an FCOS preset. Under torchrun, every process trains its share "
                    "of each batch (DistributedDataParallel); rank 0 logs and checkpoints.")
    parser.add_argument("--preset", choices=sorted(TRAIN_PRESETS),
                        help="the recipe (default shapes; when resuming, the run's own)")
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt, metrics.jsonl")
    parser.add_argument("--steps", type=int, help="optimizer steps (default: the preset's)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (its own settings) if there is one")
    parser.add_argument("--change-schedule", action="store_true",
                        help="with --resume: let --set change the learning rate and schedule "
                             "(lr, warmup_steps, gamma, ...), recorded in metrics.jsonl")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a TrainConfig field (model.NAME for FCOS arguments)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over in --out, replacing the run there (not with --resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        return error("--resume continues the run in --out and --overwrite replaces it: "
                     "choose one")
    first = int(os.environ.get("RANK", "0")) == 0     # under torchrun, rank 0 holds the folder
    try:
        cfg = config_from_args(args)
        with folder_lock(args.out) if first else nullcontext():
            if first:
                make_room(Path(args.out), args.resume, args.overwrite)
            path = train(cfg, resume=args.resume, change_schedule=args.change_schedule,
                         progress=not args.no_progress)
    except Terminated:
        return 143
    except KeyboardInterrupt:
        return 130
    except (NonFiniteLossError, CheckpointError, ValueError, DownloadError,
            FolderBusyError) as err:
        return error(err)
    except OSError as err:     # ours (no errno: a run in the way, no data), or the system's
        return error(err) if err.errno is None else os_error(err, what_is_kept(Path(args.out)))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        records = read_metrics(cfg.out)
        maps = [r["map50"] for r in records if "map50" in r]
        losses = [r for r in records if "total" in r]
        summary = f"checkpoint: {path}"
        if losses:
            summary += (f"\nstep {losses[-1]['step']}: loss {losses[-1]['total']:.3f}, "
                        f"{losses[-1]['train_seconds']:.0f} s of training")
        if maps:
            summary += f", mAP@0.5 {maps[-1]:.3f}"
        print(summary)
    return 0
