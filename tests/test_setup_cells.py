"""One address for the whole series: every notebook's set-up cell and Colab badge are written
from pyproject.toml's Repository line by tools/sync_setup.py, and a fork changes that one line."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = _tool("sync_setup")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUDENT = sorted((ROOT / "notebooks" / "student").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_and_readme_are_in_sync(capsys):
    assert sync.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", NOTEBOOKS + STUDENT, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_set_up_cell_is_the_template_and_the_badge_opens_this_notebook(path):
    nb = nbformat.read(path, as_version=4)
    url = sync.repository()
    assert nb.cells[1].source == sync.setup_cell(url)
    assert sync.badge(url, str(path.relative_to(ROOT))) in nb.cells[0].source.split("\n")
    later = [c.source for c in nb.cells[2:] if c.cell_type == "code"]
    assert not any("%pip" in s or "git+https" in s for s in later), "a second install cell"


def test_the_install_reads_the_environment_and_keeps_colabs_packages():
    cell = sync.setup_cell("https://github.com/someone/fork")
    assert 'os.environ.get("FCOS_INSTALL", "git+https://github.com/someone/fork")' in cell
    pip = next(line for line in cell.split("\n") if "%pip" in line)
    # Plain install: no --upgrade, no --force-reinstall, so Colab's torch and ipywidgets stay.
    assert re.fullmatch(r"\s+%pip install --quiet \{FCOS_INSTALL\}", pip)


def test_a_fork_changes_one_line_and_every_cell_and_badge_follows(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text((ROOT / "pyproject.toml").read_text().replace(
        sync.repository(), "https://github.com/someone/fork"))
    url = sync.repository(pyproject)
    assert url == "https://github.com/someone/fork"
    old = sync.repository().removeprefix("https://github.com/")
    cells = set()
    for path in NOTEBOOKS:
        relative = f"notebooks/{path.name}"
        nb = sync.sync_notebook(nbformat.read(path, as_version=4), relative, url)
        text = nb.cells[0].source + nb.cells[1].source
        assert old not in text and "someone/fork" in nb.cells[1].source
        assert f"github/someone/fork/blob/main/{relative})" in nb.cells[0].source
        assert nb.cells[0].source.count("Open in Colab") == 1   # replaced, not added
        cells.add(nb.cells[1].source)
    assert len(cells) == 1
    readme = sync.readme_with_badges((ROOT / "README.md").read_text(), url)
    assert "colab.research.google.com/github/someone/fork/" in readme
    assert f"colab.research.google.com/github/{old}" not in readme


def test_missing_address_is_a_clear_error(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[project]\nname = 'x'\n")
    with pytest.raises(SystemExit, match=r"no Repository = .*\[project.urls\]"):
        sync.repository(pyproject)


def test_sync_is_idempotent():
    url = sync.repository()
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        once = nbformat.writes(sync.sync_notebook(nb, f"notebooks/{path.name}", url))
        twice = nbformat.writes(sync.sync_notebook(nbformat.reads(once, as_version=4),
                                                   f"notebooks/{path.name}", url))
        assert once == twice
