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

from fcos_lib.env import device_available
from fcos_lib.files import atomic_file


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
    with atomic_file(path) as f:      # readers see the old checkpoint or the new, never half
        torch.save(state, f)
    return path


def _explain(err: BaseException, path: Path, device: torch.device | None) -> str:
    """What went wrong in ``torch.load``, and what to do: only a damaged file is to delete."""
    text = str(err)
    size = f"{path.stat().st_size / 2**20:.0f} MB"
    if isinstance(err, PermissionError):
        return f"cannot read {path}: permission denied (check the file's owner and mode)"
    if isinstance(err, MemoryError) or "out of memory" in text.lower():
        return (f"not enough memory to load {path} ({size}) on {device or 'the CPU'}: free "
                "memory (close other notebooks or runs) or load it on the CPU (--device cpu)")
    if "maximum supported version" in text or "installation may be too old" in text:
        return (f"{path} was written by a newer PyTorch than this one ({torch.__version__}): "
                "upgrade torch (pip install -U torch) to read it; the file itself is fine")
    if "deserialize object on a CUDA device" in text or "device not recognized" in text:
        return (f"{path} asks for a device that is not here ({device}): load it on the CPU "
                "(--device cpu, map_location='cpu')")
    if (isinstance(err, pickle.UnpicklingError) and "Weights only load failed" in text
            and zipfile.is_zipfile(path)):      # torch.save's format, with more than tensors
        # torch's own message advises weights_only=False, which would run code from an
        # untrusted file: it is left out.
        return (f"{path} holds Python objects besides tensors, which a safe load refuses: it "
                "is not a checkpoint that fcos_lib wrote; point to a run's checkpoint.pt")
    return (f"{path} is not a readable checkpoint: corrupt, truncated or not written by fcos_lib "
            f"({type(err).__name__} in torch.load). If it is a run's checkpoint.pt, it was "
            "damaged after it was written (a copy cut short?): copy it again, or train again "
            "(python -m fcos_lib train ...); else point to another file")


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Args:
        path: the checkpoint file.
        map_location: where its tensors go (default: the CPU).

    Raises:
        CheckpointError: the file is missing, damaged or not a training checkpoint, the
            device is not here, memory is short, or the file is from a newer PyTorch; the
            message says which, and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: train one first "
                              "(python -m fcos_lib train --preset shapes --out DIR)")
    device = torch.device(map_location) if map_location is not None else None
    if device is not None and not device_available(device):
        raise CheckpointError(f"cannot load {path} on {device}: there is no such device here "
                              "(load it on the CPU: --device cpu, map_location='cpu')")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning precedes the error
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    # What torch's unpicklers raise on bytes that are not a checkpoint.
    except (RuntimeError, EOFError, KeyError, IndexError, ValueError, pickle.UnpicklingError,
            zipfile.BadZipFile, MemoryError, OSError) as err:
        raise CheckpointError(_explain(err, path, device)) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path} is not an fcos_lib training checkpoint "
                              f"(it needs the keys {REQUIRED_KEYS})")
    return state
