"""Command line: ``python -m fcos_lib COMMAND [ARGS...]`` (or ``fcos COMMAND``).

Each command lives in the module of its idea, which exposes ``main(argv) -> int``.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "download": ("fcos_lib.data.download", "download a dataset (voc2007) with checksums"),
    "train": ("fcos_lib.train", "train a preset, resumable"),
    "demo": ("fcos_lib.train", "train on shapes on the CPU, evaluate, draw predictions"),
    "evaluate": ("fcos_lib.evaluate", "mAP of a checkpoint on a dataset"),
    "predict": ("fcos_lib.inference", "draw a checkpoint's boxes on image files"),
}


def usage() -> str:
    lines = ["usage: python -m fcos_lib COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "`python -m fcos_lib COMMAND --help` explains a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    entry = getattr(module, "demo_main" if name == "demo" else "main")
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
