"""The student copies run to their end with every stub left in, executing only what differs.

nbval runs each solution notebook in full. A student copy differs from it only in its
exercise cells (stubs), the folded answers, and whatever reads what those cells define
(``nms_ok``, the student's functions): those run here, in quick mode, with just the cells
they need (the set-up cell, and the cells that define the names they read, transitively).
Every other cell is the solution's, already run by nbval. Each exercise's check must say
"not done yet", and no cell may raise: the notebook goes on with the library's pieces.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_PYTHON = TransformerManager()
CHECK_CALL = re.compile(r"\bcheck_\w+\(\w+\)")


class Cell:
    """What a cell defines and reads: ``imports`` (name -> its import statement) apart from
    the names it makes otherwise (``made``), since an import can be replayed alone."""

    def __init__(self, source: str):
        tree = ast.parse(_PYTHON.transform_cell(source))
        self.imports: dict[str, str] = {}
        self.made: set[str] = set()
        self.reads: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                (self.reads if isinstance(node.ctx, ast.Load) else self.made).add(node.id)
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                self.made.add(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    name = (alias.asname or alias.name).split(".")[0]
                    self.imports[name] = ast.unparse(
                        type(node)(**{**node.__dict__, "names": [alias]}))


def _bare(source: str) -> str:
    """A cell's source without nbval's markers, which the student copies drop."""
    return "\n".join(line for line in source.split("\n") if not line.startswith("# NBVAL_"))


def needed_cells(student: nbformat.NotebookNode, solution: nbformat.NotebookNode
                 ) -> tuple[list[int], list[str]]:
    """The code cells to run, and the import statements to run first (after the set-up cell):
    the set-up cell, every cell that differs from the solution's or reads a name such a cell
    makes, and the cells that make what those read (only the import, where a name is
    imported)."""
    code = [i for i, c in enumerate(student.cells) if c.cell_type == "code"]
    info = {i: Cell(student.cells[i].source) for i in code}
    changed = {i for i in code if _bare(student.cells[i].source) != _bare(solution.cells[i].source)}
    tainted = set().union(*(info[i].made for i in changed)) if changed else set()
    for i in code:                                 # readers of what a changed cell made
        if i not in changed and info[i].reads & tainted:
            changed.add(i)
            tainted |= info[i].made
    needed, imports = {code[0]} | changed, []
    for i in sorted(changed, reverse=True):        # then what they read, from earlier cells
        wanted = set(info[i].reads)
        for j in reversed([j for j in code if code[0] < j < i]):
            if info[j].made & wanted:
                needed.add(j)
                wanted = (wanted - info[j].made) | info[j].reads
            for name in wanted & set(info[j].imports):
                imports.append(info[j].imports[name])
                wanted.discard(name)
    return sorted(needed), sorted(set(imports))


def test_the_slice_takes_what_a_changed_cell_reads():
    def nb(*sources):
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])

    solution = nb("import torch", "import math as m\nbig = train()", "cfg = 1",
                  "def f():\n    return m.pi", "ok = f()", "print(cfg, ok)", "unrelated = big")
    student = nb("import torch", "import math as m\nbig = train()", "cfg = 1",
                 "def f():\n    raise X(m)", "ok = f()", "print(cfg, ok)", "unrelated = big")
    assert needed_cells(student, solution) == ([0, 2, 3, 4, 5], ["import math as m"])


@pytest.fixture(scope="module")
def kernel():
    """One kernel for every student copy, started in their folder: each copy's run begins
    with ``%reset -f`` (no name left from the copy before) and imports what it needs again;
    the modules already imported stay, which spares each copy 3 s of starting a kernel and
    importing torch."""
    from nbclient import NotebookClient
    from nbclient.util import run_sync

    manager = NotebookClient(nbformat.v4.new_notebook(), kernel_name="python3"
                             ).create_kernel_manager()
    run_sync(manager.start_kernel)(cwd=str(ROOT / "notebooks" / "student"))
    yield manager
    run_sync(manager.shutdown_kernel)(now=True)


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_the_student_copy_runs_with_every_stub_left_in(path, kernel):
    from nbclient import NotebookClient

    student = nbformat.read(ROOT / "notebooks" / "student" / path.name, as_version=4)
    solution = nbformat.read(path, as_version=4)
    assert len(student.cells) == len(solution.cells)
    keep, imports = needed_cells(student, solution)
    cells = [student.cells[i] for i in keep]
    sliced = nbformat.v4.new_notebook(metadata=student.metadata, cells=[
        nbformat.v4.new_code_cell("%reset -f"), cells[0],
        nbformat.v4.new_code_cell("\n".join(imports)), *cells[1:]])
    client = NotebookClient(sliced, km=kernel, timeout=600, kernel_name="python3")
    try:
        client.execute()  # quick mode (conftest.py); raises CellExecutionError naming the cell
    finally:
        if client.kc is not None:
            client.kc.stop_channels()
    printed = "".join(o.get("text", "") for c in sliced.cells if c.cell_type == "code"
                      for o in c.outputs)
    stubbed = sum(len(CHECK_CALL.findall(c.source)) for c in sliced.cells
                  if c.cell_type == "code" and "NotImplementedError" in c.source)
    # A guided experiment (notebook 08) has no check: its stub falls back on a default.
    experiment = any("except NotImplementedError" in a.source and a.source != b.source
                     for a, b in zip(student.cells, solution.cells, strict=True))
    assert (stubbed or experiment) and printed.count(": not done yet") == stubbed, printed
