"""Training: schedule, checkpoints, sampler, decoded cache, and the loop itself (overfitting,
exact resume, Ctrl-C, a non-finite loss, two processes with gloo).

The loop tests train the real model on the real shapes dataset at a tiny size (64 px, a few
steps), so that every one takes seconds on a CPU.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from tinyrun import ROOT, assert_same_weights, cli_settings, tiny_config, weights

from fcos_lib.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from fcos_lib.data.cache import DecodedCache
from fcos_lib.distributed import StepBatchSampler
from fcos_lib.optim import lr_factor

# ------------------------------------------------------------------ pieces


def test_lr_schedule_warmup_then_steps():
    cfg = SimpleNamespace(steps=100, warmup_steps=10, warmup_factor=0.001, schedule="step",
                          milestones=(0.6, 0.9), gamma=0.1)
    factors = [lr_factor(s, cfg) for s in range(100)]
    assert factors[0] == pytest.approx(0.001)
    assert all(a < b for a, b in zip(factors[:10], factors[1:11]))  # rising during warm-up
    assert factors[10:60] == [1.0] * 50
    assert factors[60:90] == pytest.approx([0.1] * 30)
    assert factors[90:] == pytest.approx([0.01] * 10)
    cosine = SimpleNamespace(**{**vars(cfg), "schedule": "cosine", "warmup_steps": 0})
    assert lr_factor(0, cosine) == 1.0 and lr_factor(50, cosine) == pytest.approx(0.5)
    assert lr_factor(100, cosine) == pytest.approx(0.0, abs=1e-12)


def test_checkpoint_is_atomic_and_restores_random_states(tmp_path):
    path = tmp_path / "run" / "checkpoint.pt"
    torch.manual_seed(3)
    state = {"model": {"w": torch.arange(4.0)}, "step": 7, "config": {"lr": 0.1},
             "rng": rng_state()}
    expected = torch.rand(3)  # what follows the saved random state
    save_checkpoint(state, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]  # no temp left
    loaded = load_checkpoint(path)
    set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected)
    assert loaded["step"] == 7 and torch.equal(loaded["model"]["w"], torch.arange(4.0))


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"model": {"w": torch.zeros(2)}, "step": 7, "config": {}}, path)
    before = path.read_bytes()
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):  # half the bytes reach the disk, then the "kill"
        if isinstance(f, (str, os.PathLike)):
            f = open(f, "wb")
        f.write(b"PK\x03\x04 half a checkpoint")
        f.flush()
        raise OSError("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="killed"):
        save_checkpoint({"model": {"w": torch.ones(2)}, "step": 8, "config": {}}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before  # nothing partial at the final path
    assert load_checkpoint(path)["step"] == 7


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an fcos_lib training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def test_sampler_resumes_mid_epoch_and_shards_processes():
    full = take(iter(StepBatchSampler(10, 3, seed=1)), 9)  # 3 batches an epoch, 3 epochs
    assert take(iter(StepBatchSampler(10, 3, seed=1, start_step=4)), 5) == full[4:]
    epoch = [i for batch in full[:3] for i in batch]
    assert len(set(epoch)) == 9  # no repeats within an epoch
    assert full[:3] != full[3:6]  # reshuffled every epoch
    ranks = [take(iter(StepBatchSampler(10, 2, seed=1, rank=r, world_size=2)), 2)
             for r in range(2)]
    seen = [i for r in ranks for batch in r for i in batch]
    assert len(seen) == len(set(seen)) == 8  # the two processes never share an image
    with pytest.raises(ValueError, match="cannot fill a batch"):
        StepBatchSampler(3, 4, seed=0)


class CountingDataset:
    """A two-stage dataset (``load`` slow, ``finish`` fast) that counts its loads."""

    class_names = ["a"]

    def __init__(self, n=6, cache_key="counting-6"):
        self.n, self.loads, self.cache_key = n, 0, cache_key

    def __len__(self):
        return self.n

    def load(self, i):
        self.loads += 1
        image = torch.full((3, 4 + i, 5), i, dtype=torch.uint8)  # sizes may differ
        return image, {"boxes": torch.tensor([[0.0, 0, i + 1, 2]]), "labels": torch.tensor([0])}

    def finish(self, image, target):
        target["boxes"] += 0  # finish may change the target in place
        return image.float() / 255, target

    def __getitem__(self, i):
        return self.finish(*self.load(i))


@pytest.mark.parametrize("on_disk", [False, True])
def test_decoded_cache_matches_dataset_and_decodes_once(tmp_path, on_disk):
    data = CountingDataset()
    cache = DecodedCache(data, tmp_path if on_disk else None, num_workers=0, progress=False)
    assert data.loads == 6 and len(cache) == 6 and cache.class_names == ["a"]
    for i in (0, 5, 5, 2):
        image, target = cache[i]
        expect_image, expect_target = data.finish(*CountingDataset().load(i))
        assert torch.equal(image, expect_image)
        assert torch.equal(target["boxes"], expect_target["boxes"])
    assert data.loads == 6  # served from the cache, never decoded again
    if on_disk:
        again = CountingDataset()
        reread = DecodedCache(again, tmp_path, progress=False)
        assert again.loads == 0 and torch.equal(reread[3][0], cache[3][0])
        assert not list(tmp_path.glob("*.tmp"))


# ------------------------------------------------------------------ the loop, for real

def test_loss_goes_down_on_a_fixed_batch():
    from fcos_lib.data import ShapesDataset, collate
    from fcos_lib.model import FCOS

    torch.manual_seed(0)
    data = ShapesDataset("train", image_size=64, length=4)
    images, targets = collate([data[i] for i in range(4)])
    model = FCOS(num_classes=len(data.class_names), backbone="tiny").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    totals = []
    for _ in range(40):
        losses = model(images, targets)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        totals.append(losses["total"].item())
    assert totals[-1] < 0.5 * totals[0], totals


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    from fcos_lib.runlog import read_metrics
    from fcos_lib.train import train

    straight = train(tiny_config(tmp_path / "straight"), progress=False)

    def interrupt(record):      # Ctrl-C while step 6 is logged
        if record.get("step") == 6:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = tiny_config(tmp_path / "stopped")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_log=interrupt, progress=False)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 6
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, progress=False)  # never silently overwritten
    resumed = train(cfg, resume=True, progress=False)
    assert load_checkpoint(resumed)["step"] == 12
    assert_same_weights(weights(straight), weights(resumed))
    steps = [r["step"] for r in read_metrics(tmp_path / "stopped") if "total" in r]
    assert steps == list(range(1, 13))  # no line lost or repeated across the stop
    assert (tmp_path / "stopped" / "loss_curve.png").stat().st_size > 0


def test_non_finite_loss_stops_with_a_clear_message(tmp_path, monkeypatch):
    from fcos_lib.model import FCOS
    from fcos_lib.train import train
    from fcos_lib.trainer import NonFiniteLossError

    forward, calls = FCOS.forward, []

    def poisoned(self, images, targets=None):
        out = forward(self, images, targets)
        if targets is not None:
            calls.append(1)
            if len(calls) == 7:  # step 7 goes wrong, after the checkpoint of step 4
                out = {k: v * float("nan") for k, v in out.items()}
        return out

    monkeypatch.setattr(FCOS, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 7 .*checkpoint.*step 4"):
        train(tiny_config(tmp_path / "nan"), progress=False)
    state = load_checkpoint(tmp_path / "nan" / "checkpoint.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_two_processes_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", "-m", "fcos_lib"]
    done = subprocess.run([*torchrun, *cli_settings(out, steps=6)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1  # rank 0 alone reports
    from fcos_lib.model import FCOS

    model, config = FCOS.from_checkpoint(out / "checkpoint.pt")
    assert config["step"] == 6 and config["class_names"]
    assert config["train"]["batch_size"] == 4  # 2 images on each of the 2 processes
    (detections,) = model.predict(torch.zeros(1, 3, 64, 64))
    assert set(detections) == {"boxes", "scores", "labels", "levels"}


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd (Linux)")
def test_filling_a_cache_in_workers_leaks_no_file_descriptors():
    from fcos_lib.data import ShapesDataset

    def open_files():
        return len(list(Path("/proc/self/fd").iterdir()))

    data = ShapesDataset("val", image_size=64, length=200)
    DecodedCache(data, num_workers=2, progress=False)  # the workers' own set-up
    before = open_files()
    caches = [DecodedCache(data, num_workers=2, progress=False) for _ in range(2)]
    assert open_files() - before < 10, "samples received from workers kept their descriptors"
    assert len(caches[1]) == 200


@pytest.mark.parametrize("preset, network", [("shapes", "tiny"), ("voc2007-tiny", "course"),
                                             ("paper", "paper")])
def test_training_presets_build_the_model_presets(preset, network):
    """A training preset's model is the model preset of the same name in fcos_lib.model."""
    from fcos_lib.config import get_preset
    from fcos_lib.model import FCOS
    from fcos_lib.train import build_model

    cfg = get_preset(preset, model={"pretrained": False})
    model = build_model(cfg, num_classes=20)
    assert model.config == FCOS.from_preset(network, 20).config


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_steps_run_and_stay_finite(tmp_path, amp):
    """The CUDA recipes on the CPU: bfloat16 autocast, and float16 with the gradient scaler
    (unscale before clipping, skipped steps on overflow)."""
    from fcos_lib.optim import amp_dtype
    from fcos_lib.runlog import read_metrics
    from fcos_lib.train import train

    assert amp_dtype("auto", torch.device("cpu")) is None  # the CPU default stays float32
    path = train(tiny_config(tmp_path / amp, amp=amp, steps=4), progress=False)
    state = load_checkpoint(path)
    assert state["step"] == 4
    assert bool(state["scaler"]) == (amp == "fp16")  # a scaler only where float16 needs one
    losses = [r["total"] for r in read_metrics(tmp_path / amp) if "total" in r]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_the_voc_preset_trains_on_a_voc_folder_with_a_disk_cache(tmp_path, monkeypatch):
    """The course's recipe end to end on a small VOC-format tree (RegNetX-400MF, random init:
    no download here), its decoded images cached on disk and reused by the next run."""
    from fcos_lib.config import get_preset
    from fcos_lib.data.voc import VOCDataset
    from fcos_lib.model import FCOS
    from fcos_lib.train import train
    from tests.vocfake import make_voc_tree

    make_voc_tree(tmp_path / "data")
    cache = tmp_path / "cache"
    cfg = get_preset("voc2007-tiny", out=str(tmp_path / "voc"), image_size=64, batch_size=2,
                     steps=2, warmup_steps=0, num_workers=0, eval_images=2, device="cpu",
                     model={"pretrained": False}, cache="disk", cache_dir=str(cache),
                     dataset_kwargs={"root": str(tmp_path / "data")})
    loads = []
    decode = VOCDataset.load

    def counted(self, index):
        loads.append(index)
        return decode(self, index)

    monkeypatch.setattr(VOCDataset, "load", counted)
    path = train(cfg, progress=False)
    model, config = FCOS.from_checkpoint(path)
    assert config["model"]["backbone"] == "regnet_x_400mf" and len(config["class_names"]) == 20
    assert sorted(p.suffix for p in cache.iterdir()) == [".pt", ".pt", ".u8", ".u8"]
    assert loads  # the first run decoded the images (in this process: a tiny set, no workers)
    # The same run again reads the cache from disk, and starts from the same weights.
    loads.clear()
    again = train(dataclasses.replace(cfg, out=str(tmp_path / "again")), progress=False)
    assert loads == []  # not one image decoded again
    assert torch.equal(load_checkpoint(again)["model"]["head.cls_logits.weight"],
                       load_checkpoint(path)["model"]["head.cls_logits.weight"])


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("setting, message", [
    ({"steps": 0}, r"steps=0: must be a whole number >= 1"),
    ({"batch_size": 0}, r"batch_size=0: must be"),
    ({"log_every": 0}, r"log_every=0: must be"),
    ({"checkpoint_every": -1}, r"checkpoint_every=-1: must be"),
    ({"lr": 0.0}, r"lr=0.0: must be a number > 0"),
    ({"lr": "fast"}, r"lr='fast': must be a number > 0"),
    ({"cache": "ram"}, r"cache='ram': choose one of \('memory', 'disk', 'none'\)"),
    ({"optimizer": "adam"}, r"optimizer='adam': choose one of"),
    ({"schedule": "linear"}, r"schedule='linear': choose one of"),
    ({"amp": "fp8"}, r"amp='fp8': choose one of"),
])
def test_a_bad_setting_is_refused_when_the_config_is_made(setting, message):
    from fcos_lib.config import TrainConfig, get_preset

    with pytest.raises(ValueError, match=message):
        get_preset("shapes", **setting)
    with pytest.raises(ValueError, match=message):
        TrainConfig(**setting)


