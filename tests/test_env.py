"""Where runs and data go: the repository's folders from its root or from notebooks/, the
current folder anywhere else (Colab)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fcos_lib.env import data_dir, runs_dir

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
