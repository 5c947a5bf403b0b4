"""Every message true: each failure is named for what it is, from the error itself,
and the advice names only what will work. Each test failed on the code before its fix.

The commands run in this process (``run_main``); a server that takes the connection and
never answers is a socket on 127.0.0.1 that nobody reads.
"""
from __future__ import annotations

import errno
import socket
import threading
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from tinyrun import cli_settings, poison, tiny_config


def one_line(done) -> str:
    """The command's single error line (what it printed last on stderr), checked as such."""
    assert done.returncode == 2, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return last


# ------------------------------------------------------------------ 1. a folder refused


def test_a_file_in_the_way_is_named_and_no_checkpoint_is_promised(tmp_path, run_main):
    (tmp_path / "a-file").write_text("in the way")
    last = one_line(run_main(*cli_settings(tmp_path / "a-file" / "run", steps=2)))
    assert f"{tmp_path / 'a-file'} is a file in the way; move it away" in last
    assert "--resume" not in last and "checkpoint" not in last and "free space" not in last


def test_a_name_too_long_for_the_file_system_says_so(tmp_path, run_main):
    out = tmp_path / ("r" * 300)
    last = one_line(run_main(*cli_settings(out, steps=2)))
    assert "has 300 characters, more than the 255 this file system allows" in last
    assert "choose a shorter name" in last and "--resume" not in last and "space" not in last


def test_a_folder_without_permission_says_permission(tmp_path, run_main, monkeypatch):
    """(The tests run as root, which no permission stops: the refusal is injected.)"""
    real = Path.mkdir

    def refused(self, *args, **kwargs):
        if self.name == "run":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", refused)
    for command in (cli_settings(tmp_path / "run", steps=2),
                    ["demo", "--out", tmp_path / "run", "--steps", "2", "--no-progress"]):
        last = one_line(run_main(*command))
        assert last.startswith(f"error: Permission denied ({tmp_path / 'run'}): choose a file "
                               "or folder of yours, or change its permissions"), last
        assert "--resume" not in last and "space" not in last and "again" not in last


def test_a_full_disk_advises_resume_only_when_a_checkpoint_was_kept(tmp_path, run_main,
                                                                     monkeypatch):
    import fcos_lib.checkpoint as checkpoint_module

    real = checkpoint_module.torch.save

    def full(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(f.name))

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    fresh = one_line(run_main(*cli_settings(tmp_path / "new", steps=4)))
    assert "No space left on device" in fresh and "the disk is full: free space" in fresh
    assert "--resume" not in fresh and "intact" not in fresh
    assert not (tmp_path / "new" / "checkpoint.pt").exists()

    monkeypatch.setattr(checkpoint_module.torch, "save", real)
    assert run_main(*cli_settings(tmp_path / "old", steps=4)).returncode == 0
    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    kept = one_line(run_main("train", "--out", tmp_path / "old", "--resume", "--steps", "8",
                             "--no-progress"))
    assert "the disk is full" in kept and "--resume" in kept
    assert f"{tmp_path / 'old' / 'checkpoint.pt'}, is intact" in kept


@pytest.mark.parametrize("number, says", [
    (errno.ENOSPC, "the disk is full: free space"),
    (errno.EROFS, "a disk that can be written"),
    (errno.EACCES, "change its permissions"),
    (errno.ENAMETOOLONG, "choose a shorter name"),
    (errno.EIO, "the disk failed"),
    (errno.ENOENT, "check the path"),
])
def test_each_refusal_is_explained_from_its_errno(number, says):
    from fcos_lib.commands._common import explain_os_error

    text = explain_os_error(OSError(number, "the system's words", "some/file"))
    assert text.startswith("the system's words (some/file): ") and says in text


# ------------------------------------------------------------------ 2. non-finite advice


def test_a_weight_decay_beyond_sense_is_refused_before_the_run(tmp_path, run_main):
    last = one_line(run_main(*cli_settings(tmp_path / "run", steps=2), "--set",
                             "weight_decay=5"))
    assert "weight_decay=5: must be a number in [0, 1]" in last
    assert not (tmp_path / "run").exists()


def poison_step(monkeypatch, step: int) -> None:
    """The training forward of ``step`` (1-based) returns NaN losses."""
    poison(monkeypatch, step, lambda v: v * float("nan"))


