"""Write every notebook's set-up cell and "Open in Colab" badge from one template and one
address: the ``Repository`` URL in ``pyproject.toml``'s ``[project.urls]``. A fork or a rename
changes that line and runs ``make sync`` (``make student`` runs it too); ``--check`` only says
whether the notebooks and the README are up to date (the tests run it).

The set-up cell installs ``fcos_lib`` on Colab from that address, or from the one the
environment variable ``FCOS_INSTALL`` gives (a fork, a local clone: the tests' fake Colab
installs from the working tree), with plain ``pip install``, which leaves the packages Colab
already has (torch, torchvision, ipywidgets) as they are when they satisfy the requirements.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/"
                   r"github/[^)]*\)")
SETUP = '''\
# Set-up. On Colab: install fcos_lib, keeping Colab's own torch, torchvision and ipywidgets.
import os, sys
FCOS_INSTALL = os.environ.get("FCOS_INSTALL", "git+{url}")
if "google.colab" in sys.modules:
    %pip install --quiet {{FCOS_INSTALL}}
import torch
from fcos_lib.env import describe_device, pick, pick_device, seed_everything, show_source
device = pick_device()
print(describe_device(device))'''


def repository(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """The repository's address, ``https://github.com/<owner>/<name>``, from pyproject.toml."""
    found = re.search(r'^Repository\s*=\s*"(https://github\.com/[^/"]+/[^/"]+?)/?"',
                      pyproject.read_text(), re.MULTILINE)
    if not found:
        raise SystemExit(f"{pyproject}: no Repository = \"https://github.com/<owner>/<name>\" "
                         "line under [project.urls]")
    return found.group(1)


def setup_cell(url: str) -> str:
    """The set-up cell's source for the repository at ``url``."""
    return SETUP.format(url=url)


def badge(url: str, path: str) -> str:
    """The "Open in Colab" badge of the notebook at ``path`` (relative to the repository)."""
    owner_name = url.removeprefix("https://github.com/")
    return (f"[![Open in Colab]({BADGE_IMAGE})](https://colab.research.google.com/github/"
            f"{owner_name}/blob/main/{path})")


def sync_notebook(nb: nbformat.NotebookNode, path: str, url: str) -> nbformat.NotebookNode:
    """``nb`` with its set-up cell (the first code cell) and its title's badge written anew.

    Raises:
        ValueError: the notebook does not start with a title cell and a set-up cell.
    """
    title, setup = nb.cells[0], nb.cells[1]
    if not (title.cell_type == "markdown" and title.source.startswith("# ")
            and setup.cell_type == "code" and setup.source.startswith("# Set-up")):
        raise ValueError(f"{path}: expected a '# ' title cell, then a '# Set-up' code cell")
    setup.source = setup_cell(url)
    lines = [line for line in title.source.split("\n") if not BADGE.fullmatch(line)]
    if len(lines) > 1 and lines[1] == "" and len(lines) > 2 and lines[2] == "":
        del lines[1]
    title.source = "\n".join([lines[0], "", badge(url, path)] + lines[1:])
    return nb


def readme_with_badges(text: str, url: str) -> str:
    """The README with every Colab badge pointing into the repository at ``url``."""
    def fix(match: re.Match) -> str:
        path = re.search(r"/blob/main/([^)]*)\)$", match.group(0)).group(1)
        return badge(url, path)
    return BADGE.sub(fix, text)


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) the set-up cells and badges; 0 when up to date."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a notebook or the README is out of date")
    args = parser.parse_args(argv)
    url = repository()
    stale = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        old = path.read_text()
        nb = sync_notebook(nbformat.reads(old, as_version=4), f"notebooks/{path.name}", url)
        stale += _write(path, old, nbformat.writes(nb) + "\n", args.check)
    readme = ROOT / "README.md"
    old = readme.read_text()
    stale += _write(readme, old, readme_with_badges(old, url), args.check)
    if args.check and stale:
        print(f"out of date: {', '.join(p.name for p in stale)}; run `make sync`",
              file=sys.stderr)
        return 1
    print(f"{len(stale)} files {'to write' if args.check else 'written'}; address {url}")
    return 0


def _write(path: Path, old: str, new: str, check: bool) -> list[Path]:
    """Write ``new`` to ``path`` atomically unless it is ``old`` or ``check``; [path] if stale."""
    if new == old:
        return []
    if not check:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(new)
        tmp.replace(path)
    return [path]


if __name__ == "__main__":
    sys.exit(main())
