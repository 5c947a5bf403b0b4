"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """An untrained tiny model saved as train() saves it (64-pixel shapes)."""
    from dataclasses import asdict

    from fcos_lib.checkpoint import save_checkpoint
    from fcos_lib.config import get_preset
    from fcos_lib.data import SHAPE_CLASSES
    from fcos_lib.model import FCOS

    torch.manual_seed(0)
    model = FCOS(len(SHAPE_CLASSES))
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    config = {"train": asdict(get_preset("shapes", image_size=64)), "model": asdict(model.config),
              "class_names": list(SHAPE_CLASSES)}
    save_checkpoint({"model": model.state_dict(), "step": 0, "config": config}, path)
    return path


class Ran:
    """What a command did, in the shape of ``subprocess.CompletedProcess``."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run_main(capsys):
    """``run_main("train", "--out", ...)``: the command line's ``main(argv)`` called in this
    process, for tests of what a command says and returns (a Python process each costs
    seconds; tests of signals, kills and two processes start real ones)."""
    from fcos_lib.commands import main

    def run(*args) -> Ran:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as stop:                  # argparse's own errors and --help
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)
    return run
