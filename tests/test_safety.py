"""Nothing overwritten, nothing shared, every message true.

A. Two processes, one folder: a run folder and a download folder are locked; the second
   process stops with one line naming the first; a dead process's lock is taken over.
B. No command writes over a file it did not write unless ``--overwrite``, and none ever over
   one of its inputs.
C. Every image mode the readers take decodes to the 8-bit RGB the model expects, scaled;
   every dropped VOC object is named; a split file with a byte-order mark reads.
D. A checkpoint of another program, or of another layout, is one line naming what is
   missing or unexpected, for predict, evaluate and train --resume.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tinyrun import ROOT, cli_settings, tiny_config

from fcos_lib.commands import main
from fcos_lib.files import LOCK_NAME, FolderBusyError, folder_lock

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
VOC_NAME = "VOCtrainval_06-Nov-2007.tar"


def one_line_error(capsys) -> str:
    """The command's stderr: one ``error:`` line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def wait_for_lock(folder: Path, pid: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until process ``pid`` holds ``folder``'s lock."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if json.loads((folder / LOCK_NAME).read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        assert proc.poll() is None, "the first process ended before it took the lock"
        time.sleep(0.1)
    pytest.fail(f"process {pid} took no lock on {folder} in {seconds} s")


def hold(folder: Path) -> subprocess.Popen:
    """Another process (no torch: it starts at once) that holds ``folder`` until killed."""
    code = ("import sys, time; from fcos_lib.files import folder_lock\n"
            "with folder_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


# ------------------------------------------------------------------ A. one folder, one process


def test_a_second_train_on_a_running_runs_folder_stops_and_a_killed_runs_lock_is_taken_over(
        tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "fcos_lib", *cli_settings(out, steps=400)],
                             cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        wait_for_lock(out, first.pid, first)
        while not (out / "checkpoint.pt").exists():     # (then a resume below is quick)
            assert first.poll() is None
            time.sleep(0.1)
        assert main(cli_settings(out, steps=2)) == 2
        err = one_line_error(capsys)
        assert f"{out} is in use by process {first.pid} on {socket.gethostname()}" in err
        assert main(["train", "--out", str(out), "--resume", "--steps", "2"]) == 2  # also
        assert f"process {first.pid}" in one_line_error(capsys)
    finally:
        first.send_signal(signal.SIGKILL)   # no chance to let go: the lock file stays
        first.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid
    assert main(["train", "--out", str(out), "--resume", "--steps", "1", "--no-progress"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "took over" in line]
    assert said == [f"{out}: took over the lock of process {first.pid} on "
                    f"{socket.gethostname()}, which is no longer running"]
    assert not (out / LOCK_NAME).exists()


def test_a_second_download_into_one_root_stops_naming_the_first(tmp_path, capsys):
    root = tmp_path / "data"
    holder = hold(root)
    try:
        assert main(["download", "voc2007", "--root", str(root), "--quiet",
                     "--url", "http://127.0.0.1:9/never-asked.tar"]) == 2
        err = one_line_error(capsys)
        assert f"{root} is in use by process {holder.pid} on {socket.gethostname()}" in err
        assert "another download" in err
        assert [p.name for p in root.iterdir()] == [LOCK_NAME]          # nothing else made
    finally:
        holder.kill()
        holder.wait()


def test_the_download_writes_a_part_file_of_its_own_and_takes_up_a_killed_ones(
        tmp_path, monkeypatch):
    from vocfake import FileServer, make_voc_tar, make_voc_tree

    from fcos_lib.data import download

    base = tmp_path / "src"
    make_voc_tree(base)
    md5 = make_voc_tar(base, base / VOC_NAME)
    data = (base / VOC_NAME).read_bytes()
    root = tmp_path / "data"
    root.mkdir()
    (root / f"{VOC_NAME}.999999999.part").write_bytes(data[:3000])   # a killed download's
    (root / f"{VOC_NAME}.part").write_bytes(data[:1000])             # an older, shorter one
    names, real = [], download._download

    def spy(url, part, progress, timeout):
        names.append(part.name)
        return real(url, part, progress, timeout)

    monkeypatch.setattr(download, "_download", spy)
    with FileServer({"/v.tar": data}) as server:
        download.download_voc2007(root, url=server.url("/v.tar"), md5=md5, progress=False)
    assert names == [f"{VOC_NAME}.{os.getpid()}.part"]                # unique to its writer
    assert server.requests == [("/v.tar", "bytes=3000-", 206)]        # the longer one resumed
    assert (root / VOC_NAME).read_bytes() == data
    assert sorted(p.name for p in root.iterdir()) == ["VOCdevkit", VOC_NAME]


def test_the_lock_nests_cleans_up_takes_over_the_dead_and_refuses_the_living(tmp_path, capsys,
                                                                          monkeypatch):
    import fcos_lib.files as files

    folder = tmp_path / "new"
    with folder_lock(folder) as lock:
        holder = json.loads(lock.read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with folder_lock(folder):                    # the same process: a command, then train
            pass
        assert lock.exists()
    assert not folder.exists()                       # made for nothing, so removed again
    for flock in (True, False):                      # False: as on Windows, O_EXCL alone
        if not flock:
            monkeypatch.setattr(files, "fcntl", None)
        (tmp_path / "f").mkdir(exist_ok=True)
        lock = tmp_path / "f" / LOCK_NAME
        lock.write_text(json.dumps({"pid": 999999999, "host": socket.gethostname()}))
        with folder_lock(tmp_path / "f"):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert capsys.readouterr().out == (f"{tmp_path / 'f'}: took over the lock of process "
                                           f"999999999 on {socket.gethostname()}, which is no "
                                           "longer running\n")
        lock.write_text(json.dumps({"pid": 12, "host": "elsewhere"}))
        with pytest.raises(FolderBusyError, match="process 12 on elsewhere.*another machine.*"
                                                  f"delete {re.escape(str(lock))}"):
            with folder_lock(tmp_path / "f"):
                pass
        assert json.loads(lock.read_text())["host"] == "elsewhere"     # left as it was
        lock.unlink()
    holder = hold(tmp_path / "g")                                     # alive, O_EXCL mode
    try:
        with pytest.raises(FolderBusyError, match=f"in use by process {holder.pid}"):
            with folder_lock(tmp_path / "g"):
                pass
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ B. outputs and inputs


def photo(path: Path, size=(48, 40), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_evaluate_never_writes_over_its_checkpoint_nor_a_file_it_did_not_write(
        checkpoint, tmp_path, capsys):
    before = checkpoint.read_bytes()
    args = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", "shapes",
            "--max-images", "2"]
    for extra in ([], ["--overwrite"]):
        assert main([*args, "--out", str(checkpoint), *extra]) == 2
        assert "is also an input of this command" in one_line_error(capsys)
    assert checkpoint.read_bytes() == before
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert main([*args, "--out", str(mine)]) == 2
    assert f"{mine} exists and this command did not write it" in one_line_error(capsys)
    assert mine.read_text() == '{"my": "notes"}'
    table = tmp_path / "table.json"
    assert main([*args, "--out", str(table)]) == 0
    assert main([*args, "--out", str(table)]) == 0          # its own table: replaced
    assert main([*args, "--out", str(mine), "--overwrite"]) == 0
    assert "map" in json.loads(mine.read_text())


def test_predict_never_writes_over_a_photo_the_checkpoint_or_a_picture_of_yours(
        checkpoint, tmp_path, capsys):
    cat = photo(tmp_path / "in" / "cat.jpg")
    out = tmp_path / "out"
    yours = photo(out / "cat_boxes.png", seed=1)              # a picture of your own
    before = {p: p.read_bytes() for p in (cat, yours, checkpoint)}
    args = ["predict", "--checkpoint", str(checkpoint), "--out", str(out), str(cat)]
    for extra in ([], ["--overwrite"]):
        assert main([*args, "--coco-results", str(cat), *extra]) == 2
        assert f"{cat} is also an input of this command" in one_line_error(capsys)
        assert main([*args, "--coco-results", str(checkpoint), *extra]) == 2
        assert "is also an input" in one_line_error(capsys)
    assert main(args) == 2
    assert f"{yours} exists and this command did not write it" in one_line_error(capsys)
    assert {p: p.read_bytes() for p in before} == before
    assert not (out / "cat_boxes.json").exists()              # refused before any output
    assert main([*args, "--coco-results", str(out / "cat_boxes.json")]) == 2
    assert "also one of the pictures' JSON files" in one_line_error(capsys)
    assert main([*args, "--overwrite", "--coco-results", str(tmp_path / "coco.json")]) == 0
    assert yours.read_bytes() != before[yours]
    assert Image.open(yours).info["Software"] == "fcos_lib predict"
    capsys.readouterr()
    assert main([*args, "--coco-results", str(tmp_path / "coco.json")]) == 0   # its own
    assert main(["predict", "--checkpoint", str(checkpoint), "--out", str(out), str(out)]) == 2
    assert "no images in this folder" in one_line_error(capsys)   # its pictures aren't photos


def test_demo_and_train_refuse_a_folder_of_files_they_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "predictions.png").write_bytes(b"my own picture")
    assert main(["demo", "--out", str(out), "--steps", "2"]) == 2
    err = one_line_error(capsys)
    assert f"{out} holds predictions.png but no run to continue" in err and "--overwrite" in err
    assert main(["demo", "--out", str(out), "--steps", "2", "--fresh"]) == 2
    assert "no run to continue" in one_line_error(capsys)
    assert (out / "predictions.png").read_bytes() == b"my own picture"
    (out / "metrics.jsonl").write_text('{"step": 3, "total": 1.0}\n')
    assert main(cli_settings(out, steps=2)) == 2
    err = one_line_error(capsys)
    assert f"{out} already holds files of a run without a checkpoint (metrics.jsonl)" in err
    assert (out / "metrics.jsonl").read_text() == '{"step": 3, "total": 1.0}\n'
    assert main([*cli_settings(out, steps=2), "--resume", "--overwrite"]) == 2
    assert "choose one" in one_line_error(capsys)
    assert main([*cli_settings(out, steps=2), "--overwrite"]) == 0
    assert (out / "checkpoint.pt").is_file()
    assert main(cli_settings(out, steps=2)) == 2
    err = one_line_error(capsys)
    assert "already holds a run (checkpoint.pt, metrics.jsonl, loss_curve.png)" in err
    assert "--resume" in err and "--overwrite" in err


# ------------------------------------------------------------------ C. what is read


def grey(values: torch.Tensor) -> list[list[int]]:
    return values.tolist()


def mode_image(mode: str) -> tuple[Image.Image, np.ndarray]:
    """A 4 x 1 image of ``mode`` and the uint8 (1, 4, 3) RGB it must decode to."""
    ramp16 = np.array([[0, 257 * 100, 257 * 200, 65535]], dtype=np.uint16)
    expected_grey = np.array([[0, 100, 200, 255]], dtype=np.uint8)
    rgb = lambda g: np.repeat(g[..., None], 3, axis=2)                       # noqa: E731
    if mode == "I;16":
        return Image.fromarray(ramp16), rgb(expected_grey)
    if mode == "I":
        return Image.fromarray(ramp16.astype(np.int32)), rgb(expected_grey)
    if mode == "F":
        return Image.fromarray(ramp16.astype(np.float32) / 65535), rgb(expected_grey)
    if mode == "L":
        return Image.fromarray(expected_grey), rgb(expected_grey)
    if mode == "1":
        return Image.fromarray(expected_grey).convert("1", dither=Image.Dither.NONE), rgb(
            np.array([[0, 0, 255, 255]], dtype=np.uint8))
    if mode == "LA":      # the last pixel transparent: white, as a viewer shows it
        image = Image.merge("LA", [Image.fromarray(np.array([[0, 100, 200, 0]], np.uint8)),
                                   Image.fromarray(np.array([[255, 255, 255, 0]], np.uint8))])
        return image, rgb(expected_grey)
    if mode == "RGBA":
        pixels = np.array([[[10, 20, 30, 255], [40, 50, 60, 255], [70, 80, 90, 255],
                            [1, 2, 3, 0]]], dtype=np.uint8)
        return Image.fromarray(pixels), np.array([[[10, 20, 30], [40, 50, 60], [70, 80, 90],
                                                   [255, 255, 255]]], dtype=np.uint8)
    if mode == "P":
        image = Image.new("P", (4, 1))
        image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
        image.putdata([0, 1, 2, 1])
        return image, np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 255, 0]]],
                               dtype=np.uint8)
    if mode == "CMYK":
        image = Image.fromarray(np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255],
                                           [0, 255, 255, 0]]], dtype=np.uint8), mode="CMYK")
        return image, np.array([[[255, 255, 255], [0, 255, 255], [0, 0, 0], [255, 0, 0]]],
                               dtype=np.uint8)
    raise AssertionError(mode)


