"""A student's Colab path, played here: notebooks 01, 05, 06 and 07, each in a runtime of its own.

What stands in for Colab:

* a fresh virtual environment outside the repository, with what Colab ships and we rely on
  (this machine's torch and torchvision, ipywidgets 7.7, ipykernel, matplotlib) and no
  fcos_lib: the set-up cell has to install it, from a copy of the working tree (its address
  overridden by ``FCOS_INSTALL``), with the dependencies and package data the repository
  declares;
* a fake ``google.colab``, imported at kernel start as Colab does, whose ``drive.mount`` links
  ``<mount>/MyDrive`` to one "cloud" folder that every runtime shares;
* per notebook, an empty working folder (Colab's ``/content``) and a new Drive mount point, and
  fcos_lib uninstalled before it starts, as each Colab runtime starts anew.

Then it checks: Colab's torch, torchvision and ipywidgets are the same after every install;
fcos_lib ran from the environment, not from the repository; 05 saved the student's pieces to
"Drive" and 06 trained with them; 06 wrote its run to "Drive";
07, in another runtime, evaluated that very run; data went to the working folder and nothing
was written into the repository. The viewer's tests run in the same ipywidgets-7.7 environment
(the main environment has ipywidgets 8).

Slow (a virtual environment of several GB, four notebooks): ``make colab-test`` runs it,
``.ci/run`` calls that after ``make test``. ``FCOS_COLAB_VENV=<folder>`` keeps the environment
there between runs instead of building it anew.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.colab

ROOT = Path(__file__).resolve().parents[2]
KEPT = ("torch", "torchvision", "ipywidgets")        # Colab's own: the install must keep them
IMAGE = [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}",
         "ipywidgets==7.7.*", "ipykernel", "nbformat", "matplotlib", "pytest"]

FAKE_DRIVE = '''\
"""Stands in for Colab's google.colab.drive: Drive is a local "cloud" folder."""
import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    where = Path(mountpoint)
    where.mkdir(parents=True, exist_ok=True)
    (where / "MyDrive").symlink_to(os.environ["FAKE_COLAB_CLOUD"], target_is_directory=True)
    with open(os.environ["FAKE_COLAB_MOUNTS"], "a") as log:
        log.write(f"{where}\\n")
    print(f"Mounted at {where}")