def test_a_first_step_that_is_not_finite_blames_no_schedule(tmp_path, monkeypatch):
    from fcos_lib.train import train
    from fcos_lib.trainer import NonFiniteLossError

    poison_step(monkeypatch, 1)
    with pytest.raises(NonFiniteLossError) as stopped:
        train(tiny_config(tmp_path / "run"), progress=False)
    message = str(stopped.value)
    assert "non-finite loss at step 1" in message and "no checkpoint had been written" in message
    assert "learning rate is not the cause" in message and "data" in message
    assert "--change-schedule" not in message and "--resume" not in message


def test_a_setting_resuming_cannot_change_is_named_as_such(tmp_path, monkeypatch):
    from fcos_lib.train import train
    from fcos_lib.trainer import NonFiniteLossError

    poison_step(monkeypatch, 7)
    with pytest.raises(NonFiniteLossError) as stopped:
        train(tiny_config(tmp_path / "run", weight_decay=0.5), progress=False)
    message = str(stopped.value)
    assert "--resume --change-schedule" in message         # a lower rate can still help
    assert "weight_decay=0.5" in message and "which resuming cannot change" in message
    assert "train afresh" in message


def test_the_advice_names_only_switches_that_can_fix_the_cause():
    from fcos_lib.config import TrainConfig
    from fcos_lib.trainer import non_finite_advice

    cfg = TrainConfig(warmup_steps=100, clip_grad_norm=None)
    overflow = non_finite_advice(cfg, 50, half=True)
    assert "amp=bf16" in overflow and "--change-schedule" not in overflow
    assert "learning rate" not in overflow
    late = non_finite_advice(cfg, 5000, "gradient")
    assert "lower the learning rate" in late.lower() and "--change-schedule" in late
    assert "warm-up" not in late                 # long past it: a longer one changes nothing
    assert "clip" not in late                    # a gradient that is inf stays inf, clipped
    early = non_finite_advice(cfg, 20)
    assert "warm-up" in early and "clip_grad_norm=10" in early
    unsaved = non_finite_advice(cfg, 20, kept=False)
    assert "--resume" not in unsaved and "train afresh" in unsaved
    assert "resuming cannot change" not in non_finite_advice(TrainConfig(), 20)


def test_the_demos_advice_names_the_demos_own_ways(tmp_path, run_main, monkeypatch):
    """The demo has no --set nor --change-schedule: its advice names the train command that
    continues its folder, and its own --fresh."""
    import fcos_lib.commands.demo as demo
    from fcos_lib.config import TrainConfig
    from fcos_lib.trainer import NonFiniteLossError, non_finite_advice

    for step, kept, says in ((7, True, f"python -m fcos_lib train --out {tmp_path} --resume "
                                        "--change-schedule"),
                             (0, False, "run the demo afresh (another --out, or --fresh)")):
        advice = non_finite_advice(TrainConfig(), step, kept=kept)

        def stopped(*args, said=f"non-finite loss at step {step + 1}: {advice}", **kwargs):
            raise NonFiniteLossError(said)

        monkeypatch.setattr(demo, "run_demo", stopped)
        last = one_line(run_main("demo", "--out", tmp_path))
        assert says in last and "--overwrite" not in last, last


@pytest.mark.parametrize("kind, says", [
    ("shapes", "(preset: 'shapes' there, 'demo' now; image_size, model and lr differ too; "),
    ("demo at another rate", "(lr: 0.02 there, 0.04 now; from an older make demo?)")])
def test_a_run_of_other_settings_in_the_demos_folder_is_left_alone(checkpoint, tmp_path,
                                                                   run_main, kind, says):
    """An older make demo trained the shapes preset in runs/demo, or the demo's preset as it
    was then: the demo does not resume it with its own settings (the trainer would refuse in
    its own words, which name switches the demo does not have), and says how to start over."""
    from dataclasses import asdict

    from fcos_lib.checkpoint import load_checkpoint, save_checkpoint
    from fcos_lib.config import get_preset

    state = load_checkpoint(checkpoint)                               # a run of "shapes"
    if kind != "shapes":
        state["config"]["train"] = asdict(get_preset("demo", out=str(tmp_path), lr=0.02))
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    last = one_line(run_main("demo", "--out", tmp_path, "--no-progress"))
    assert f"{tmp_path} holds a training run with settings other than the demo's {says}" in last
    assert last.endswith("pass --fresh to start the demo over there, or choose another --out")
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


# ------------------------------------------------------------------ 3. an empty split


