"""The committed notebooks as a reader meets them, without their kernel: no widget state, no
output that names a widget's view (JupyterLab would show "model not found" in its place), and
a still picture in each viewer cell; and ``tools/strip_widget_state.py``, which makes them so.
``tests/test_browser.py`` opens the committed notebook 07 in JupyterLab to see the same."""
from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from PIL import Image

from fcos_lib.photo_viewer import STILL_NOTE, WIDGET_VIEW

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "strip_widget_state", ROOT / "tools" / "strip_widget_state.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("**/*.ipynb"))
VIEWERS = ("BoxViewer(", "PhotoViewer(")
VIEW = {"version_major": 2, "version_minor": 0, "model_id": "f" * 32}


def png_base64(width: int = 8, height: int = 4) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 40, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_a_committed_notebook_carries_no_widget_state_and_no_widget_view(path):
    nb = nbformat.read(path, as_version=4)
    assert tool.widget_problems(nb) == [], (
        f"{path.name}: {tool.widget_problems(nb)}; run `python tools/strip_widget_state.py "
        f"{path.relative_to(ROOT)}`")


def test_each_viewer_cell_of_07_shows_a_still_picture_that_says_to_run_the_notebook():
    nb = nbformat.read(ROOT / "notebooks" / "07_evaluate.ipynb", as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and any(v in c.source for v in VIEWERS)]
    assert len(cells) == 2, "notebook 07 displays a box viewer and a photo viewer"
    for cell in cells:
        (output,) = cell.outputs
        picture = Image.open(io.BytesIO(base64.b64decode(output.data["image/png"])))
        assert picture.width >= 300 and picture.height >= 200, picture.size
        assert STILL_NOTE in output.data["text/plain"]
        assert "VBox(" not in output.data["text/plain"]


def notebook_with_widgets():
    """A notebook as JupyterLab saves it after running: a viewer's output (widget view, still
    picture, text), a bare widget's (its view and repr only), a plain print, and the state."""
    viewer = new_output("display_data", data={WIDGET_VIEW: VIEW, "image/png": png_base64(),
                                              "text/plain": f"image 0\n({STILL_NOTE}.)"})
    bare = new_output("display_data", data={WIDGET_VIEW: VIEW,
                                            "text/plain": "IntSlider(value=0)"})
    printed = new_output("stream", name="stdout", text="hello\n")
    nb = new_notebook(cells=[new_code_cell("viewer", outputs=[viewer], execution_count=1),
                             new_code_cell("slider; print('hello')", outputs=[bare, printed],
                                           execution_count=2)])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_stripping_keeps_the_picture_and_drops_the_views_and_the_state():
    nb = notebook_with_widgets()
    assert tool.widget_problems(nb) == ["widget state in its metadata",
                                        "cell 0: 1 widget view output(s)",
                                        "cell 1: 1 widget view output(s)"]
    assert tool.strip_widgets(nb) == 2
    assert tool.widget_problems(nb) == [] and "widgets" not in nb.metadata
    (viewer,) = nb.cells[0].outputs
    assert set(viewer.data) == {"image/png", "text/plain"}
    assert [o.output_type for o in nb.cells[1].outputs] == ["stream"]    # the bare repr went
    assert tool.strip_widgets(nb) == 0                                    # nothing left to do
    nbformat.validate(nb)


def test_the_command_checks_strips_in_place_and_refuses_a_missing_file(tmp_path, capsys):
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook_with_widgets(), path)
    assert tool.main(["--check", str(path)]) == 1
    assert "widget state in its metadata" in capsys.readouterr().err
    assert tool.main([str(path)]) == 0
    assert "2 widget view(s) stripped" in capsys.readouterr().out
    assert tool.main(["--check", str(path)]) == 0
    stripped = path.read_text()
    assert tool.main([str(path)]) == 0 and path.read_text() == stripped    # unchanged, unwritten
    assert stripped.endswith("}\n") and WIDGET_VIEW not in stripped
    assert [p.name for p in tmp_path.iterdir()] == ["run.ipynb"]           # no temporary file
    assert tool.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err


def test_execute_runs_the_notebook_without_quick_mode_then_strips_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FCOS_QUICK", "1")
    path = tmp_path / "run.ipynb"
    nb = notebook_with_widgets()
    nb.cells = [new_code_cell("import os\nprint(os.environ.get('FCOS_QUICK', 'unset'), "
                              "os.getcwd())")]
    nbformat.write(nb, path)
    assert tool.main(["--execute", str(path)]) == 0
    done = nbformat.read(path, as_version=4)
    assert done.cells[0].outputs[0].text.split() == ["unset", str(tmp_path)]
    assert done.cells[0].execution_count == 1 and tool.widget_problems(done) == []
