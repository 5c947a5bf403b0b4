"""What the commands share: printing an error, argument types that check their values, and
the options and loading of a trained model."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from fcos_lib.env import pick_device
from fcos_lib.model import FCOS

__all__ = ["error", "os_error", "positive_int", "add_model_arguments", "load_trained"]


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
