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
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("your turn: write this function, then run the check")'
POINTER = "> **Your turn**"
ROOT = Path(__file__).resolve().parents[1]
SOURCE, TARGET = ROOT / "notebooks", ROOT / "notebooks" / "student"


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


def student_copy(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student copy of notebook ``nb`` (file name ``name``): solutions stubbed, outputs
    and execution counts cleared, no compared outputs, the title cell pointing back and its
    Colab badge opening the copy."""
    copy = nbformat.from_dict(nb)
    copy.metadata.pop("widgets", None)
    for cell in copy.cells:
        if cell.cell_type == "code":
            lines = strip_solutions(cell.source).split("\n")
            cell.source = "\n".join(l for l in lines if l.strip() != "# NBVAL_CHECK_OUTPUT")
            cell.outputs, cell.execution_count = [], None
        elif cell.source.lstrip().startswith("#") and POINTER in cell.source:
            cell.source = _point_back(cell.source, name).replace(
                f"/blob/main/notebooks/{name})", f"/blob/main/notebooks/student/{name})")
    return copy


def _point_back(source: str, name: str) -> str:
    """The title cell's "Your turn" quote (its lines that start with ``>``), rewritten for the
    student copy: where to write, and where the solutions are."""
    lines = source.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(POINTER))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith(">")),
               len(lines))
    quote = [f"{POINTER}: this is the student copy. Write each function where it raises",
             "> `NotImplementedError`, then run the check under it. The solutions are in",
             f"> [../{name}](../{name})."]
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