MODES = ["I;16", "I", "F", "LA", "P", "CMYK", "1", "L", "RGBA"]


@pytest.mark.parametrize("mode", MODES)
def test_every_image_mode_reads_as_the_8_bit_rgb_the_model_expects(mode, tmp_path):
    from fcos_lib.photo import read_photo

    image, expected = mode_image(mode)
    assert image.mode == mode
    suffix = ".tif" if mode in ("I", "F", "CMYK") else ".png"      # what each can be saved as
    image.save(tmp_path / f"x{suffix}")
    for source in (image, tmp_path / f"x{suffix}", (tmp_path / f"x{suffix}").read_bytes()):
        pixels = read_photo(source)
        assert pixels.dtype == torch.uint8 and pixels.shape == (3, 1, 4)
        assert pixels.permute(1, 2, 0).numpy().tolist() == expected.tolist(), (mode, source)


def test_32_bit_and_float_images_beyond_a_types_range_are_stretched_not_clipped():
    from fcos_lib.data.transforms import rgb_pixels

    wide = Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32))
    assert grey(rgb_pixels(wide)[0]) == [[0, 128, 255]]               # its own min..max
    cold = Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32))
    assert grey(rgb_pixels(cold)[0]) == [[0, 64, 255]]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))   # fractions
    assert grey(rgb_pixels(floats)[0]) == [[0, 128, 255]]
    eight = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))  # 0..255: as 8 bits
    assert grey(rgb_pixels(eight)[0]) == [[0, 100, 255]]


