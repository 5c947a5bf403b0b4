"""Checkpoints that survive a crash: atomic writes, safe loading, every random state.

A checkpoint is a plain dict (``docs/design.md``): ``model``, ``optimizer``, ``scheduler``,
``scaler`` (state dicts), ``step`` (int, optimizer steps done), ``rng`` (the random states of
Python, NumPy and torch) and ``config`` (plain Python types). It is written to a temporary
file that is then renamed over the old one, so a run killed while saving leaves the previous
checkpoint whole; it is read back with ``torch.load(..., weights_only=True)``, which refuses
to run code from a file, so only tensors and plain types may go in.
"""
from __future__ import annotations

import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or not one of ours."""


REQUIRED_KEYS = ("model", "step", "config")


def rng_state() -> dict[str, Any]:
    """The random states of Python, NumPy and torch (CPU and every GPU), as plain types."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        # weights_only loading accepts tensors but not NumPy arrays.
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (GPU states only where there are GPUs)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"][:torch.cuda.device_count()]
        torch.cuda.set_rng_state_all([s.cpu() for s in saved])


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed to disk, renamed.

    Args:
        state: the checkpoint dict (tensors and plain Python types only).
        path: where it goes; its directory is created.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # atomic on POSIX and Windows: readers see old or new, never half
    return path


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        map_location: where its tensors go (default: the CPU).

    Raises:
        CheckpointError: the file is missing, truncated, or not a training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first "
                              "(python -m fcos_lib train --preset shapes --out DIR)")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning precedes the error
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    # What torch's unpicklers raise on bytes that are not a checkpoint.
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile) as err:
        # torch's own message advises weights_only=False, which would run code from an
        # untrusted file: name the error type only, and leave torch's message out.
        raise CheckpointError(
            f"{path} is not a readable checkpoint: corrupt, truncated or not written by "
            f"fcos_lib ({type(err).__name__} in torch.load); delete it or re-create it by "
            "training again (python -m fcos_lib train ...), or point to another file") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not an fcos_lib training checkpoint "
                              f"(it needs the keys {REQUIRED_KEYS})")
    return state