'''


def _run(*args, **kwargs) -> str:
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, args))}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _versions(python: Path) -> dict[str, str]:
    code = ("import json; from importlib.metadata import version; "
            f"print(json.dumps({{n: version(n) for n in {KEPT!r}}}))")
    return json.loads(_run(python, "-c", code))


def _files(folder: Path) -> set[Path]:
    """Every file and folder under ``folder`` but its git store and its own environment."""
    found = set()
    for here, folders, files in os.walk(folder):
        folders[:] = [f for f in folders if f not in {".git", ".venv"}]
        found.update(Path(here) / name for name in folders + files)
    return found


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """The fake Colab: its Python, the copy of the repository it installs from, the shared
    Drive folder, the fake ``google`` package and its kernel spec, and a way to open a
    runtime."""
    world = tmp_path_factory.mktemp("colab")
    venv = Path(os.environ.get("FCOS_COLAB_VENV") or world / "venv")
    python = venv / "bin" / "python"
    if not python.exists():
        _run(sys.executable, "-m", "venv", venv)
        _run(python, "-m", "pip", "install", "--quiet", *IMAGE)
    # The source: the working tree's files as a clone has them, outside the repository.
    source = world / "fcos-notebooks"
    listed = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for name in listed.split("\n"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    site = world / "colab-site" / "google" / "colab"        # `google` stays a namespace package
    site.mkdir(parents=True)
    (site / "__init__.py").write_text('"""Fake google.colab for the Colab-play test."""\n')
    (site / "drive.py").write_text(FAKE_DRIVE)
    kernels = world / "jupyter" / "kernels" / "colab"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fake Colab", "language": "python"}))
    cloud = world / "cloud"
    cloud.mkdir()
    return {"world": world, "python": python, "source": source, "cloud": cloud,
            "site": site.parents[1], "jupyter": world / "jupyter"}


def _runtime(colab, notebook: str) -> tuple[nbformat.NotebookNode, Path, list[str]]:
    """Execute ``notebooks/<notebook>`` in a new runtime; return it executed, the runtime's
    working folder and the Drive mounts it made."""
    python = colab["python"]
    subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "fcos-notebooks"],
                   capture_output=True)
    runtime = colab["world"] / notebook.removesuffix(".ipynb")
    content, ipython = runtime / "content", runtime / "ipython"
    content.mkdir(parents=True)
    startup = ipython / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # as Colab does at start\n")
    mounts = runtime / "mounts.txt"
    mounts.touch()
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import fcos_lib, importlib.metadata as m\n"
        "print('fcos_lib from', fcos_lib.__file__)\n"
        "print('versions', {n: m.version(n) for n in ('torch', 'torchvision', 'ipywidgets')})"))
    shutil.copy2(ROOT / "notebooks" / notebook, content / notebook)  # as the student opened it
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FCOS_", "JUPYTER", "IPYTHON", "PYTHON", "VIRTUAL_ENV"))}
    env.update(FCOS_QUICK="1", FCOS_INSTALL=str(colab["source"]),
               FCOS_DRIVE=str(runtime / "drive"), FAKE_COLAB_CLOUD=str(colab["cloud"]),
               FAKE_COLAB_MOUNTS=str(mounts), PYTHONPATH=str(colab["site"]),
               IPYTHONDIR=str(ipython), JUPYTER_PATH=str(colab["jupyter"]),
               JUPYTER_DATA_DIR=str(colab["jupyter"]), MPLBACKEND="Agg", TQDM_DISABLE="1",
               PATH=f"{python.parent}{os.pathsep}{os.environ['PATH']}")
    saved = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    os.environ.update(JUPYTER_PATH=env["JUPYTER_PATH"], JUPYTER_DATA_DIR=env["JUPYTER_DATA_DIR"])
    try:
        client = NotebookClient(nb, kernel_name="colab", timeout=1800, allow_errors=False)
        client.execute(env=env, cwd=str(content))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nbformat.write(nb, runtime / f"executed-{notebook}")
    return nb, content, mounts.read_text().split()


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.fixture(scope="module")
def played(colab):
    """Notebooks 01, 05, 06 and 07 run one after the other, each in its own runtime."""
    repository_before = _files(ROOT)
    before = _versions(colab["python"])
    runs = {}
    for notebook in ("01_data.ipynb", "05_targets_and_losses.ipynb", "06_train.ipynb",
                     "07_evaluate.ipynb"):
        nb, content, mounts = _runtime(colab, notebook)
        runs[notebook] = {"nb": nb, "text": _text(nb), "content": content, "mounts": mounts,
                          "versions": _versions(colab["python"])}
    return {"runs": runs, "before": before, "new_in_repository": _files(ROOT) - repository_before}


def test_the_install_keeps_colabs_packages(played):
    assert played["before"]["ipywidgets"].startswith("7.7.")
    for notebook, run in played["runs"].items():
        assert run["versions"] == played["before"], notebook
        assert f"versions {played['before']}" in run["text"], notebook


def test_fcos_lib_runs_from_the_installed_package(played, colab):
    for notebook, run in played["runs"].items():
        line = next(x for x in run["text"].split("\n") if x.startswith("fcos_lib from"))
        where = Path(line.removeprefix("fcos_lib from ").strip())
        assert "site-packages" in where.parts, (notebook, where)
        assert ROOT not in where.parents and colab["source"] not in where.parents


def test_data_goes_to_the_working_folder_and_nothing_into_the_repository(played):
    first = played["runs"]["01_data.ipynb"]
    # No VOC here: 01 says where it looked, which is the runtime's working folder.
    assert str(first["content"] / "data") in first["text"]
    assert first["mounts"] == []            # 01 writes no run: it never asks for Drive
    assert played["new_in_repository"] == set()


def test_06_trains_onto_drive_and_07_evaluates_that_run(played, colab):
    train, evaluate = played["runs"]["06_train.ipynb"], played["runs"]["07_evaluate.ipynb"]
    run = colab["cloud"] / "fcos-notebooks" / "runs" / "notebook06-shapes-quick"
    assert (run / "checkpoint.pt").is_file() and (run / "metrics.jsonl").is_file()
    assert len(train["mounts"]) == 1 and len(evaluate["mounts"]) == 1
    assert not (train["content"] / "runs").exists() and not (evaluate["content"] / "runs").exists()
    mounted = Path(evaluate["mounts"][0]) / "MyDrive" / "fcos-notebooks" / "runs"
    assert f"{mounted / 'notebook06-shapes-quick' / 'checkpoint.pt'}: step 20" in evaluate["text"]
    assert "short shapes run" not in evaluate["text"]
    assert not (colab["cloud"] / "fcos-notebooks" / "runs" / "notebook07-quick").exists()


def test_05_keeps_the_students_pieces_on_drive_and_06_trains_with_them(played, colab):
    saved = colab["cloud"] / "fcos-notebooks" / "runs" / "my_pieces.py"
    assert "def assign(" in saved.read_text() and "def focal_loss(" in saved.read_text()
    train = played["runs"]["06_train.ipynb"]["text"]
    assert "no pieces saved yet" not in train and "not done yet" not in train
    assert "your pieces: mAP@0.5" in train.replace("  ", "")


def test_the_viewer_works_with_colabs_ipywidgets(colab, played):
    """The widget tests, in the ipywidgets-7.7 environment (fcos_lib's dependencies now in)."""
    out = _run(colab["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
               "addopts=", str(ROOT / "tests" / "test_viewer.py"), cwd=ROOT,
               env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    assert " passed" in out and "failed" not in out, out
    assert _run(colab["python"], "-c", "import ipywidgets; print(ipywidgets.__version__)"
                ).startswith("7.7.")