def test_the_voc_loader_reads_a_16_bit_image_scaled(tmp_path):
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOCDataset

    tree = make_voc_tree(tmp_path)
    values = np.full((40, 60), 257 * 90, dtype=np.uint16)
    Image.fromarray(values).save(tree / "JPEGImages" / "000001.jpg", format="PNG")
    image, _ = VOCDataset(tree, "train").load(0)
    assert image.shape == (3, 40, 60) and (image == 90).all()        # not 255: scaled


def test_every_dropped_voc_object_is_named_once_whatever_the_reason(tmp_path, capsys):
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOCDataset

    tree = make_voc_tree(tmp_path)
    xml = tree / "Annotations" / "000001.xml"
    xml.write_text(xml.read_text().replace(                              # the dog, right of
        "<xmin>11</xmin><ymin>5</ymin><xmax>30</xmax>",                   # the 60-wide image
        "<xmin>70</xmin><ymin>5</ymin><xmax>90</xmax>"))
    data = VOCDataset(tree, "train", keep_difficult=True)
    err = capsys.readouterr().err
    assert "1 object(s) dropped" in err and "wholly outside" in err
    assert data.invalid == [f"{xml}: dog [70.0, 5.0, 90.0, 20.0] (wholly outside the 60 x 40 "
                            "image)"]
    assert "dog" not in [data.class_names[k] for k in data.annotations[0]["labels"]]
    # Without <size>, the image itself shows it: named at the first load, once.
    text = xml.read_text()
    xml.write_text(text[:text.index("<size>")] + text[text.index("</size>") + 7:])
    data = VOCDataset(tree, "train", keep_difficult=True)
    assert capsys.readouterr().err == "" and data.invalid == []
    for _ in range(2):
        _, target = data.load(0)
        assert len(target["labels"]) == 2                                 # person, car
    err = capsys.readouterr().err
    assert err.count("wholly outside") == 1 and "000001.xml: dog [70.0, 5.0, 90.0, 20.0]" in err
    assert len(data.invalid) == 1


