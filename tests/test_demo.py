"""make demo: both mAPs, the training time in torchvision steps, the targets said plainly."""
from __future__ import annotations

import json
import math

import torch

from fcos_lib.checkpoint import load_checkpoint


def test_the_demo_reports_both_maps_and_its_time_in_torchvision_steps(tmp_path, monkeypatch,
                                                                       run_main):
    from tinyrun import TINY_RUN

    import fcos_lib.commands.demo as demo
    from fcos_lib.config import get_preset

    asked = []

    def tiny(name, **overrides):           # the demo's preset, shrunk to seconds
        asked.append(name)
        return get_preset(name, **{**TINY_RUN, "steps": 4, **overrides})

    monkeypatch.setattr(demo, "get_preset", tiny)
    monkeypatch.setattr(demo, "torchvision_step_seconds", lambda: 0.25)
    done = run_main("demo", "--out", tmp_path / "demo", "--no-progress", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert asked == ["demo"] and m["preset"] == "demo"
    model = load_checkpoint(tmp_path / "demo" / "checkpoint.pt")["config"]["model"]
    assert model["center_sampling_radius"] == 1.5                 # 08's two largest gains
    assert [list(r) for r in model["size_ranges"]] == [[0, 32], [32, 64], [64, math.inf]]
    assert 0 <= m["map_coco"] <= m["map50"] <= 1                 # 0.5:0.95 never above 0.5
    # (train_seconds is rounded to 0.1 s in the file: 0.4 steps of 0.25 s)
    assert abs(m["train_torchvision_steps"] - m["train_seconds"] / 0.25) <= 0.25
    assert m["reached_target"] is False and m["val_images"] == 16
    assert (m["target_map50"], m["target_map_coco"], m["target_torchvision_steps"]) == (
        0.95, 0.70, 190)
    assert f"= {m['train_torchvision_steps']} steps of torchvision's FCOS (0.25 s each" in \
        done.stdout and "BELOW the targets" in done.stdout
    for name in ("predictions.png", "loss_curve.png", "checkpoint.pt"):
        assert (tmp_path / "demo" / name).stat().st_size > 0


def test_the_yardstick_times_torchvisions_step_and_leaves_the_random_stream_alone():
    from fcos_lib.yardstick import (
        BATCH,
        SIZE,
        random_batch,
        torchvision_fcos,
        torchvision_step_seconds,
    )

    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    model = torchvision_fcos()
    assert torch.equal(torch.rand(3), expected)            # building it drew nothing
    again = torchvision_fcos()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                  again.state_dict().values(), strict=True))
    raw, normalized, targets = random_batch()
    assert raw.shape == normalized.shape == (BATCH, 3, SIZE, SIZE) and len(targets) == BATCH
    assert all(((t["boxes"][:, 2:] - t["boxes"][:, :2]) >= 16).all() for t in targets)
    seconds = torchvision_step_seconds(repeats=1)
    assert 0 < seconds < 60
