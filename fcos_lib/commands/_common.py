"""What the commands share: printing an error, argument types that check their values, the
options and loading of a trained model, and the rule on outputs: no command writes over a
file it did not make unless ``--overwrite`` says so, and none ever over one of its inputs."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fcos_lib.env import pick_device
from fcos_lib.model import FCOS

__all__ = ["error", "os_error", "positive_int", "add_model_arguments", "load_trained",
           "add_overwrite_argument", "check_outputs"]


def error(message: object, status: int = 2) -> int:
    """Print ``error: message`` on stderr; return ``status`` for the command to exit with.
    An error raised in a DataLoader worker comes wrapped in the worker's traceback: only its
    own last line is printed."""
    text = str(message)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    print(f"error: {text}", file=sys.stderr)
    return status


def os_error(err: OSError) -> int:
    """``error`` for a file or folder the system refused (missing, not writable, a full
    disk): one line naming it, exit status 2."""
    where = f" ({err.filename})" if err.filename else ""
    return error(f"{err.strerror or err}{where}: check that the folder exists and can be "
                 "written, and that the disk has room")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint`` (required) and ``--device``: the options of a command that runs a
    trained model."""
    parser.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by train")
    parser.add_argument("--device", help="cpu, cuda, mps (default: the best here)")


def load_trained(args: argparse.Namespace) -> tuple[FCOS, dict[str, Any]]:
    """The model of ``args.checkpoint`` on ``args.device`` and its run (see
    ``FCOS.from_checkpoint``); raises ``CheckpointError`` for a missing or broken file."""
    return FCOS.from_checkpoint(args.checkpoint, pick_device(args.device))


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: let the command replace files in its way that it did not write."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing files in the way (never the command's inputs)")


def _identity(path: Path) -> tuple | Path:
    """What makes two names one file: device and inode where it exists (a hard link, a
    symbolic link, another spelling on a case-blind disk), else the absolute path."""
    try:
        found = os.stat(path)
    except OSError:
        return path.resolve()
    return (found.st_dev, found.st_ino)


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike]
                  = (), overwrite: bool = False,
                  ours: Callable[[Path], bool] | None = None) -> None:
    """Refuse, before any work, outputs that would destroy a file: one of ``inputs``
    (always, even with ``overwrite``), or an existing file that is not ``ours`` (a file this
    command wrote in an earlier run) unless ``overwrite``.

    Raises:
        ValueError: naming the file and what to do.
    """
    outputs = [Path(p) for p in outputs]
    given = {_identity(Path(p)): Path(p) for p in inputs}
    for out in outputs:
        if _identity(out) in given:
            raise ValueError(f"{out} is also an input of this command ({given[_identity(out)]})"
                             ": writing it would destroy it; choose another output path")
    if overwrite:
        return
    taken = [p for p in outputs if os.path.lexists(p) and not (ours and ours(p))]
    if taken:
        more = f" (and {len(taken) - 1} more of the outputs)" if len(taken) > 1 else ""
        raise ValueError(f"{taken[0]} exists{more} and this command did not write it: choose "
                         "another output path, move it away, or pass --overwrite to replace it")
