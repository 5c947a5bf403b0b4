"""Write the student copies of the notebooks: each exercise's solution replaced by a stub,
every output cleared. ``make student`` runs it; ``--check`` only says whether the copies in
``notebooks/student/`` are up to date (the tests run it).

A solution sits in a code cell between two marker lines, as nbgrader writes them::

    def centerness(ltrb):
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

The markers, and every line between them, become one ``raise NotImplementedError(...)`` at the
marker's indentation. nbgrader's own preprocessor does the same, but needs nbgrader with its
database and server extension installed; this is the one step of it the series uses.

Above each stubbed function the copy prints a worked example, a real case of the check that
the cell calls on it (``fcos_lib.checks.SPECS``), as comments: its inputs and what the
function must return. A ``show_source`` cell right after an exercise shows the library's
version, which is the answer: in the copy it is folded away until the student opens it.
Links to the solutions point at their Colab page, which works wherever the copy is opened.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from fcos_lib.checks import SPECS
from fcos_lib.checks.core import STUB_MESSAGE, example

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_setup import repository  # noqa: E402  (a sibling script, not a package)

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = f'raise NotImplementedError("{STUB_MESSAGE}")'
POINTER = "> **Your turn**"
ROOT = Path(__file__).resolve().parents[1]
SOURCE, TARGET = ROOT / "notebooks", ROOT / "notebooks" / "student"
CHECK_CALL = re.compile(r"\b(check_\w+)\((\w+)\)")
ANSWER = re.compile(r"^show_source\((\w[\w.]*)\)$", re.MULTILINE)
FOLDED = "# The library's version is the answer: folded until you open it (after your check)."


def strip_solutions(source: str) -> str:
    """``source`` with every BEGIN/END SOLUTION region replaced by a stub line.

    Raises:
        ValueError: a marker without its partner, or a solution outside a function.
    """
    out, inside = [], False
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker == BEGIN:
            if inside:
                raise ValueError(f"line {number}: {BEGIN} inside another solution")
            if not line.startswith((" ", "\t")):
                raise ValueError(f"line {number}: a solution must sit inside a function, so "
                                 "that the stub raises only when the function is called")
            inside = True
            out.append(line[:len(line) - len(line.lstrip())] + STUB)
        elif marker == END:
            if not inside:
                raise ValueError(f"line {number}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}")
    return "\n".join(out)


def with_examples(source: str) -> str:
    """``source`` with a worked example, as comments, above each function that the cell
    hands to a check: the check's first case, its inputs and the answer."""
    for check, function in CHECK_CALL.findall(source):
        if check not in SPECS:
            continue
        lines = ["# " + line for line in example(SPECS[check]())]
        source = re.sub(rf"^def {function}\(", "\n".join(lines) + f"\ndef {function}(",
                        source, count=1, flags=re.MULTILINE)
    return source


def student_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student copy of notebook ``nb`` (file name ``name``): solutions stubbed with a
    worked example above each, outputs and execution counts cleared, no compared outputs,
    the library's answer right after an exercise folded, the title cell pointing back and
    its Colab badge opening the copy."""
    copy = nbformat.from_dict(nb)
    copy.metadata.pop("widgets", None)
    after_exercise = False
    for cell in copy.cells:
        if cell.cell_type == "code":
            exercise = BEGIN in cell.source
            source = with_examples(cell.source) if exercise else cell.source
            lines = strip_solutions(source).split("\n")
            cell.source = "\n".join(l for l in lines if l.strip() != "# NBVAL_CHECK_OUTPUT")
            if after_exercise and ANSWER.search(cell.source):
                cell.source = FOLDED + "\n" + ANSWER.sub(r"show_source(\1, folded=True)",
                                                         cell.source)
            after_exercise = exercise
            cell.outputs, cell.execution_count = [], None
        elif cell.source.lstrip().startswith("#") and POINTER in cell.source:
            cell.source = _point_back(cell.source.replace(      # the badge opens the copy
                f"/blob/main/notebooks/{name})", f"/blob/main/notebooks/student/{name})"), name)
    return copy


def _point_back(source: str, name: str) -> str:
    """The title cell's "Your turn" quote (its lines that start with ``>``), rewritten for the
    student copy: where to write, and where the solutions are."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(POINTER))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(">")),
               len(lines))
    owner_name = repository().removeprefix("https://github.com/")
    solutions = f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}"
    quote = [f"{POINTER}: this is the student copy. Write each function where it raises",
             "> `NotImplementedError` (a worked example sits above it), then run the check "
             "under it.", f"> The solutions are in [{name}]({solutions})."]
    return "\n".join(lines[:start] + quote + lines[end:])


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check``, compare) every student copy; 0 when up to date."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a copy is missing or out of date")
    args = parser.parse_args(argv)
    TARGET.mkdir(exist_ok=True)
    stale = []
    for path in sorted(SOURCE.glob("[0-9][0-9]_*.ipynb")):
        text = nbformat.writes(student_copy(nbformat.read(path, as_version=4), path.name))
        target = TARGET / path.name
        if target.exists() and target.read_text() == text:
            continue
        stale.append(target)
        if not args.check:
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(target)
    if args.check and stale:
        print(f"out of date: {', '.join(p.name for p in stale)}; run `make student`",
              file=sys.stderr)
        return 1
    print(f"{len(stale)} student copies {'to write' if args.check else 'written'} in {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
