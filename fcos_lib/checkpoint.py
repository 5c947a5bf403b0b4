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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
    check_layout(state, path, deep=False)
    return state


def _first(keys: Iterable[Any], count: int = 3) -> str:
    """A few of ``keys``, for a message: ``'a', 'b', 'c' and 4 more``."""
    keys = [str(k) for k in keys]
    more = f" and {len(keys) - count} more" if len(keys) > count else ""
    return ", ".join(repr(k) for k in keys[:count]) + more


NOT_OURS = ("point to a checkpoint.pt written by `python -m fcos_lib train` (or train one: "
            "python -m fcos_lib train --preset shapes --out DIR)")


def check_layout(state: Any, path: str | os.PathLike, deep: bool = True) -> None:
    """Raise :class:`CheckpointError` unless ``state`` is laid out as a training run writes
    it: the keys :data:`REQUIRED_KEYS`, and with ``deep``, ``model`` a dict of tensors and
    ``config`` a dict with ``train`` and ``model`` (dicts) and ``class_names`` (a list). The
    message names what is missing and the keys the file has instead (another program's file).

    >>> check_layout({"state_dict": {}, "epoch": 3}, "x.pt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fcos_lib.checkpoint.CheckpointError: x.pt is not an fcos_lib training checkpoint: it has
    no 'model', 'step', 'config' (it has 'epoch', 'state_dict'); point to a checkpoint.pt ...
    """
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not an fcos_lib training checkpoint: it holds a "
                              f"{type(state).__name__}, not a dict; {NOT_OURS}")
    missing, where, has = [k for k in REQUIRED_KEYS if k not in state], "it", sorted(state)
    if deep and not missing:
        config, weights = state["config"], state["model"]
        if not isinstance(config, dict):
            missing = ["config (a dict)"]
        else:
            missing = [f"config[{k!r}]" for k, kind in (("train", dict), ("model", dict),
                                                         ("class_names", list))
                       if not isinstance(config.get(k), kind)]
            where, has = ("its config", sorted(config)) if missing else (where, has)
        if not missing and not (isinstance(weights, dict) and all(
                isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items())):
            missing = ["model (a dict of tensors)"]
    if missing:
        raise CheckpointError(f"{path} is not an fcos_lib training checkpoint: it has no "
                              f"{_first(missing)} ({where} has {_first(has, 5) or 'nothing'}); "
                              f"{NOT_OURS}")


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor],
                 path: str | os.PathLike) -> None:
    """``module.load_state_dict(weights)``, or a one-line :class:`CheckpointError` naming the
    first few missing, unexpected and misshapen keys when they do not fit (a checkpoint of
    an older layout, a renamed module, another program's weights)."""
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    misshapen = [f"{k} {tuple(weights[k].shape)} in the file, {tuple(v.shape)} in the model"
                 for k, v in own.items() if k in weights and weights[k].shape != v.shape]
    problems = [f"{len(keys)} {what}: {_first(keys) if what != 'of another shape' else keys[0]}"
                for what, keys in (("missing", missing), ("unexpected", unexpected),
                                   ("of another shape", misshapen)) if keys]
    if problems:
        raise CheckpointError(
            f"the weights in {path} do not fit the model its config describes ("
            f"{'; '.join(problems)}): it was written by another version of fcos_lib or "
            "another program; load it with the version that wrote it, or train again "
            "(python -m fcos_lib train)")
    module.load_state_dict(weights)


RESUME_KEYS = ("optimizer", "scheduler", "rng")


@contextmanager
def resuming(state: dict[str, Any], path: str | os.PathLike) -> Iterator[None]:
    """Around loading a checkpoint's training states (optimizer, schedule, random state):
    a checkpoint without them, or whose states do not fit this run (another program's,
    another version's), becomes one :class:`CheckpointError` saying what to do."""
    lacking = [k for k in RESUME_KEYS if k not in state]
    fix = ("use it with predict or evaluate, or start a new run in another --out folder "
           "(python -m fcos_lib train --out DIR)")
    if lacking:
        raise CheckpointError(f"cannot resume {path}: it has no {_first(lacking)} (it holds "
                              f"{_first(sorted(state), 6)}), only what a finished model "
                              f"needs; {fix}")
    try:
        yield
    except CheckpointError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        said = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot resume {path}: its training states do not fit this run "
                              f"({type(err).__name__}: {said}); it was written by another "
                              f"version of fcos_lib or another program; {fix}") from None
