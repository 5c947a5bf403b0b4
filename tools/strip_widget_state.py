"""Save notebooks as they are committed: outputs kept, ipywidgets' state and views left out.

A notebook run in JupyterLab or by ``nbconvert --execute`` keeps, for every widget a cell
displayed, an output that names the widget's model, and (nbconvert always, JupyterLab when
asked) the state of every model in the notebook's metadata: hundreds of kilobytes for the
viewers of notebook 07, matching no kernel. Reopened without running, JupyterLab finds no
model for such an output: it shows "Error displaying widget: model not found" in its place
(in a notebook it trusts) or the output's plainer types (in one it does not, as a clone is),
a raw ``VBox(children=...`` line for a bare widget. The viewers of ``fcos_lib`` publish a
still picture beside their widget (``fcos_lib.photo_viewer.display_bundle``); this tool keeps
the picture and drops the rest:

* ``metadata.widgets`` goes;
* an output's widget view goes, and the output keeps its other types (the picture, a line
  of text); an output with nothing left but the widget's ``text/plain`` repr goes whole.

Usage::

    python tools/strip_widget_state.py NOTEBOOK...            # strip, in place
    python tools/strip_widget_state.py --check NOTEBOOK...    # exit 1 if any needs it
    python tools/strip_widget_state.py --execute NOTEBOOK...  # run in full, then strip

``--execute`` runs the notebook from its own folder with ``FCOS_QUICK`` unset (the real
thing, as committed), each cell for up to 30 minutes, as ``jupyter nbconvert --execute`` does;
a cell that fails stops it and the file is left as it was. ``make notebook NB=...`` calls it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

from fcos_lib.files import atomic_file

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
TIMEOUT = 1800            # seconds a cell may run with --execute


def widget_problems(nb) -> list[str]:
    """What a reader of ``nb`` without its kernel would meet: widget state in the metadata,
    outputs that name a widget's view (empty: nothing)."""
    problems = []
    if "widgets" in nb.metadata:
        problems.append("widget state in its metadata")
    for number, cell in enumerate(nb.cells):
        views = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if views:
            problems.append(f"cell {number}: {len(views)} widget view output(s)")
    return problems


def strip_widgets(nb) -> int:
    """Remove the widget state and the widget views from ``nb`` (in place, as above); the
    number of outputs changed."""
    nb.metadata.pop("widgets", None)
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                changed += 1
                del data[WIDGET_VIEW]
                if set(data) <= {"text/plain"}:    # only the widget's repr: say nothing
                    continue
            kept.append(output)
        cell.outputs = kept
    return changed


def execute(nb, folder: Path) -> None:
    """Run every cell of ``nb`` in a fresh kernel, in ``folder``, without quick mode."""
    from nbclient import NotebookClient

    os.environ.pop("FCOS_QUICK", None)       # the kernel inherits this process's environment
    NotebookClient(nb, timeout=TIMEOUT, store_widget_state=False,
                   resources={"metadata": {"path": str(folder)}}).execute()


def main(argv: list[str] | None = None) -> int:
    """Strip (or ``--check``, or ``--execute`` and strip) each notebook; 0 when all is well."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="write nothing; exit 1 when a notebook carries widget state or views")
    mode.add_argument("--execute", action="store_true",
                      help="run each notebook in full (FCOS_QUICK unset) before stripping it")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        print(f"no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    failed = False
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        if args.check:
            problems = widget_problems(nb)
            if problems:
                failed = True
                print(f"{path}: {'; '.join(problems)}: run `python tools/strip_widget_state.py "
                      f"{path}`", file=sys.stderr)
            continue
        if args.execute:
            print(f"{path}: running every cell (FCOS_QUICK unset)...", flush=True)
            execute(nb, path.resolve().parent)
        before = path.read_text(encoding="utf-8")
        changed = strip_widgets(nb)
        text = nbformat.writes(nb) + "\n"           # as nbformat.write and nbconvert end it
        if args.execute or text != before:
            with atomic_file(path) as f:
                f.write(text.encode("utf-8"))
        print(f"{path}: {'run, ' if args.execute else ''}{changed} widget view(s) stripped, "
              f"{len(text.encode('utf-8')) / 1000:.0f} kB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
