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
from typing import Any, TypeVar

import numpy as np
import torch

QUICK_ENV = "FCOS_QUICK"


def quick_mode() -> bool:
    """True when ``FCOS_QUICK`` is set to anything but ``""``/``0``/``false``."""
    return os.environ.get(QUICK_ENV, "").strip().lower() not in {"", "0", "false", "no"}


T = TypeVar("T")


def pick(real: T, quick: T) -> T:
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


RUNS_ENV = "FCOS_RUNS"
DRIVE_ENV = "FCOS_DRIVE"
DRIVE_MOUNT = "/content/drive"


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def drive_folder() -> Path:
    """The series' folder on Google Drive, ``MyDrive/fcos-notebooks``, mounting Drive first if
    it is not (Colab asks once for permission).

    Drive is mounted at ``/content/drive``, or where ``FCOS_DRIVE`` says (the tests' fake
    Colab mounts a temporary folder there).
    """
    mount = Path(os.environ.get(DRIVE_ENV) or DRIVE_MOUNT)
    if not (mount / "MyDrive").is_dir():
        from google.colab import drive  # only on Colab
        drive.mount(str(mount))
    return mount / "MyDrive" / "fcos-notebooks"


def runs_dir() -> Path:
    """Where notebooks and the CLI keep training runs, the one place that knows it.

    In order: the folder ``FCOS_RUNS`` names, if set; on Colab, ``fcos-notebooks/runs`` on
    Google Drive (mounted on first use), because every notebook there runs in a runtime of
    its own and only Drive outlives it, so notebook 07 finds what notebook 06 trained; in a
    clone of the repository, ``<repo>/runs`` (a notebook runs in ``notebooks/``); else
    ``./runs``. On Colab, ``os.environ["FCOS_RUNS"] = "/content/runs"`` keeps runs off Drive.
    """
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    if on_colab():
        return drive_folder() / "runs"
    return _base() / "runs"


def find_run(*names: str) -> Path:
    """The checkpoint of the first of the runs ``names`` that exists in :func:`runs_dir`
    (``name-quick`` in quick mode).

    Raises:
        FileNotFoundError: there is none; the message names the folders looked in and what
            to do.
    """
    folders = [runs_dir() / pick(name, f"{name}-quick") for name in names]
    for folder in folders:
        if (folder / "checkpoint.pt").is_file():
            return folder / "checkpoint.pt"
    where = "on your Google Drive " if on_colab() else ""
    raise FileNotFoundError(
        f"no trained run in {' or '.join(map(str, folders))} {where}(looked for checkpoint.pt): "
        f"run the notebook that trains it (06) first, or set the environment variable "
        f"{RUNS_ENV} to the folder that holds your runs")


def data_dir() -> Path:
    """Where datasets are downloaded to, found like :func:`runs_dir`: ``<repo>/data`` in a
    clone of the repository, else ``./data`` (e.g. ``/content/data`` on Colab)."""
    return _base() / "data"


def device_available(device: torch.device) -> bool:
    """Whether tensors can be placed on ``device`` here (a CUDA index that exists, MPS)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        return mps is not None and mps.is_available()
    return True


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device here: ``prefer`` if given, else cuda, then mps, then cpu.

    Raises:
        ValueError: ``prefer`` names no device, or one that is not here.
    """
    if prefer:
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"device={prefer!r} is not a device: use cpu, cuda, cuda:1, "
                             "mps") from None
        if not device_available(device):
            what = "Apple GPU" if device.type == "mps" else f"such {device.type.upper()} GPU"
            raise ValueError(f"device={prefer!r}, but there is no {what} here: use cpu"
                             + (" (or switch the Colab runtime to a GPU)" if on_colab() else ""))
        return device
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
        if on_colab():
            text += ("\nNo GPU in this Colab runtime: Runtime > Change runtime type > "
                     "Hardware accelerator: GPU, then run this notebook again.")
    return text


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) for a repeatable run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def show_source(obj: Any, folded: bool = False) -> None:
    """Display the source of a function or class from ``fcos_lib``, highlighted.

    Notebooks show the library's code this way instead of retyping it, so there is
    one copy of every piece of logic. ``folded=True`` shows it closed, to be opened with a
    click: the student copies fold the library's version of an exercise, its answer.
    """
    source = inspect.getsource(obj)
    try:
        from IPython.display import HTML, Code, display
    except ImportError:  # plain Python: print it
        print(source)
        return
    code = Code(source, language="python")
    if not folded:
        display(code)
        return
    name = getattr(obj, "__qualname__", type(obj).__name__)
    display(HTML(f"<details><summary>The library's <code>{name}</code> (the answer: open it "
                 f"once your check passes)</summary>{code._repr_html_()}</details>"))
