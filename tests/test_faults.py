"""Faults injected on purpose: nothing lost, nothing stale, every failure a way forward.

Non-finite gradients behind a finite loss, weights gone bad before a save, the advice that
follows a stopped run taken literally, caches whose sources changed, logs cut off mid-line.
Each test failed on the code before its fix.
"""
from __future__ import annotations

import contextlib
import json

import pytest
import torch
from tinyrun import cli, poison, tiny_config

from fcos_lib.checkpoint import load_checkpoint
from fcos_lib.optim import lr_factor


class InfiniteGradient(torch.autograd.Function):
    """Identity going forward (the loss stays finite), infinite coming back."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def finite(state) -> bool:
    return all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("clip", [10.0, None])
def test_an_infinite_gradient_behind_a_finite_loss_stops_before_the_update(tmp_path,
                                                                           monkeypatch, clip):
    from fcos_lib.train import train
    from fcos_lib.trainer import NonFiniteLossError

    poison(monkeypatch, 7, InfiniteGradient.apply)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite gradient at step 7 .*step 4"):
        train(tiny_config(out, clip_grad_norm=clip), progress=False)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 4 and finite(state)


def test_weights_that_are_not_finite_are_never_saved(tmp_path):
    from fcos_lib.data import ShapesDataset
    from fcos_lib.model import FCOS
    from fcos_lib.trainer import NonFiniteLossError, Trainer

    cfg = tiny_config(tmp_path / "run")
    trainer = Trainer(cfg, FCOS(6), ShapesDataset("train", image_size=64, length=8))
    trainer.save()
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters())[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite weights"):
        trainer.save()
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before


def test_the_advice_after_a_non_finite_loss_works_as_written(tmp_path, monkeypatch, run_main):
    """Stopped by a NaN at step 7, the run resumes from step 4 with a lower rate, as the
    message says, in Python and on the command line; the change is in the log."""
    from fcos_lib.runlog import read_metrics
    from fcos_lib.train import train
    from fcos_lib.trainer import NonFiniteLossError

    poison(monkeypatch, 7, lambda v: v * float("nan"))
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as stopped:
        train(tiny_config(out), progress=False)
    message = str(stopped.value)
    assert "--resume --change-schedule" in message and "change_schedule=True" in message
    monkeypatch.undo()
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())

    # Without the switch a changed rate is refused, and the refusal names the switch.
    with pytest.raises(ValueError, match="lr: 0.01 in the checkpoint, 0.002 now.*"
                                         "--change-schedule"):
        train(tiny_config(out, lr=0.002), resume=True, progress=False)
    train(tiny_config(out, lr=0.002), resume=True, change_schedule=True, progress=False)
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 12 and finite(state) and state["config"]["train"]["lr"] == 0.002
    assert {"step": 4, "changed": {"lr": [0.01, 0.002]}} in read_metrics(out)
    group = state["optimizer"]["param_groups"][0]                 # the new rate, scheduled
    assert group["initial_lr"] == 0.002
    assert group["lr"] == pytest.approx(0.002 * lr_factor(12, tiny_config(out)))

    # The command line, as the message writes it.
    refused = run_main("train", "--out", tmp_path / "copy", "--resume", "--set", "lr=0.002",
                       "--no-progress")
    assert refused.returncode == 2 and "--change-schedule" in refused.stderr
    done = run_main("train", "--out", tmp_path / "copy", "--resume", "--change-schedule",
                    "--set", "lr=0.002", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(tmp_path / "copy" / "checkpoint.pt")["step"] == 12
    changes = [r for r in read_metrics(tmp_path / "copy") if "changed" in r]
    assert changes == [{"step": 4, "changed": {"lr": [0.01, 0.002]}}]
    assert json.dumps(changes)


# ------------------------------------------------------------------ caches that go stale


def voc_cache(tree, directory):
    from fcos_lib.data.cache import DecodedCache
    from fcos_lib.data.voc import VOCDataset

    return DecodedCache(VOCDataset(tree, "trainval", image_size=32), directory, num_workers=0,
                        progress=False)


def test_a_cache_on_disk_notices_a_corrected_annotation_and_a_replaced_image(tmp_path, capsys):
    from PIL import Image
    from vocfake import make_voc_tree

    tree, cache = make_voc_tree(tmp_path), tmp_path / "cache"
    first = voc_cache(tree, cache)
    assert capsys.readouterr().out == ""
    again = voc_cache(tree, cache)                                 # untouched: reused
    assert "decoding the images again" not in capsys.readouterr().out
    assert torch.equal(again.pixels, first.pixels)
    # An annotation corrected: the dog's box moves.
    xml = tree / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace("<xmin>11</xmin>", "<xmin>21</xmin>"))
    fixed = voc_cache(tree, cache)
    assert "changed since" in capsys.readouterr().out
    assert not torch.equal(fixed.load(0)[1]["boxes"], first.load(0)[1]["boxes"])
    assert torch.equal(fixed.load(0)[1]["boxes"], fixed.dataset.load(0)[1]["boxes"])
    # An image replaced by another of the same size.
    Image.new("RGB", (60, 40), (250, 0, 0)).save(tree / "JPEGImages" / "000001.jpg")
    replaced = voc_cache(tree, cache)
    assert "changed since" in capsys.readouterr().out
    assert torch.equal(replaced.load(0)[0], replaced.dataset.load(0)[0])
    assert not torch.equal(replaced.load(0)[0], fixed.load(0)[0])


def test_a_half_written_cache_is_decoded_again_and_leftovers_of_killed_writes_go(tmp_path,
                                                                                  capsys):
    from vocfake import make_voc_tree

    tree, cache = make_voc_tree(tmp_path), tmp_path / "cache"
    expected = voc_cache(tree, cache).pixels.clone()    # (a copy: the cache maps its file)
    (u8,) = cache.glob("*.u8")
    u8.write_bytes(u8.read_bytes()[:100])                          # cut off by a crash
    dead = cache / f".{u8.name}.999999999.tmp"                      # a killed write's leftover
    dead.write_bytes(b"\0" * 1000)
    rebuilt = voc_cache(tree, cache)
    assert "is damaged" in capsys.readouterr().out
    assert torch.equal(rebuilt.pixels, expected) and not dead.exists()


def test_the_fingerprint_of_5000_images_notices_one_changed_file(tmp_path, capsys):
    """One changed file out of 10000 changes the fingerprint; what that check costs is
    printed (``bench/`` holds no target for it)."""
    import time

    from fcos_lib.data.cache import fingerprint

    class Files:
        def __init__(self, paths):
            self.paths = paths

        def sources(self):
            return self.paths

    paths = []
    for i in range(5000):
        for suffix in (".jpg", ".xml"):
            path = tmp_path / f"{i:06d}{suffix}"
            path.write_bytes(b"x")
            paths.append(path)
    start = time.perf_counter()
    first = fingerprint(Files(paths))
    seconds = time.perf_counter() - start
    assert fingerprint(Files(paths)) == first
    paths[7].write_bytes(b"xy")                                    # one file changed
    assert fingerprint(Files(paths)) != first
    with capsys.disabled():
        print(f"\ncache fingerprint of 5000 images (10000 files): {1000 * seconds:.0f} ms")


# ------------------------------------------------------------------ logs cut off mid-line


def test_a_log_cut_off_mid_line_is_read_resumed_and_appended_after(tmp_path, capsys):
    from fcos_lib.runlog import LOG_NAME, append_record, read_metrics, truncate_metrics

    log = tmp_path / LOG_NAME
    append_record(tmp_path, {"step": 1, "total": 2.0})
    append_record(tmp_path, {"step": 2, "total": 1.5})
    with open(log, "a") as f:
        f.write('{"step": 3, "tot')                             # the crash, mid-write
    assert read_metrics(tmp_path) == [{"step": 1, "total": 2.0}, {"step": 2, "total": 1.5}]
    assert "skipped 1 damaged line(s) (line 3" in capsys.readouterr().err
    append_record(tmp_path, {"step": 3, "total": 1.2})          # a resumed run goes on
    assert read_metrics(tmp_path)[-1] == {"step": 3, "total": 1.2}
    truncate_metrics(tmp_path, 2)                               # a resume from step 2
    assert log.read_text() == '{"step": 1, "total": 2.0}\n{"step": 2, "total": 1.5}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOG_NAME]


def test_a_run_killed_mid_log_line_resumes_and_plots(tmp_path, capsys):
    """The whole path: a run whose log lost half a line trains on and draws its curves."""
    from fcos_lib.curves import save_loss_curve
    from fcos_lib.runlog import LOG_NAME, read_metrics
    from fcos_lib.train import train

    out = tmp_path / "run"
    train(tiny_config(out, steps=8), progress=False)
    text = (out / LOG_NAME).read_text()
    (out / LOG_NAME).write_text(text + text.splitlines()[-1][:17])
    train(tiny_config(out, steps=12), resume=True, progress=False)
    steps = [r["step"] for r in read_metrics(out) if "total" in r]
    assert steps == list(range(1, 13))
    save_loss_curve(out)


# ------------------------------------------------------------------ stops, resumed exactly


def test_ctrl_c_in_the_middle_of_a_step_finishes_it_and_resumes_exactly(tmp_path, monkeypatch,
                                                                        capsys):
    """Ctrl-C in step 7's forward, its batch (and random flips) drawn: the handler only sets
    the flag; step 7 finishes, is logged and saved, and the resume is exact."""
    import os
    import signal

    from tinyrun import assert_same_weights, weights

    from fcos_lib.runlog import read_metrics
    from fcos_lib.train import train

    straight = train(tiny_config(tmp_path / "straight"), progress=False)

    sent = []

    def interrupted(v):         # (called once per loss term: one Ctrl-C only)
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return v

    poison(monkeypatch, 7, interrupted)
    cfg = tiny_config(tmp_path / "stopped")
    before = signal.getsignal(signal.SIGINT)     # (Python's default; pytest-xdist's: ignore)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 7
    assert max(r["step"] for r in read_metrics(tmp_path / "stopped")) == 7
    said = capsys.readouterr().out
    assert "stopping after step 7" in said and "checkpoint of step 7 saved" in said
    assert signal.getsignal(signal.SIGINT) is before                       # put back
    monkeypatch.undo()
    resumed = train(cfg, resume=True, progress=False)
    assert_same_weights(weights(straight), weights(resumed))


def test_an_interrupt_raised_inside_a_step_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                      capsys):
    """A KeyboardInterrupt raised in step 7's forward (a second Ctrl-C, or one where no
    handler is set): nothing of step 7 is saved, the checkpoint of step 4 stays and resumes
    to the weights of a run never stopped."""
    from tinyrun import assert_same_weights, weights

    from fcos_lib.train import train

    straight = train(tiny_config(tmp_path / "straight"), progress=False)

    def interrupted(v):
        raise KeyboardInterrupt

    poison(monkeypatch, 7, interrupted)
    cfg = tiny_config(tmp_path / "stopped")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["step"] == 4
    assert "interrupted after step 6: the checkpoint of step 4" in capsys.readouterr().out
    monkeypatch.undo()
    resumed = train(cfg, resume=True, progress=False)
    assert_same_weights(weights(straight), weights(resumed))


def test_a_second_ctrl_c_stops_at_once(tmp_path, monkeypatch):
    """Ctrl-C twice in step 7: the run stops inside the step, keeping step 4's checkpoint."""
    import os
    import signal

    from fcos_lib.train import train

    def twice(v):               # called once per loss term: the second call stops
        os.kill(os.getpid(), signal.SIGINT)
        return v

    poison(monkeypatch, 7, twice)
    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out), progress=False)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


