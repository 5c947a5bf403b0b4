"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """An untrained tiny model saved as train() saves it (64-pixel shapes)."""
    from dataclasses import asdict

    from fcos_lib.checkpoint import save_checkpoint
    from fcos_lib.data import SHAPE_CLASSES
    from fcos_lib.model import FCOS
    from fcos_lib.config import get_preset

    torch.manual_seed(0)
    model = FCOS(len(SHAPE_CLASSES))
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    config = {"train": asdict(get_preset("shapes", image_size=64)), "model": asdict(model.config),
              "class_names": list(SHAPE_CLASSES)}
    save_checkpoint({"model": model.state_dict(), "step": 0, "config": config}, path)
    return path
