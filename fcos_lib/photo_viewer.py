"""The photo viewer: a photo of your own with the detector's boxes, at a score you choose.

:class:`PhotoViewer` wires ipywidgets controls (7.7, as on Colab, or 8) to the plain drawing
of :func:`fcos_lib.photo.draw_photo`. :func:`wrapping_box` and :func:`control_layout` are the
layout both viewers (this one and :class:`fcos_lib.viewer.BoxViewer`) give their controls:
rows that wrap onto the next line when the notebook is narrow (a small screen, JupyterLab's
file browser open) instead of scrolling, with sliders that keep a usable track.
:func:`display_bundle` is what both show when displayed: the widget while the kernel runs,
and, for a reader of the saved notebook, a still picture of the first view.
"""
from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from fcos_lib.env import on_colab
from fcos_lib.photo import detect_photo, draw_photo, read_photo
from fcos_lib.review import title_band
from fcos_lib.viz import png_bytes

if TYPE_CHECKING:
    import ipywidgets

    from fcos_lib.photo import Photo

__all__ = ["PhotoViewer", "uploaded_files", "wrapping_box", "control_layout", "display_bundle",
           "STILL_NOTE", "WIDGET_VIEW"]

DETECTIONS_KEPT = 100    # the most boxes the detector returns per image (FCOS.predict)
CONTROLS_CLASS = "fcos-controls"     # the CSS class of a wrapping_box
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"    # the mimetype of a widget's view
STILL_NOTE = "A still picture: run the notebook to use the controls"


def control_layout(kind: str = "slider") -> ipywidgets.Layout:
    """The ``ipywidgets.Layout`` of one control in a :func:`wrapping_box`: a slider or a
    dropdown starts at 270 pixels and grows to share the line (up to 420), never shrinking
    below 240 (its track stays long enough to use); a ``"checkbox"`` or a ``"button"``
    takes the width of its words."""
    import ipywidgets as w

    if kind in ("checkbox", "button"):
        return w.Layout(width="auto", flex="0 0 auto", margin="2px 12px 2px 4px")
    return w.Layout(width="270px", min_width="240px", max_width="420px", flex="1 1 270px",
                    margin="2px 8px 2px 0")


def wrapping_box(children: Sequence[ipywidgets.Widget]) -> ipywidgets.Box:
    """``children`` in a row that wraps onto the next line where the notebook is too narrow,
    never a scrollbar (the layout ipywidgets 7.7 and 8 both know: CSS flex-flow)."""
    import ipywidgets as w

    box = w.Box(list(children), layout=w.Layout(display="flex", flex_flow="row wrap",
                                                align_items="center", width="100%",
                                                overflow="visible"))
    box.add_class(CONTROLS_CLASS)        # (for a page's own styles, and the browser test)
    return box


