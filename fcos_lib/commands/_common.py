"""What the commands share: printing an error, argument types that check their values, the
options and loading of a trained model, and the rule on outputs: no command writes over a
file it did not make unless ``--overwrite`` says so, and none ever over one of its inputs."""
from __future__ import annotations

import argparse
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fcos_lib.env import pick_device
from fcos_lib.model import FCOS

__all__ = ["error", "os_error", "explain_os_error", "positive_int", "add_model_arguments",
           "load_trained", "add_overwrite_argument", "check_outputs"]


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


def os_error(err: OSError, after: str = "") -> int:
    """``error`` for a file or folder the system refused: one line saying what failed, read
    from the error's number (:func:`explain_os_error`), then ``after`` (what is left and how
    to go on, where the command knows); exit status 2."""
    return error(explain_os_error(err) + after)


# errno -> the fix that works for that refusal (the system's own words say what it is)
_OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free space on it, or choose a folder on another disk",
    errno.EDQUOT: "your disk quota is used up: free space, or choose a folder elsewhere",
    errno.EACCES: "choose a file or folder of yours, or change its permissions",
    errno.EPERM: "choose a file or folder of yours",
    errno.EROFS: "choose a folder on a disk that can be written",
    errno.ENAMETOOLONG: "choose a shorter name",
    errno.EISDIR: "give the path of a file, not of a folder",
    errno.ENOENT: "check the path",
    errno.EMFILE: "too many files are open: close other programs and run it again",
    errno.EIO: "the disk failed to read or write: check it, or choose a folder on another disk",
}


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing part of ``path`` (from the top) that is a file, not a folder."""
    for part in [*reversed(path.parents), path][:-1]:
        if _kind(part) == "file":
            return part
    return None


def _kind(path: Path) -> str | None:
    """``"folder"``, ``"file"`` (anything else that exists), or None (absent, or no name
    the system accepts)."""
    try:
        return "folder" if stat.S_ISDIR(os.stat(path).st_mode) else "file"
    except (OSError, ValueError):
        return None


def _too_long(path: Path) -> str:
    """Which name of ``path`` is longer than its file system allows, and the limit."""
    longest = max(path.parts, key=len)
    folder = next((p for p in [path, *path.parents] if _kind(p) == "folder"), Path("."))
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):      # (Windows has no pathconf)
        return "a name in this path is too long for the file system"
    return (f"the name {longest[:24]}... has {len(longest)} characters, more than the "
            f"{limit} this file system allows")


def explain_os_error(err: OSError) -> str:
    """What the system refused, in its words, the file, and the fix that works for that
    refusal (read from ``err.errno``): a full disk, a permission, a read-only disk, a name
    too long, a file in the way...

    >>> explain_os_error(OSError(errno.EROFS, "Read-only file system", "a/x.pt"))
    'Read-only file system (a/x.pt): choose a folder on a disk that can be written'
    """
    said = f"{err.strerror or err}{f' ({err.filename})' if err.filename else ''}"
    path = Path(str(err.filename)) if err.filename else None
    if path is not None and err.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(path) if err.errno == errno.ENOTDIR else path
        if blocker is not None:
            kind = "a folder" if _kind(blocker) == "folder" else "a file"
            return f"{said}: {blocker} is {kind} in the way; move it away, or choose another path"
    if path is not None and err.errno == errno.ENAMETOOLONG:
        return f"{said}: {_too_long(path)}; choose a shorter name"
    if err.errno in _OS_FIXES:
        return f"{said}: {_OS_FIXES[err.errno]}"
    return f"{said}: check the path, that the folder can be written and that the disk has room"


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