def test_an_empty_evaluation_split_names_the_dataset_split_and_file(checkpoint, tmp_path,
                                                                    run_main):
    from vocfake import make_voc_tree

    from fcos_lib.data import VOC2007DetectionTiny
    from fcos_lib.evaluate import evaluate_model
    from fcos_lib.model import FCOS

    folder = make_voc_tree(tmp_path)
    split_file = folder / "ImageSets" / "Main" / "val.txt"
    split_file.write_text("")
    last = one_line(run_main("evaluate", "--checkpoint", checkpoint, "--dataset",
                             "voc2007-tiny", "--root", tmp_path, "--split", "val"))
    assert f"--dataset voc2007-tiny --split val has no images: {split_file} lists no" in last
    assert "choose another --split" in last and "prediction dict" not in last
    with pytest.raises(ValueError) as empty:
        evaluate_model(FCOS(20), VOC2007DetectionTiny(tmp_path, "val", image_size=64))
    message = str(empty.value)
    assert "the 'val' split of VOC2007DetectionTiny" in message and str(split_file) in message
    assert "prediction dict" not in message


def test_an_empty_validation_split_stops_training_before_the_first_step(tmp_path, run_main):
    from tinyrun import cli_settings
    from vocfake import make_voc_tree

    folder = make_voc_tree(tmp_path / "voc")
    split_file = folder / "ImageSets" / "Main" / "val.txt"
    split_file.write_text("")
    out = tmp_path / "run"
    voc = {"root": str(tmp_path / "voc")}
    last = one_line(run_main(*cli_settings(out, steps=4), "--set", "dataset='voc2007-tiny'",
                             "--set", f"dataset_kwargs={voc!r}"))
    assert "the 'val' split of VOC2007DetectionTiny" in last and str(split_file) in last
    assert "validation split" in last and "val_split" in last, last
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.jsonl").exists()


# ------------------------------------------------------------------ 4. a name too long


def test_predict_goes_on_past_a_photo_whose_outputs_cannot_be_named(checkpoint, tmp_path,
                                                                     run_main):
    long = tmp_path / ("p" * 240 + ".png")          # 244 characters: its _boxes.json, 256
    Image.new("RGB", (40, 30), "white").save(long)
    Image.new("RGB", (40, 30), "white").save(tmp_path / "short.png")
    out = tmp_path / "out"
    done = run_main("predict", "--checkpoint", checkpoint, "--out", out, long,
                    tmp_path / "short.png")
    last = one_line(done)
    assert "1 of 2 photos' outputs could not be named (see above)" in last
    assert f"error: {long}: the name of its outputs" in done.stderr
    assert "too long for a file name" in done.stderr and "shorter name" in done.stderr
    assert ".tmp" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["short_boxes.json", "short_boxes.png"]


# ------------------------------------------------------------------ 5. a photo too large


