"""The GPU check (bench/gpu_check.py): without CUDA it says so and measures the loader; its
CUDA path runs here with the device set to the CPU; its timing and goals are checked on
steps of known length."""
from __future__ import annotations

import re
import time

import pytest
import torch

from bench import gpu_check
from fcos_lib.data import VOC2007DetectionTiny


def test_without_cuda_it_says_so_and_measures_the_loader(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--steps", "2", "--warmup", "1", "--images", "16"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no CUDA on this machine")
    rate = float(re.search(r"data loader alone: (\d+) images/s", out).group(1))
    assert rate > 0 and "needs 160 images/s" in out   # 9000 x 16 images in 15 minutes


def test_the_cuda_path_runs_on_the_cpu(capsys):
    code = gpu_check.main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--images", "16",
                           "--batch-size", "4", "--no-notebooks"])
    out = capsys.readouterr().out
    assert code == 0
    assert "FPN of 128 channels over P3-P5, 2-conv stems" in out and "batch 4 x 224 px" in out
    rows = {}
    for name in ("fcos_lib", "  channels-last", "torchvision FCOS"):
        line = next(x for x in out.split("\n") if x.startswith(name + " "))
        step, rate, wait, share, minutes = map(float, re.findall(r"\d+\.\d+", line))
        assert step > 0 and 0 <= wait <= step and rate == pytest.approx(4000 / step, rel=0.05)
        assert minutes == pytest.approx(9000 * step / 60_000, rel=0.01) and "n/a" in line
        rows[name] = step
    ratio, cl_ratio = map(float, re.search(r"step time: (\d+\.\d+) \((\d+\.\d+) "
                                           r"channels-last\)", out).groups())
    assert ratio == pytest.approx(rows["fcos_lib"] / rows["torchvision FCOS"], abs=0.02)
    assert cl_ratio == pytest.approx(rows["  channels-last"] / rows["torchvision FCOS"], abs=0.02)
    assert "goal, 9000 steps in under 15 min" in out and "at most 5 % of a step" in out


def test_waiting_for_data_is_timed_apart_from_the_step():
    def batches():
        while True:
            time.sleep(0.02)
            yield "batch"

    t = gpu_check.measure(lambda batch: time.sleep(0.01), batches(), steps=5, warmup=1,
                          device=torch.device("cpu"), batch_size=8)
    assert t.wait_ms == pytest.approx(20, abs=8) and t.step_ms == pytest.approx(30, abs=10)
    assert t.images_per_s == pytest.approx(8000 / t.step_ms, rel=0.01)
    assert t.wait_share == pytest.approx(t.wait_ms / t.step_ms)


@pytest.mark.parametrize("step_ms, wait_ms, speed, data", [
    (50.0, 1.0, "met", "met"),          # 9000 x 50 ms = 7.5 min; 2 % waiting
    (150.0, 1.0, "NOT met", "met"),     # 22.5 min
    (50.0, 5.0, "met", "NOT met")])     # 10 % waiting
def test_the_goals(step_ms, wait_ms, speed, data):
    timing = gpu_check.Timing(step_ms, wait_ms, 16000 / step_ms, 900.0)
    first, second = gpu_check._verdicts(timing, 9000, "Tesla T4")
    assert first.startswith(f"goal, 9000 steps in under 15 min: {speed},")
    assert f"about {9000 * step_ms / 60_000:.1f} min" in first and "T4-class" not in first
    assert second.startswith(f"goal, data loading at most 5 % of a step: {data} ")
    assert "T4-class GPU; this is NVIDIA A100" in gpu_check._verdicts(timing, 9000,
                                                                      "NVIDIA A100")[0]


def test_the_generated_folder_is_read_as_voc(tmp_path):
    root = gpu_check.make_voc_folder(tmp_path, images=12)
    train = VOC2007DetectionTiny(root, "train", image_size=224)
    val = VOC2007DetectionTiny(root, "val", image_size=224)
    assert len(train) == 12 and len(val) == 1
    for i in range(len(train)):
        image, target = train[i]
        assert image.shape == (3, 224, 224) and 1 <= len(target["boxes"]) <= 5
        boxes = target["boxes"]
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 224).all()


def test_the_notebooks_it_runs():
    command = gpu_check.notebook_command()
    assert command[1:3] == ["-m", "pytest"]
    assert {"notebooks/06_train.ipynb", "notebooks/07_evaluate.ipynb"} <= set(command)
    assert (gpu_check.ROOT / "notebooks" / "06_train.ipynb").is_file()