def display_bundle(widget: ipywidgets.Widget, view: Tensor | None, info: str) -> dict[str, object]:
    """What a viewer shows when a cell displays it: its ``widget``, and a still picture of
    ``view`` under a band that says so, for a reader who has the notebook but not its kernel.

    A widget's view, saved, names a model that only the kernel held. Reopened without running,
    JupyterLab (4, with jupyterlab_widgets 3) shows "Error displaying widget: model not found"
    in its place in a notebook it trusts (one it saved after a run), never the output's other
    types; in one it does not trust (a fresh clone) it shows the richest safe type instead,
    for a bare widget its ``VBox(children=...`` repr. So the committed notebooks keep only the
    picture and the text (``tools/strip_widget_state.py``), which JupyterLab, GitHub and
    nbviewer show alike; while the kernel runs, JupyterLab ranks the widget's view first
    (``tests/test_browser.py`` sees both). On Colab, which keeps no widget state and whose choice between the two no
    test here can see, the picture is left out: the bundle is then the one ipywidgets itself
    publishes, with a plainer text.

    Args:
        widget: the viewer's outermost ipywidget (7.7 or 8).
        view: uint8 (3, H, W), the picture the viewer shows now (None: no picture yet).
        info: the viewer's info line (HTML), which the text repeats in plain words.

    Returns:
        A mimebundle: :data:`WIDGET_VIEW`, ``text/plain`` (the info line and
        :data:`STILL_NOTE`) and, with a ``view`` and not on Colab, ``image/png`` (base64).
    """
    words = html.unescape(" ".join(re.sub(r"<[^>]+>", "", info).split()))
    bundle: dict[str, object] = {WIDGET_VIEW: widget.get_view_spec(),
                                 "text/plain": f"{words}\n({STILL_NOTE}.)"}
    if view is not None and not on_colab():
        band = title_band(STILL_NOTE, view.shape[2], 22)                     # (3, 22, W)
        still = torch.cat([band, view.to(torch.uint8)], dim=1)               # (3, 22 + H, W)
        bundle["image/png"] = base64.b64encode(png_bytes(still)).decode("ascii")
    return bundle


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """``(name, content)`` of the files in a ``FileUpload``'s value: ipywidgets 8 gives a tuple
    of dicts with ``name`` and ``content``, 7 a dict from the name to one with ``content``."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


class PhotoViewer:
    """A photo of your own with the detector's boxes, at a score threshold you choose.

    Controls: ``score`` (a slider: the photo is detected once, at 0.05, and drawn at the
    slider's threshold) and ``upload`` (a file button; ``None`` where ``upload=False``, as on
    Colab, whose own ``files.upload()`` the notebook uses). ``last_found`` holds the
    detections drawn, ``last_view`` the picture.

    Args:
        model: an FCOS; size: the image size it was trained at; class_names: its classes.
        photo: anything :func:`fcos_lib.photo.read_photo` takes; name: what to call it
            (default: the file's name, without its folder).
        max_side: the picture's longer side on screen at most, pixels.
    """

    def __init__(self, model: torch.nn.Module, size: int, class_names: Sequence[str], photo: Photo, *,
                 name: str | None = None, score_thresh: float = 0.3, upload: bool = True,
                 max_side: int = 800):
        import ipywidgets as w

        self.model, self.size, self.names, self.max_side = model, size, list(class_names), max_side
        self.score = w.FloatSlider(score_thresh, min=0.05, max=0.95, step=0.05,
                                   readout_format=".2f", description="score >",
                                   continuous_update=False, layout=control_layout())
        self.upload = w.FileUpload(accept="image/*", multiple=False, description="your photo",
                                   layout=control_layout("button")) if upload else None
        self.image, self.info = w.Image(format="png"), w.HTML()
        self.last_view, self.last_found = None, None
        self.score.observe(self.redraw, "value")
        controls = [self.score] + ([self.upload] if upload else [])
        if upload:
            self.upload.observe(self._uploaded, "value")
        self.widget = w.VBox([wrapping_box(controls), self.info, self.image])
        named = Path(photo).name if isinstance(photo, (str, Path)) else "your photo"
        self.show(photo, name or named)

    def show(self, photo: Photo, name: str) -> None:
        """Detect on ``photo`` and draw it; a file that is no photo leaves the last one and
        says why, naming the file and the kinds that are read
        (:data:`fcos_lib.photo.IMAGE_KINDS`)."""
        try:
            self.pixels = read_photo(photo, name)
        except ValueError as err:
            self.info.value = f'<span style="color:#c00">{html.escape(str(err))}</span>'

            return
        self.name = name
        self.found = detect_photo(self.model, self.pixels, self.size, score_thresh=0.05)
        self.redraw()

    def _uploaded(self, change: dict[str, Any]) -> None:
        files = uploaded_files(change["new"])
        if files:
            self.show(files[0][1], files[0][0])

    def redraw(self, change: dict | None = None) -> None:
        """Draw the photo at the slider's threshold."""
        keep = self.found["scores"] > self.score.value
        self.last_found = {k: v[keep] for k, v in self.found.items()}
        view = draw_photo(self.pixels, self.last_found, self.names, max_side=self.max_side)
        self.last_view = view
        self.image.value = png_bytes(view)
        self.image.layout.width = f"{view.shape[2]}px"
        self.image.layout.max_width = "100%"
        height, width = self.pixels.shape[-2:]
        capped = (f" (the {DETECTIONS_KEPT} best-scored: the detector keeps no more, so a "
                  "lower threshold shows no more)" if len(self.found["scores"]) >= DETECTIONS_KEPT
                  and int(keep.sum()) >= DETECTIONS_KEPT else "")
        self.info.value = (f"<b>{html.escape(self.name)}</b>, {width} x {height} pixels: "
                           f"{int(keep.sum())} boxes above {self.score.value:.2f}{capped}")

    def _repr_mimebundle_(self, include: object = None, exclude: object = None
                          ) -> dict[str, object]:
        """The widget, and a still picture of the photo as drawn now (:func:`display_bundle`)."""
        return display_bundle(self.widget, self.last_view, self.info.value)

    def _ipython_display_(self) -> None:
        """Publish :meth:`_repr_mimebundle_` as display data, as ipywidgets 7.7 (Colab's)
        publishes a widget."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
