"""What every notebook needs first: the device, the quick-mode switch, seeds, sources.

The quick-mode switch is the environment variable ``FCOS_QUICK``. The test configuration
(``conftest.py`` at the repository's root) sets it to ``1`` so that nbval runs every notebook with small data
and few steps; a notebook's default, with the variable unset, is the real thing.
"""
from __future__ import annotations

import inspect
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

QUICK_ENV = "FCOS_QUICK"


def quick_mode() -> bool:
    """True when ``FCOS_QUICK`` is set to anything but ``""``/``0``/``false``."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in {"", "0", "false", "no"}


def pick(real, quick):
    """``quick`` in quick mode, else ``real``: one line per shrunk setting in a notebook."""
    return quick if quick_mode() else real


def _base() -> Path:
    """The repository's root when run from it, its ``notebooks/`` or ``notebooks/student/``,
    else the current folder."""
    here = Path.cwd()
    for folder in (here, here.parent, here.parent.parent):
        if (folder / "fcos_lib").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return here


def runs_dir() -> Path:
    """Where notebooks and the CLI keep training runs: ``<repo>/runs`` in a clone of the
    repository (a notebook runs in ``notebooks/``), else ``./runs`` (e.g. ``/content/runs``
    on Colab)."""
    return _base() / "runs"


def data_dir() -> Path:
    """Where datasets are downloaded to, found like :func:`runs_dir`: ``<repo>/data`` in a
    clone of the repository, else ``./data`` (e.g. ``/content/data`` on Colab)."""
    return _base() / "data"


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device here: ``prefer`` if given, else cuda, then mps, then cpu."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | None = None) -> str:
    """One line about the device, and on Colab without a GPU, how to get one."""
    device = device or pick_device()
    if device.type == "cuda":
        text = f"device: cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "mps":
        text = "device: mps (Apple GPU)"
    else:
        text = f"device: cpu ({torch.get_num_threads()} threads)"
        if "google.colab" in sys.modules:
            text += ("\nNo GPU in this Colab runtime: Runtime > Change runtime type > "
                     "Hardware accelerator: GPU, then run this notebook again.")
    return text


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) for a repeatable run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def show_source(obj) -> None:
    """Display the source of a function or class from ``fcos_lib``, highlighted.

    Notebooks show the library's code this way instead of retyping it, so there is
    one copy of every piece of logic.
    """
    source = inspect.getsource(obj)
    try:
        from IPython.display import Code, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    display(Code(source, language="python"))
