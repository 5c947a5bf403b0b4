"""The interactive viewer: what the detector got right and wrong, and why, image by image.

:class:`DetectorView` keeps, per image, the model's raw outputs, so that a new score or NMS
threshold re-runs :func:`fcos_lib.inference.detect` on them, and orders the images by
trouble (worst AP, most misses). :class:`BoxViewer` only wires ipywidgets controls (7.7, as
on Colab, or 8) to it and to the plain drawing of :mod:`fcos_lib.review`, in rows that wrap
on a narrow screen. The controls need a running kernel: displayed, the viewer also leaves a
still picture of its first view for the saved notebook
(:func:`fcos_lib.photo_viewer.display_bundle`). The viewer of a photo of your own,
:class:`fcos_lib.photo_viewer.PhotoViewer`, is importable from here too.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from fcos_lib.diagnose import (
    DUPLICATE,
    FALSE_POSITIVE,
    STATUS_NAMES,
    TRUE_POSITIVE,
    image_ap,
    judge,
)
from fcos_lib.inference import detect, predict_dataset
from fcos_lib.photo_viewer import (
    DETECTIONS_KEPT,
    PhotoViewer,
    control_layout,
    display_bundle,
    uploaded_files,
    wrapping_box,
)
from fcos_lib.review import (
    legend_html,
    level_names,
    level_panels,
    model_location_targets,
    only_classes,
    render_view,
)
from fcos_lib.viz import png_bytes

__all__ = ["DetectorView", "BoxViewer", "PhotoViewer", "uploaded_files"]

CANDIDATES_KEPT = 1000   # the most candidates shown before NMS


class DetectorView:
    """A model on a dataset, image by image, for the viewer: no widgets here.

    Args:
        model: an FCOS (its device is used).
        dataset: ``dataset[i]`` is ``(image (3, H, W) normalized, target)``; it has
            ``class_names`` unless ``class_names`` is given.
        keep: how many images' raw outputs to keep (the most recently shown).
    """

    def __init__(self, model: torch.nn.Module, dataset: Dataset,
                 class_names: Sequence[str] | None = None, keep: int = 64):
        self.model, self.dataset, self.keep = model, dataset, keep
        self.class_names = list(class_names or dataset.class_names)
        self.level_names = level_names(model.strides)
        self._outputs: OrderedDict[int, dict] = OrderedDict()
        self._graded: dict[float, list[tuple[float, int]]] = {}

    def __len__(self) -> int:
        return len(self.dataset)

    def outputs(self, i: int) -> dict[str, list]:
        """The raw outputs of image ``i`` (computed once, kept for the ``keep`` latest)."""
        if i in self._outputs:
            self._outputs.move_to_end(i)
            return self._outputs[i]
        image, _ = self.dataset[i]
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model(image[None].to(device))
        self.model.train(was_training)
        self._outputs[i] = out
        while len(self._outputs) > self.keep:
            self._outputs.popitem(last=False)
        return out

    def detections(self, i: int, score_thresh: float, nms_thresh: float,
                   before_nms: bool = False) -> dict[str, Tensor]:
        """Image ``i``'s detections at these thresholds, from its kept raw outputs; with
        ``before_nms`` the candidates NMS would choose from (up to 1000)."""
        image, _ = self.dataset[i]
        keep_all = (lambda boxes, scores, groups, iou:
                    torch.argsort(scores, descending=True))
        found = detect(self.outputs(i), tuple(image.shape[-2:]), score_thresh=score_thresh,
                       nms_thresh=nms_thresh,
                       detections_per_img=CANDIDATES_KEPT if before_nms else DETECTIONS_KEPT,
                       nms=keep_all if before_nms else self.model.pieces.nms)[0]
        return {k: v.cpu() for k, v in found.items()}

    def graded(self, iou_threshold: float) -> bool:
        """Whether the images are graded at ``iou_threshold`` already (ordering is instant)."""
        return iou_threshold in self._graded

    def order(self, by: str, iou_threshold: float = 0.5) -> list[int]:
        """The images' numbers in the order ``by``: ``"index"``, ``"ap"`` (the worst AP
        first) or ``"misses"`` (the most missed objects first), graded at the evaluation's
        settings (every detection above 0.05, NMS at 0.6); computed once per IoU."""
        if by == "index":
            return list(range(len(self)))
        if iou_threshold not in self._graded:
            predictions, targets = predict_dataset(self.model, self.dataset)
            graded = []
            for p, t in zip(predictions, targets):
                misses = int((~judge(p, t, iou_threshold)["found"]).sum())
                graded.append((image_ap(p, t, len(self.class_names), iou_threshold), misses))
            self._graded[iou_threshold] = graded
        graded = self._graded[iou_threshold]
        if by == "ap":   # images without objects (NaN) last
            return sorted(range(len(self)), key=lambda i: (math.isnan(graded[i][0]),
                                                          graded[i][0], i))
        if by == "misses":
            return sorted(range(len(self)), key=lambda i: (-graded[i][1], i))
        raise ValueError(f"order by {by!r}: choose 'index', 'ap' or 'misses'")


class BoxViewer:
    """ipywidgets controls wired to :class:`DetectorView` and :func:`render_view`.

    Controls: ``order`` (by number, worst AP first, most misses first), ``position`` (the
    slider along that order: the info line names the position and the image's number),
    ``score`` and ``nms`` (thresholds, re-running the detection), ``before_nms`` (show the
    candidates), ``iou`` (the matching threshold), ``classes`` (all, or one), ``show_gt``,
    ``level`` (-1: none; else its maps beside the picture). ``last_view`` holds the pixels
    last drawn, ``last_detections`` what was drawn, and ``last_ms`` how long the update
    took. Display the viewer itself in a notebook.

    Args:
        model, dataset, class_names: as for :class:`DetectorView`.
        scale: the picture's enlargement (default: about 448 pixels on its longer side).
        score_thresh, nms_thresh, iou_threshold: the controls' first values.
    """

    ORDERS = {"index": "by number", "ap": "worst AP first", "misses": "most misses first"}

    def __init__(self, model: torch.nn.Module, dataset: Dataset, *,
                 class_names: Sequence[str] | None = None,
                 scale: int | None = None,
                 score_thresh: float = 0.3, nms_thresh: float = 0.6, iou_threshold: float = 0.5):
        import ipywidgets as w

        self.view = DetectorView(model, dataset, class_names)
        side = max(dataset[0][0].shape[-2:])
        self.model, self.scale = model, scale or max(1, round(448 / side))
        names = self.view.class_names
        last = len(self.view) - 1
        wide, narrow = control_layout, lambda: control_layout("checkbox")
        self.order = w.Dropdown(options=[(v, k) for k, v in self.ORDERS.items()], value="index",
                                description="order", layout=wide())
        self.position = w.IntSlider(0, min=0, max=last, description="position",
                                    continuous_update=False, layout=wide())
        slider = dict(continuous_update=False, step=0.05, readout_format=".2f")
        self.score = w.FloatSlider(score_thresh, min=0.05, max=0.95, description="score >",
                                   layout=wide(), **slider)
        self.nms = w.FloatSlider(nms_thresh, min=0.1, max=0.95, description="NMS IoU",
                                 layout=wide(), **slider)
        self.before_nms = w.Checkbox(False, description="candidates before NMS", indent=False,
                                     layout=narrow())
        self.iou = w.FloatSlider(iou_threshold, min=0.1, max=0.9, description="match IoU",
                                 layout=wide(), **slider)
        self.classes = w.Dropdown(options=[("all classes", -1)] + [
            (n, i) for i, n in enumerate(names)], value=-1, description="classes",
            layout=wide())
        self.show_gt = w.Checkbox(True, description="ground truth", indent=False,
                                  layout=narrow())
        self.level = w.Dropdown(options=[("no level", -1)] + [
            (f"{n} (stride {s})", i) for i, (n, s) in enumerate(
                zip(self.view.level_names, model.strides))], value=-1, description="maps",
            layout=wide())
        self.image = w.Image(format="png")
        self.info, self.legend = w.HTML(), w.HTML(legend_html())
        self.indices = self.view.order("index")
        self.last_view: Tensor | None = None
        self.last_detections: dict[str, Tensor] | None = None
        self.last_ms = 0.0
        self.order.observe(self._reorder, "value")
        for control in (self.position, self.score, self.nms, self.before_nms, self.iou,
                        self.classes, self.show_gt, self.level):
            control.observe(self.redraw, "value")
        # One box that wraps: as many controls a line as the notebook's width holds.
        self.controls = wrapping_box([self.order, self.position, self.classes, self.score,
                                      self.nms, self.before_nms, self.iou, self.show_gt,
                                      self.level])
        self.widget = w.VBox([self.controls, self.info, self.image, self.legend],
                             layout=w.Layout(width="100%", overflow="visible"))
        self.redraw()

    def _reorder(self, change: object = None) -> None:
        if self.order.value != "index" and not self.view.graded(self.iou.value):
            self.info.value = "grading every image once, at the evaluation's settings..."
        self.indices = self.view.order(self.order.value, self.iou.value)
        if self.position.value == 0:
            self.redraw()
        else:
            self.position.value = 0        # (which redraws)

    def redraw(self, change: dict | None = None) -> None:
        """Draw the picture for the controls' current values (called on every change)."""
        start = time.perf_counter()
        i = self.indices[self.position.value]
        image, target = self.view.dataset[i]
        classes = None if self.classes.value < 0 else [self.classes.value]
        found = self.view.detections(i, self.score.value, self.nms.value,
                                     self.before_nms.value)
        view = render_view(image, target, found, iou_threshold=self.iou.value, classes=classes,
                           show_gt=self.show_gt.value, class_names=self.view.class_names,
                           scale=self.scale, level_names=self.view.level_names)
        positives = None
        if self.level.value >= 0:
            shown = only_classes(target, classes)
            positives = model_location_targets(self.model, shown, *image.shape[-2:])[
                self.level.value]
            panels = level_panels(self.view.outputs(i), self.level.value,
                                  tuple(image.shape[-2:]), classes, positives, self.scale,
                                  titles=True)
            below = max(0, panels.shape[1] - view.shape[1])   # the maps' titles: room under
            view = torch.cat([torch.nn.functional.pad(view, (0, 0, 0, below), value=255),
                              panels[:, :view.shape[1] + below]], dim=2)
        self.last_view, self.last_detections = view, found
        self.image.value = png_bytes(view)
        self.image.layout.width = f"{view.shape[2]}px"     # its own size, not the output's
        self.image.layout.max_width = "100%"
        self.info.value = self._info(i, target, found, classes, positives)
        self.last_ms = 1000 * (time.perf_counter() - start)

    def _info(self, i: int, target: dict[str, Tensor], found: dict[str, Tensor],
              classes: Sequence[int] | None,
              positives: dict[str, Tensor] | None) -> str:
        capped = len(found["boxes"]) >= (CANDIDATES_KEPT if self.before_nms.value
                                         else DETECTIONS_KEPT)
        target, found = only_classes(target, classes), only_classes(found, classes)
        verdict = judge(found, target, self.iou.value)
        count = [int((verdict["status"] == s).sum()) for s in
                 (TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE)]
        said = ", ".join(f"{n} {STATUS_NAMES[s]}{'' if n == 1 else 's'}" for n, s in zip(
            count, (TRUE_POSITIVE, FALSE_POSITIVE, DUPLICATE)))
        objects = int((~target.get("difficult", torch.zeros(len(target["labels"]),
                                                            dtype=torch.bool))).sum())
        missed = int((~verdict["found"]).sum())
        ap = image_ap(found, target, len(self.view.class_names), self.iou.value)
        where = (f"<b>image {i}</b> (position {self.position.value} of {len(self.indices)}, "
                 f"{self.ORDERS[self.order.value]})")
        text = (f"{where}: {said}; {objects - missed} of {objects} objects found"
                f"{'' if math.isnan(ap) else f'; AP {ap:.2f} at IoU {self.iou.value:.2f}'}"
                f"{'' if self.show_gt.value else ' (ground truth hidden)'}")
        if capped:
            what = ((CANDIDATES_KEPT, "candidates") if self.before_nms.value else
                    (DETECTIONS_KEPT, "detections"))
            text += (f"; the {what[0]} best-scored {what[1]} only, the most kept: a lower "
                     "score threshold shows no more")
        if positives is not None:
            text += (f"; {self.view.level_names[self.level.value]}: "
                     f"{int(positives['positive'].sum())} positive locations")
        return text

    def _repr_mimebundle_(self, include: object = None, exclude: object = None
                          ) -> dict[str, object]:
        """The widget, and a still picture of the view drawn now, with its info line
        (:func:`fcos_lib.photo_viewer.display_bundle`)."""
        return display_bundle(self.widget, self.last_view, self.info.value)

    def _ipython_display_(self) -> None:
        """Publish :meth:`_repr_mimebundle_` as display data, as ipywidgets 7.7 (Colab's)
        publishes a widget; ipywidgets 8 reads the same."""
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)