def test_a_split_file_with_a_byte_order_mark_finds_its_first_image(tmp_path):
    from vocfake import make_voc_tree

    from fcos_lib.data.voc import VOC2007DetectionTiny
    from fcos_lib.photo import sample_photo

    tree = make_voc_tree(tmp_path)
    for split in ("train", "val"):
        path = tree / "ImageSets" / "Main" / f"{split}.txt"
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())              # Notepad's BOM
    data = VOC2007DetectionTiny(tmp_path, "train", image_size=32)
    assert data.ids == ["000001", "000003"]
    assert data[0][0].shape == (3, 32, 32)
    assert sample_photo("voc2007-tiny", tmp_path).is_file()


# ------------------------------------------------------------------ D. checkpoints not ours


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run folder of two real training steps (every state a resume needs)."""
    from fcos_lib.train import train

    out = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config(out, steps=2, checkpoint_every=2), progress=False)
    return out


def tampered(trained: Path, tmp_path: Path, change) -> Path:
    """A copy of the run whose checkpoint ``change(state)`` returns."""
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save(change(state), out / "checkpoint.pt")
    return out


def renamed(state):
    weights = state["model"]
    key = next(k for k in weights if k.startswith("head."))
    weights[key.replace("head.", "head.old_", 1)] = weights.pop(key)
    return state


CHANGES = {
    "another program's": (lambda s: {"state_dict": s["model"], "epoch": 3},
                          "is not an fcos_lib training checkpoint: it has no 'model', 'step', "
                          "'config' (it has 'epoch', 'state_dict')"),
    "config without class names": (lambda s: {**s, "config": {k: v for k, v in s["config"]
                                                              .items() if k != "class_names"}},
                                   "it has no \"config['class_names']\""),
    "a renamed weight": (renamed, "do not fit the model its config describes (1 missing: "
                                  "'head."),
    "a weight of another shape": (lambda s: {**s, "model": {**s["model"], **{
        k: v[:1] for k, v in s["model"].items() if k.endswith("bias")}}},
        "of another shape"),
}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("command", ["predict", "evaluate", "train --resume"])
def test_a_checkpoint_not_laid_out_as_ours_is_one_line_for_every_command(
        trained, tmp_path, capsys, change, command):
    how, says = CHANGES[change]
    out = tampered(trained, tmp_path, how)
    path = out / "checkpoint.pt"
    args = {"predict": ["predict", "--checkpoint", str(path), "--out", str(tmp_path / "p"),
                        str(photo(tmp_path / "x.png"))],
            "evaluate": ["evaluate", "--checkpoint", str(path), "--dataset", "shapes"],
            "train --resume": ["train", "--out", str(out), "--resume", "--steps", "3",
                               "--no-progress"]}[command]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert says in err and str(out) in err, err
    assert "train" in err.split(says)[-1]                         # and what to do


def test_a_renamed_model_setting_and_a_checkpoint_without_training_states_are_named(
        trained, checkpoint, tmp_path, capsys):
    def old_setting(state):
        state["config"]["model"]["fpn_width"] = state["config"]["model"].pop("fpn_channels")
        return state

    out = tampered(trained, tmp_path, old_setting)
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pt"), "--out",
                 str(tmp_path / "p"), str(photo(tmp_path / "x.png"))]) == 2
    assert "has settings this version does not know: ['fpn_width']" in one_line_error(capsys)
    bare = tmp_path / "bare"                       # weights, step, config: no optimizer
    bare.mkdir()
    shutil.copy(checkpoint, bare / "checkpoint.pt")
    assert main(["train", "--out", str(bare), "--resume", "--steps", "3", "--no-progress",
                 "--set", "cache='none'"]) == 2
    err = one_line_error(capsys)
    assert "cannot resume" in err and "it has no 'optimizer', 'scheduler', 'rng'" in err
    assert "another --out folder" in err