STOPPED_STEPS = 40


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The weights of a run of :data:`STOPPED_STEPS` steps never stopped, what the stopped
    runs must resume to: trained in this process on one thread, as their processes train
    (``OMP_NUM_THREADS=1``), with the settings their command lines give."""
    from tinyrun import weights

    from fcos_lib.train import train

    with one_thread():
        path = train(tiny_config(tmp_path_factory.mktemp("straight"), steps=STOPPED_STEPS),
                     progress=False)
    return weights(path)


@contextlib.contextmanager
def one_thread():
    """This process's torch on one thread, as the stopped runs' processes are: the same
    arithmetic, bit for bit, for what runs here (the reference, the last resume)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def test_sigterm_saves_the_last_step_and_the_run_resumes_exactly(tmp_path, straight, run_main):
    """What Colab and job schedulers send: the command saves, exits with 143, and resumes to
    the weights of a run never stopped."""
    import signal
    import subprocess
    import sys
    import time

    from tinyrun import ROOT, assert_same_weights, cli_settings, weights

    steps = STOPPED_STEPS
    out = tmp_path / "stopped"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fcos_lib", *cli_settings(out, steps=steps)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    log = out / "metrics.jsonl"
    start = time.monotonic()
    while not (log.exists() and log.read_text().count("\n") >= 6):
        assert proc.poll() is None and time.monotonic() - start < 120, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    saved = load_checkpoint(out / "checkpoint.pt")["step"]
    from fcos_lib.runlog import read_metrics

    assert 6 <= saved < steps
    assert saved == max(r["step"] for r in read_metrics(out))      # the last finished step
    assert f"terminated: checkpoint of step {saved}" in stdout
    with one_thread():
        done = run_main("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert_same_weights(straight, weights(out / "checkpoint.pt"))


def test_a_stop_that_comes_while_a_checkpoint_is_written_waits_for_it(tmp_path, monkeypatch):
    """SIGTERM in the middle of torch.save: the file is finished first, then the run stops
    as asked (without the wait, torch's zip writer failed and the command crashed)."""
    import os
    import signal

    import fcos_lib.trainer as trainer_module
    from fcos_lib.train import train
    from fcos_lib.trainer import Terminated

    real, saves = trainer_module.save_checkpoint, []

    def slow_save(state, path):
        saves.append(state["step"])
        if state["step"] == 8:
            os.kill(os.getpid(), signal.SIGTERM)     # arrives in the middle of the save
        return real(state, path)

    monkeypatch.setattr(trainer_module, "save_checkpoint", slow_save)
    out = tmp_path / "run"
    with pytest.raises(Terminated):
        train(tiny_config(out), progress=False)
    assert saves == [4, 8]                                # stopped after the whole save
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 8
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # the handler put back


def test_resuming_with_another_preset_names_both(tmp_path, capsys):
    from tinyrun import cli_settings

    from fcos_lib.commands.train import main

    out = tmp_path / "run"
    assert main(cli_settings(out, steps=4)[1:]) == 0
    assert main(["--out", str(out), "--resume", "--preset", "voc2007-tiny", "--steps", "6",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--preset voc2007-tiny" in err and "trained with --preset shapes" in err
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4            # untouched
    assert main(["--out", str(out), "--resume", "--preset", "shapes", "--steps", "6",
                 "--no-progress"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 6


# ------------------------------------------------------------------ hostile archives


def chained_links_tar(path, base):
    """A tar whose links each stay inside, but whose second link, read through the first,
    points above the folder; then a file written through it."""
    import io
    import tarfile

    def member(name, kind=tarfile.REGTYPE, link="", data=b""):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(data)
        return info, io.BytesIO(data) if data else None

    with tarfile.open(path, "w") as tar:
        for info, data in (member("VOCdevkit", tarfile.DIRTYPE),
                           member("VOCdevkit/d1", tarfile.DIRTYPE),
                           member("VOCdevkit/d1/up", tarfile.SYMTYPE, ".."),
                           member("VOCdevkit/d2", tarfile.DIRTYPE),
                           member("VOCdevkit/d2/out", tarfile.SYMTYPE, "../d1/up/../.."),
                           member("VOCdevkit/d2/out/evil.txt", data=b"owned")):
            tar.addfile(info, data)


@pytest.mark.parametrize("python", ["with the data filter", "without it"])
def test_links_through_links_are_refused(tmp_path, monkeypatch, python):
    import tarfile

    from fcos_lib.data.download import VOC2007_TRAINVAL, DownloadError, extract

    bad = tmp_path / "bad.tar"
    chained_links_tar(bad, tmp_path)
    if python == "without it":             # as on Python 3.10.0-3.10.11: no link at all
        monkeypatch.delattr(tarfile, "data_filter")
    root = tmp_path / "data" / "inner"
    root.mkdir(parents=True)
    named = "'VOCdevkit/d2/out'" if python != "without it" else "'VOCdevkit/d1/up'"
    with pytest.raises(DownloadError, match=f"refusing .*{named}"):
        extract(bad, root, VOC2007_TRAINVAL)
    assert not (tmp_path / "data" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert list(root.iterdir()) == []                              # no temporary folder left


# ------------------------------------------------------------------ what torch.load says


class NotATensor:
    """An object a safe load refuses."""


@pytest.mark.parametrize("case", ["cuda", "mps", "memory", "newer torch", "objects",
                                  "truncated"])
def test_a_checkpoint_that_does_not_load_is_named_for_what_went_wrong(checkpoint, tmp_path,
                                                                      monkeypatch, case):
    from fcos_lib.checkpoint import CheckpointError, load_checkpoint
    from fcos_lib.model import FCOS

    path, where = tmp_path / "checkpoint.pt", "cpu"
    path.write_bytes(checkpoint.read_bytes())
    expected = {"cuda": "no such device here.*--device cpu",
                "mps": "no such device here.*--device cpu",
                "memory": "not enough memory to load .* MB",
                "newer torch": "newer PyTorch than this one.*the file itself is fine",
                "objects": "holds Python objects besides tensors",
                "truncated": "corrupt, truncated.*copy it again"}[case]
    if case in ("cuda", "mps"):
        if torch.cuda.is_available() or (case == "mps" and torch.backends.mps.is_available()):
            pytest.skip(f"{case} is here")
        where = case
    elif case == "memory":
        def full(*args, **kwargs):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        monkeypatch.setattr(torch, "load", full)
    elif case == "newer torch":
        def newer(*args, **kwargs):
            raise RuntimeError("Attempted to read a PyTorch file with version 20, but the maximum "
                               "supported version for reading is 6. The version of your PyTorch "
                               "installation may be too old.")
        monkeypatch.setattr(torch, "load", newer)
    elif case == "objects":
        torch.save({"model": NotATensor()}, path)
    else:
        path.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=expected) as error:
        FCOS.from_checkpoint(path, where)
    message = str(error.value)
    assert "weights_only" not in message
    if case != "truncated":                           # only a damaged file is to replace
        assert "delete" not in message and "copy it again" not in message
    with pytest.raises(CheckpointError):
        load_checkpoint(path, where)


# ------------------------------------------------------------------ bad annotations, bad targets


def test_invalid_annotations_are_named_counted_and_dropped(tmp_path, capsys):
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOCDataset

    tree = make_voc_tree(tmp_path)
    xml = tree / "Annotations" / "000001.xml"
    text = xml.read_text()
    xml.write_text(text.replace("<xmin>11</xmin>", "<xmin>nan</xmin>", 1)
                   .replace("<xmin>1</xmin><ymin>1</ymin><xmax>60</xmax>",
                            "<xmin>61</xmin><ymin>1</ymin><xmax>60</xmax>", 1))
    data = VOCDataset(tree, "trainval", keep_difficult=True)
    err = capsys.readouterr().err
    assert "2 object(s) dropped" in err and "000001.xml: dog [nan" in err
    assert len(data.invalid) == 2 and "car [61.0, 1.0, 60.0, 40.0]" in data.invalid[1]
    assert data.annotations[0]["labels"].tolist() == [data.class_names.index("person")]
    assert VOCDataset(tree, "val").invalid == []                  # other files: untouched
    assert capsys.readouterr().err == ""
    xml.write_text(text.replace("<width>60</width>", "<width>sixty</width>"))
    with pytest.raises(ValueError, match="000001.xml: <size> has width 'sixty'"):
        VOCDataset(tree, "trainval")


@pytest.mark.parametrize("target, message", [
    ({"boxes": torch.tensor([[1.0, 2, float("nan"), 9]]), "labels": torch.tensor([0])},
     "image 0, box 0: .* is not finite"),
    ({"boxes": torch.tensor([[1.0, 2, float("inf"), 9]]), "labels": torch.tensor([0])},
     "is not finite"),
    ({"boxes": torch.tensor([[1.0, 2, 20, 9]]), "labels": torch.tensor([0.0])},
     "image 0: labels are torch.float32; pass class indices as integers"),
])
def test_the_model_refuses_targets_that_are_not_boxes_and_classes(target, message):
    from fcos_lib.model import FCOS

    with pytest.raises(ValueError, match=message):
        FCOS(3)(torch.zeros(1, 3, 64, 64), [target])


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize("settings, says", [
    (["--set", "gamma=-1"], "gamma=-1: must be a number > 0"),
    (["--set", "milestones=0.5"], "milestones=0.5: must be a list of fractions"),
    (["--set", "milestones=(0.9, 0.6)"], "milestones=(0.9, 0.6): must rise"),
    (["--set", "dataset_kwargs={'bogus': 1}"], "dataset_kwargs ['bogus'] are not arguments"),
    (["--set", "momentum=1.5"], "momentum=1.5: must be a number in [0, 1]"),
    (["--set", "clip_grad_norm=0"], "clip_grad_norm=0: must be a number > 0"),
    (["--set", "device=cuda:7"], "no such CUDA GPU here: use cpu"),
    (["--set", "device=gpu"], "device='gpu' is not a device"),
    (["--preset", "voc2007-tiny", "--set", "dataset_kwargs={'root': 'nowhere'}"],
     "VOC 2007 (train) is not in nowhere"),
])
def test_train_refuses_bad_settings_in_one_line_before_it_starts(tmp_path, settings, says,
                                                                  run_main):
    done = run_main("train", "--out", str(tmp_path / "run"), "--steps", "2", "--no-progress",
               *settings)
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_full_disk_is_one_line_and_leaves_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    from tinyrun import cli_settings

    import fcos_lib.checkpoint as checkpoint_module
    from fcos_lib.commands.train import main

    out = tmp_path / "run"
    assert main(cli_settings(out, steps=4)[1:]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    real = torch.save

    def full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", str(f.name))

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    assert main(["--out", str(out), "--resume", "--steps", "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No space left on device") and "--resume" in err
    monkeypatch.setattr(checkpoint_module.torch, "save", real)
    assert (out / "checkpoint.pt").read_bytes() == before               # intact
    assert sorted(p.name for p in out.iterdir() if "tmp" in p.name) == []   # no half file


def test_an_image_too_large_to_decode_is_named_not_called_a_broken_download(tmp_path,
                                                                            monkeypatch):
    from PIL import Image
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOCDataset

    data = VOCDataset(make_voc_tree(tmp_path), "trainval", image_size=32)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)        # 60 x 40 is now "huge"
    with pytest.raises(ValueError, match="000001.jpg is too large to decode safely.*shrink"):
        data.load(0)


def test_a_killed_extractions_leftover_is_removed_on_the_next_run(tmp_path, archive_bytes,
                                                                    capsys):
    from fcos_lib.data.download import VOC2007_TRAINVAL, extract

    data, _ = archive_bytes
    root = tmp_path / "data"
    root.mkdir()
    tar = root / VOC2007_TRAINVAL.filename
    tar.write_bytes(data)
    dead = root / f".{VOC2007_TRAINVAL.filename}.abc123.999999999.extract"   # killed, big
    (dead / "VOCdevkit" / "VOC2007").mkdir(parents=True)
    (dead / "VOCdevkit" / "VOC2007" / "big.jpg").write_bytes(b"\0" * 3 * 2**20)
    alive = root / f".{VOC2007_TRAINVAL.filename}.x.{__import__('os').getpid()}.extract"
    alive.mkdir()                                                 # another run, still going
    extract(tar, root, VOC2007_TRAINVAL)
    assert not dead.exists() and alive.exists()
    assert "(3 MB), left by an extraction that was killed" in capsys.readouterr().out
    assert (root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").is_file()


@pytest.fixture
def archive_bytes(tmp_path):
    from vocfake import make_voc_tar, make_voc_tree

    base = tmp_path / "src"
    make_voc_tree(base)
    path = tmp_path / "v.tar"
    md5 = make_voc_tar(base, path)
    return path.read_bytes(), md5


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_device_that_is_not_here_is_one_line(checkpoint, tmp_path, capsys, command):
    from fcos_lib.commands import main

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    photo = tmp_path / "a.png"
    __import__("PIL.Image").Image.new("RGB", (40, 30)).save(photo)
    where = [str(photo)] if command == "predict" else ["--dataset", "shapes"]
    assert main([command, "--checkpoint", str(checkpoint), "--device", "cuda:7", *where]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: device='cuda:7', but there is no such CUDA GPU here")


def test_a_full_disk_during_the_download_says_so_once_and_keeps_the_bytes(tmp_path,
                                                                           archive_bytes,
                                                                           monkeypatch):
    """Not ten retries and 'could not download': the disk is the problem, and what was
    received is resumed once there is room."""
    import builtins
    import errno

    from vocfake import FileServer

    import fcos_lib.data.download as download
    from fcos_lib.data.download import DownloadError, download_voc2007

    data, md5 = archive_bytes
    writes = []

    class FullAfter:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, chunk):
            writes.append(len(chunk))
            if sum(writes) > 2000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(chunk)

    def small_disk(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return FullAfter(f) if str(path).endswith(".part") and "b" in mode and (
            "w" in mode or "a" in mode) else f

    monkeypatch.setattr(download, "CHUNK", 1000)
    monkeypatch.setattr(download, "open", small_disk, raising=False)
    root = tmp_path / "data"
    with FileServer({"/v.tar": data}) as server:
        with pytest.raises(DownloadError, match="No space left on device.*free"):
            download_voc2007(root, url=server.url("/v.tar"), md5=md5, progress=False)
        assert len(server.requests) == 1                              # not retried
        part = next(root.glob("*.part"))
        assert part.stat().st_size == 2000                            # kept
        monkeypatch.setattr(download, "open", builtins.open)          # room again
        download_voc2007(root, url=server.url("/v.tar"), md5=md5, progress=False)
    assert (root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000001.jpg").is_file()


def test_kills_at_random_moments_leave_a_checkpoint_and_an_exact_resume(tmp_path, straight,
                                                                        run_main):
    """SIGKILL (nothing can be saved) three times at random moments, resuming after each:
    every time a loadable checkpoint of the last periodic save (every 4 steps), no half file
    in the way, and at the end the weights and the log of a run never stopped."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    from tinyrun import ROOT, assert_same_weights, cli_settings, weights

    steps, rng = STOPPED_STEPS, random.Random(0)
    out, log = tmp_path / "killed", tmp_path / "killed" / "metrics.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    for round_ in range(3):
        args = cli_settings(out, steps=steps) + (["--resume"] if round_ else [])
        proc = subprocess.Popen([sys.executable, "-m", "fcos_lib", *args], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines = (log.read_text().count("\n") if log.exists() else 0) + rng.randint(3, 9)
        start = time.monotonic()
        while not (log.exists() and log.read_text().count("\n") >= lines):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() - start < 120
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        state = load_checkpoint(out / "checkpoint.pt")               # whole, loadable
        assert 0 < state["step"] < steps and state["step"] % 4 == 0 and finite(state)
    with one_thread():
        done = run_main("train", "--out", out, "--resume", "--no-progress")
    assert done.returncode == 0, done.stderr
    assert f"step {steps}" in done.stdout
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    assert_same_weights(straight, weights(out / "checkpoint.pt"))
    from fcos_lib.runlog import read_metrics

    assert [r["step"] for r in read_metrics(out) if "total" in r] == list(range(1, steps + 1))


def test_a_broken_image_met_by_a_loader_worker_is_one_line(tmp_path):
    """Missing or broken data found mid-run, in a DataLoader worker process: one line naming
    the file, exit 2, not the worker's traceback."""
    from vocfake import make_voc_tree

    tree = make_voc_tree(tmp_path / "data")
    (tree / "JPEGImages" / "000003.jpg").write_bytes(b"\xff\xd8 half a jpeg")
    done = cli("train", "--preset", "voc2007-tiny", "--out", str(tmp_path / "run"), "--steps",
               "2", "--no-progress", "--set", f"dataset_kwargs={{'root': '{tmp_path / 'data'}'}}",
               "--set", "num_workers=2", "--set", "cache='none'", "--set", "batch_size=2",
               "--set", "image_size=64", "--set", "model.pretrained=False")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: cannot read image ") and "000003.jpg" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_atomic_writes_leave_nothing_when_they_fail_and_leftovers_of_kills_go(tmp_path,
                                                                           monkeypatch):
    import os

    from fcos_lib.files import remove_leftovers, write_atomic

    write_atomic(tmp_path / "a.json", "old")
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomic(tmp_path / "a.json", "new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "old"
    dead = tmp_path / ".x_boxes.png.999999999.tmp"                 # a killed predict's
    alive = tmp_path / f".y_boxes.png.{os.getpid()}.tmp"            # one still writing
    dead.write_bytes(b"half")
    alive.write_bytes(b"half")
    assert remove_leftovers(tmp_path) == [(dead, 4)] and alive.exists()


@pytest.mark.parametrize("command", [
    ["download", "voc2007", "--root", "{bad}"],
    ["demo", "--out", "{bad}", "--steps", "2"],
    ["evaluate", "--checkpoint", "{checkpoint}", "--dataset", "shapes", "--out",
     "{bad}/table.json"],
    ["predict", "--checkpoint", "{checkpoint}", "--out", "{bad}", "{photo}"],
    ["train", "--out", "{bad}", "--steps", "2"],
])
def test_a_folder_that_cannot_be_written_is_one_line_for_every_command(checkpoint, tmp_path,
                                                                       command, run_main):
    """A file where a folder should be: the system refuses, the command says so in a line."""
    from PIL import Image

    (tmp_path / "a-file").write_text("in the way")
    Image.new("RGB", (40, 30)).save(tmp_path / "p.png")
    args = [a.format(bad=tmp_path / "a-file" / "sub", checkpoint=checkpoint,
                     photo=tmp_path / "p.png") for a in command]
    done = run_main(*args)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "a-file" in last, done.stderr
    assert "Traceback" not in done.stderr and ".tmp" not in last


def test_a_full_disk_while_caching_leaves_no_half_file_and_the_next_run_rebuilds(
        tmp_path, monkeypatch, capsys):
    import errno

    from vocfake import make_voc_tree

    import fcos_lib.data.cache as cache_module

    tree, cache = make_voc_tree(tmp_path), tmp_path / "cache"
    real = cache_module.torch.save

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_module.torch, "save", full)            # the index's write fails
    with pytest.raises(OSError, match="No space"):
        voc_cache(tree, cache)
    assert [p.name for p in cache.iterdir() if p.name.endswith(".tmp")] == []   # none, hidden too
    monkeypatch.setattr(cache_module.torch, "save", real)
    rebuilt = voc_cache(tree, cache)
    assert torch.equal(rebuilt.load(1)[0], rebuilt.dataset.load(1)[0])
