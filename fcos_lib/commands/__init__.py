"""The command line: ``python -m fcos_lib COMMAND [ARGS...]`` (or ``fcos COMMAND``).

Each command is one module of this package with ``main(argv) -> int``: it parses its
arguments, calls the library, prints, and turns expected failures into a one-line error and
an exit status. This is the top floor: nothing else in ``fcos_lib`` imports it.

==========  ============================================================
command     module
==========  ============================================================
download    :mod:`fcos_lib.commands.download`
train       :mod:`fcos_lib.commands.train`
demo        :mod:`fcos_lib.commands.demo`
evaluate    :mod:`fcos_lib.commands.evaluate`
predict     :mod:`fcos_lib.commands.predict`
==========  ============================================================
"""
from __future__ import annotations

import importlib
import sys

# name -> one line of help; the module is fcos_lib.commands.<name>, imported when called
# (so that `--help` does not wait for torch).
COMMANDS = {
    "download": "download a dataset (voc2007) with checksums",
    "train": "train a preset, resumable",
    "demo": "train on shapes on the CPU, evaluate, draw predictions",
    "evaluate": "mAP of a checkpoint on a dataset",
    "predict": "draw a checkpoint's boxes on image files",
}


def usage() -> str:
    """The top-level help: the commands and what they do."""
    lines = ["usage: python -m fcos_lib COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "`python -m fcos_lib COMMAND --help` explains a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command named by ``argv[0]`` with the rest; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"fcos_lib.commands.{name}")
    try:
        return int(module.main(rest) or 0)
    except OSError as err:   # a folder that cannot be written, a full disk: not a traceback
        from fcos_lib.commands._common import os_error

        return os_error(err)