def huge_png(path: Path, side: int = 12000) -> Path:
    """A black 1-bit PNG of ``side`` x ``side`` pixels, a few kilobytes, written row by row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    packer, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


def test_a_photo_far_too_large_is_refused_before_decoding(tmp_path, checkpoint, run_main,
                                                         recwarn, monkeypatch):
    from PIL import ImageFile

    from fcos_lib.data.voc import MAX_PIXELS
    from fcos_lib.photo import read_photo

    photo = huge_png(tmp_path / "huge.png")
    assert photo.stat().st_size < 40_000 and MAX_PIXELS == 50_000_000
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail(
        f"{self.size} pixels decoded"))
    with pytest.raises(ValueError, match=r"huge.png: 12000 x 12000 pixels \(144 megapixels\) is "
                                         r"more than the 50 megapixels read here.*shrink"):
        read_photo(photo)
    with pytest.raises(ValueError, match="mine.png: 12000 x 12000 pixels"):
        read_photo(photo.read_bytes(), "mine.png")
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]
    monkeypatch.setattr(ImageFile.ImageFile, "load", real_load)
    Image.new("RGB", (40, 30)).save(tmp_path / "small.png")
    done = run_main("predict", "--checkpoint", checkpoint, "--out", tmp_path / "out", photo,
                    tmp_path / "small.png")
    assert f"error: {photo}: 12000 x 12000 pixels (144 megapixels)" in done.stderr
    assert "1 of 2 files could not be read" in one_line(done)
    assert (tmp_path / "out" / "small_boxes.png").is_file()


def test_the_voc_loader_refuses_a_far_too_large_image_before_decoding(tmp_path, monkeypatch):
    from PIL import ImageFile
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOCDataset

    folder = make_voc_tree(tmp_path)
    data = VOCDataset(folder, "trainval", image_size=32)
    huge_png(folder / "JPEGImages" / f"{data.ids[0]}.jpg")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded"))
    with pytest.raises(ValueError, match=rf"{data.ids[0]}.jpg: 12000 x 12000 pixels \(144 "
                                         "megapixels\\)"):
        data.load(0)


# ------------------------------------------------------------------ 6. a silent mirror


@contextmanager
def silent_servers(count: int = 1):
    """``count`` addresses on 127.0.0.1 that take every connection and never answer; yields
    their URLs and the number of connections each took."""
    sockets, taken, held = [], [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        sockets.append(s)
        taken.append(0)

    def take(k: int) -> None:
        while True:
            try:
                connection, _ = sockets[k].accept()
            except OSError:
                return
            held.append(connection)
            taken[k] += 1

    threads = [threading.Thread(target=take, args=(k,), daemon=True) for k in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield [f"http://127.0.0.1:{s.getsockname()[1]}/v.tar" for s in sockets], taken
    finally:
        for s in sockets + held:
            s.close()


def test_a_mirror_that_never_answers_is_waited_on_visibly_and_briefly(tmp_path, capsys):
    from fcos_lib.data.download import ATTEMPTS_PER_MIRROR, TIMEOUT, Archive, DownloadError, fetch

    assert TIMEOUT <= 15 and ATTEMPTS_PER_MIRROR <= 3
    with silent_servers(3) as (urls, taken):
        archive = Archive("v.tar", "0" * 32, tuple(urls), "1 KB")
        start = time.monotonic()
        with pytest.raises(DownloadError) as failed:
            fetch(archive, tmp_path, progress=False, timeout=0.3)
        took = time.monotonic() - start
    assert taken == [1, 1, 1], "a silent mirror is asked once"
    assert took < 3 * 0.3 + 2, f"{took:.1f} s"
    err = capsys.readouterr().err
    for url in urls:
        host = url.split("/")[2]
        assert f"v.tar: asking {host}; waiting up to 0.3 s for an answer" in err
        assert f"{url}: no answer within 0.3 s" in str(failed.value)


def test_a_silent_weights_server_is_waited_on_visibly_and_briefly(tmp_path, monkeypatch,
                                                                   capsys):
    import types

    import torch

    from fcos_lib import backbone

    monkeypatch.setattr(backbone, "WEIGHTS_TIMEOUT", 0.3)
    old_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with silent_servers() as ([url], taken):
            monkeypatch.setitem(backbone.WEIGHTS, "resnet18", types.SimpleNamespace(
                url=url.replace("v.tar", "resnet18-f37072fd.pth")))
            start = time.monotonic()
            with pytest.warns(UserWarning, match=r"\(no answer within 0.3 s\): training starts"
                              " from random init"):
                assert backbone.download_weights("resnet18") is None
            took = time.monotonic() - start
    finally:
        torch.hub.set_dir(old_dir)
    assert took < 3, f"{took:.1f} s"
    assert "waiting up to 0.3 s for an answer" in capsys.readouterr().err
    assert socket.getdefaulttimeout() is None           # put back


def test_the_download_command_takes_a_timeout_and_says_what_it_waits_for(tmp_path, run_main):
    with silent_servers() as ([url], taken):
        done = run_main("download", "voc2007", "--root", tmp_path / "data", "--url", url,
                        "--timeout", "0.3", "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr      # (a list of reasons)
    assert f"asking {url.split('/')[2]}; waiting up to 0.3 s" in done.stderr.splitlines()[0]
    assert "error: could not download" in done.stderr
    assert f"{url}: no answer within 0.3 s" in done.stderr and taken == [1]
    bad = run_main("download", "voc2007", "--root", tmp_path / "data", "--timeout", "0")
    assert bad.returncode == 2 and "not a number of seconds above 0" in bad.stderr


def test_a_download_the_disk_refuses_gives_the_fix_for_that_refusal(tmp_path, monkeypatch):
    """Not 'free 460 MB' for a folder without permission, nor 'the bytes received are kept'
    when none were."""
    import builtins

    from vocfake import FileServer

    import fcos_lib.data.download as download
    from fcos_lib.data.download import DownloadError, download_voc2007

    def refused(path, mode="r", *args, **kwargs):
        if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(download, "open", refused, raising=False)
    with FileServer({"/v.tar": b"x" * 5000}) as server, pytest.raises(DownloadError) as failed:
        download_voc2007(tmp_path, url=server.url("/v.tar"), progress=False)
    message = str(failed.value)
    assert "(Permission denied): give a --root you can write to, or change" in message
    assert "free" not in message and "kept" not in message and len(server.requests) == 1