def test_resume_with_changed_settings_is_refused(tmp_path):
    from fcos_lib.train import train

    cfg = tiny_config(tmp_path / "run", steps=2, checkpoint_every=2)
    train(cfg, progress=False)
    changed = tiny_config(tmp_path / "run", steps=4, batch_size=2, model={"fpn_channels": 16})
    with pytest.raises(ValueError, match=r"cannot resume .*fpn_channels.*batch_size: 4 in the "
                                         r"checkpoint, 2 now.*another output folder"):
        train(changed, resume=True, progress=False)
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2  # left as it was
    # Going further and reporting differently is still a resume of the same run.
    path = train(dataclasses.replace(cfg, steps=3, log_every=3), resume=True, progress=False)
    assert load_checkpoint(path)["step"] == 3


def test_cli_errors_are_one_line_not_a_traceback(tmp_path, run_main):
    from fcos_lib.train import train

    train(tiny_config(tmp_path / "run", steps=2, checkpoint_every=2), progress=False)
    cli = run_main
    unknown = cli("train", "--out", str(tmp_path / "run"), "--resume", "--set", "lrr=1")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "error: unknown setting(s) ['lrr']" in unknown.stderr
    changed = cli("train", "--out", str(tmp_path / "run"), "--resume", "--set", "batch_size=2")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert "batch_size: 4 in the checkpoint, 2 now" in changed.stderr
    demo = cli("demo", "--out", str(tmp_path / "demo"), "--steps", "0")
    assert demo.returncode == 2 and "Traceback" not in demo.stderr
    assert "error: steps=0: must be a whole number >= 1" in demo.stderr
