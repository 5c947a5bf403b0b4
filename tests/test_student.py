"""The student copies: solutions become stubs with a worked example above each, outputs go,
the answer after an exercise is folded, links work on Colab, and the copies on disk are up to
date (tests/test_student_runs.py runs what each copy changes)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_student", ROOT / "tools" / "make_student.py")
make_student = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_student)


def test_a_solution_becomes_a_stub_at_its_indentation():
    source = "\n".join([
        "def f(x):",
        '    """doc"""',
        "    ### BEGIN SOLUTION",
        "    y = x + 1",
        "    return y",
        "    ### END SOLUTION",
        "",
        "def g():",
        "\t### BEGIN SOLUTION",
        "\treturn 3",
        "\t### END SOLUTION",
        "check(f)"])
    assert make_student.strip_solutions(source).split("\n") == [
        "def f(x):", '    """doc"""', "    " + make_student.STUB, "", "def g():",
        "\t" + make_student.STUB, "check(f)"]


@pytest.mark.parametrize("source, problem", [
    ("  ### BEGIN SOLUTION\n  x = 1", "without ### END"),
    ("  x = 1\n  ### END SOLUTION", "without ### BEGIN"),
    ("  ### BEGIN SOLUTION\n  ### BEGIN SOLUTION\n  ### END SOLUTION", "inside another"),
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "inside a function")])
def test_unpaired_markers_are_refused(source, problem):
    with pytest.raises(ValueError, match=problem):
        make_student.strip_solutions(source)


def test_the_student_copies_are_up_to_date(capsys):
    assert make_student.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")),
                         ids=lambda p: p.name)
def test_every_notebook_has_an_exercise_and_its_copy_none_of_the_solutions(path):
    original = nbformat.read(path, as_version=4)
    copy = nbformat.read(ROOT / "notebooks" / "student" / path.name, as_version=4)
    solutions = [c for c in original.cells if make_student.BEGIN in c.source]
    # Every exercise is checked, or is a guided experiment whose stub falls back on a
    # working default (08: the student's own switch, compared by the next cell).
    assert solutions and all("from fcos_lib.checks import check_" in c.source
                             or "except NotImplementedError" in c.source for c in solutions)
    for cell in copy.cells:
        assert make_student.BEGIN not in cell.source and "NBVAL_CHECK_OUTPUT" not in cell.source
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    stubs = sum(c.source.count(make_student.STUB) for c in copy.cells)
    assert stubs == sum(c.source.count(make_student.BEGIN) for c in solutions)
    title = copy.cells[0].source
    # The Colab badge opens the student copy; the prose points back to the solutions.
    badge = f"/blob/main/notebooks/student/{path.name})"
    prose = "\n".join(line for line in title.split("\n") if "Open in Colab" not in line)
    badge_line = next(line for line in title.split("\n") if "Open in Colab" in line)
    assert badge in badge_line and f"/notebooks/{path.name})" not in badge_line
    solutions = (f"[{path.name}](https://colab.research.google.com/github/"
                 f"{make_student.repository().removeprefix('https://github.com/')}"
                 f"/blob/main/notebooks/{path.name})")     # a link that works on Colab too
    assert solutions in prose and "student/" not in prose and "](../" not in prose
    # A worked example above every stub: a real case of the check the cell runs (a cell that
    # checks functions written elsewhere, as 06 checks 05's saved pieces, has no stub).
    for cell in copy.cells:
        if make_student.STUB not in cell.source:
            continue
        for check, function in make_student.CHECK_CALL.findall(cell.source):
            head = cell.source.split(f"\ndef {function}(")[0].split("\n")
            example = make_student.example(make_student.SPECS[check]())
            assert head[-len(example):] == ["# " + line for line in example], (check, head)
    # The library's answer right after an exercise is folded in the copy, open in the original.
    for before, cell, original_cell in zip(copy.cells, copy.cells[1:], original.cells[1:]):
        if make_student.STUB in before.source and "show_source(" in cell.source:
            assert "folded=True" in cell.source and "folded" not in original_cell.source
