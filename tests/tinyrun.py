"""Small training runs for the tests: a tiny shapes config, the command line in a process of
its own, and weights compared bit for bit. Shared by test_train, test_faults and test_safety."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from fcos_lib.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = dict(image_size=64, batch_size=4, steps=12, warmup_steps=2, log_every=1,
                checkpoint_every=4, eval_every=0, eval_images=8, lr=0.01, device="cpu",
                dataset_kwargs={"length": 16})


def tiny_config(out, **overrides):
    """The shapes preset shrunk to 12 steps of 4 images of 64 px, writing to ``out``."""
    from fcos_lib.config import get_preset

    return get_preset("shapes", out=str(out), **{**TINY_RUN, **overrides})


def weights(path):
    """The model weights of a checkpoint."""
    return load_checkpoint(path)["model"]


def assert_same_weights(a, b):
    """Two state dicts equal bit for bit."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def cli(*args, **kw):
    """``python -m fcos_lib ARGS`` in a process of its own (for what needs one: signals,
    kills, a second process; tests of messages use the ``run_main`` fixture)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "fcos_lib", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, **kw)


def cli_settings(out, steps=12):
    """The ``train`` arguments of :func:`tiny_config`."""
    sets = [f"{k}={v!r}" for k, v in TINY_RUN.items() if k != "steps"]
    return ["train", "--out", str(out), "--steps", str(steps), "--no-progress",
            *[a for s in sets for a in ("--set", s)]]


def poison(monkeypatch, step: int, how):
    """Make the model's training forward of ``step`` (1-based) go through ``how``."""
    from fcos_lib.model import FCOS

    forward, calls = FCOS.forward, []

    def poisoned(self, images, targets=None):
        out = forward(self, images, targets)
        if targets is not None:
            calls.append(1)
            if len(calls) == step:
                out = {k: how(v) for k, v in out.items()}
        return out

    monkeypatch.setattr(FCOS, "forward", poisoned)
