"""Where runs and data go: the repository's folders from its root or from notebooks/, the
current folder anywhere else, Google Drive for runs on Colab (a fake ``google.colab`` here)."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from fcos_lib.env import data_dir, find_run, runs_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("where", [REPO, REPO / "notebooks"])
def test_inside_the_repository(where, monkeypatch):
    monkeypatch.chdir(where)
    assert runs_dir() == REPO / "runs" and data_dir() == REPO / "data"


def test_elsewhere_the_current_folder(tmp_path, monkeypatch):
    # A folder inside an unrelated tree: neither it nor its parent is the repository.
    here = tmp_path.resolve() / "notebooks"
    here.mkdir()
    monkeypatch.chdir(here)
    assert runs_dir() == here / "runs" and data_dir() == here / "data"


def test_runs_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("FCOS_RUNS", str(tmp_path / "mine"))
    assert runs_dir() == tmp_path / "mine"


@pytest.fixture
def fake_colab(tmp_path, monkeypatch):
    """A ``google.colab`` whose ``drive.mount`` makes ``<mount>/MyDrive``, as Colab's does;
    returns the mount point and the list of mounts asked for."""
    mounts = []

    def mount(where):
        mounts.append(where)
        (Path(where) / "MyDrive").mkdir(parents=True)

    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mount)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.drive", colab.drive)
    monkeypatch.setenv("FCOS_DRIVE", str(tmp_path / "drive"))
    monkeypatch.delenv("FCOS_RUNS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "drive", mounts


def test_on_colab_runs_live_on_drive(fake_colab):
    mount, mounts = fake_colab
    assert runs_dir() == mount / "MyDrive" / "fcos-notebooks" / "runs"
    assert mounts == [str(mount)]
    runs_dir()  # mounted once: the second call finds MyDrive and does not ask again
    assert mounts == [str(mount)]
    # Data stays in the runtime's own folder: reading VOC from Drive is slow.
    assert data_dir() == Path.cwd() / "data"


def test_on_colab_find_run_finds_what_another_runtime_saved(fake_colab):
    mount, _ = fake_colab
    saved = mount / "MyDrive" / "fcos-notebooks" / "runs" / "notebook06-quick" / "checkpoint.pt"
    with pytest.raises(FileNotFoundError) as missing:
        find_run("notebook06")
    message = str(missing.value)
    assert str(saved.parent) in message and "Google Drive" in message and "06" in message
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"weights")
    assert find_run("notebook06") == saved


def test_find_run_off_colab_names_the_folder_and_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("FCOS_RUNS", str(tmp_path))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    with pytest.raises(FileNotFoundError, match="FCOS_RUNS") as missing:
        find_run("notebook06")
    assert str(tmp_path / "notebook06-quick") in str(missing.value)
    assert "Google Drive" not in str(missing.value)


def test_describe_device_tells_a_colab_user_how_to_get_a_gpu(fake_colab):
    import torch

    from fcos_lib.env import describe_device

    assert "Change runtime type" in describe_device(torch.device("cpu"))


def test_find_run_takes_the_first_of_several_runs_that_exists(tmp_path, monkeypatch):
    """Notebook 06 writes one folder per preset; 07 prefers VOC's run, else the shapes one."""
    monkeypatch.setenv("FCOS_RUNS", str(tmp_path))
    names = ("notebook06-voc2007-tiny", "notebook06-shapes")
    with pytest.raises(FileNotFoundError) as missing:
        find_run(*names)
    for name in names:
        assert str(tmp_path / f"{name}-quick") in str(missing.value)
    shapes = tmp_path / "notebook06-shapes-quick" / "checkpoint.pt"
    shapes.parent.mkdir()
    shapes.write_bytes(b"weights")
    assert find_run(*names) == shapes
    voc = tmp_path / "notebook06-voc2007-tiny-quick" / "checkpoint.pt"
    voc.parent.mkdir()
    voc.write_bytes(b"weights")
    assert find_run(*names) == voc
