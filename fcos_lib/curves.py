"""Curves of the numbers: precision/recall per class, and the losses of a training run.

:func:`plot_pr_curves` draws a :func:`fcos_lib.evaluate.mean_average_precision` result;
:func:`plot_loss_curves` the records of a run's ``metrics.jsonl``, which
:func:`save_loss_curve` writes to a file at the end of training and :class:`LiveLossPlot`
redraws in a notebook while it trains; :func:`plot_loss_comparison` the losses of several
runs on the same axes.
"""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcos_lib.evaluate import interpolated_precision
from fcos_lib.files import write_atomic
from fcos_lib.runlog import read_metrics
from fcos_lib.viz import class_name

if TYPE_CHECKING:                      # matplotlib is imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = ["LOSS_KEYS", "plot_pr_curves", "plot_loss_curves", "plot_loss_comparison",
           "save_loss_curve", "LiveLossPlot"]

# The loss terms of a metrics record: their sum first, then the three losses of notebook 05.
LOSS_KEYS = ("total", "classification", "bbox_regression", "bbox_ctrness")


def plot_pr_curves(result: dict[str, Any], class_names: Sequence[str] | None = None,
                   classes: Sequence[int] | None = None, ncols: int = 4) -> Figure:
    """Precision/recall curves of a :func:`fcos_lib.evaluate.mean_average_precision` result:
    per class, the raw curve and the interpolated one (best precision at this recall or
    beyond) whose area is the AP.

    Returns:
        A matplotlib Figure, one panel per class that has ground truth.
    """
    import matplotlib.pyplot as plt

    classes = list(result["curves"]) if classes is None else list(classes)
    missing = [c for c in classes if c not in result["curves"]]
    if missing:
        raise ValueError(f"no curve for classes {missing}: they have no ground truth; the "
                         f"classes with curves are {sorted(result['curves'])}")
    ncols = max(1, min(ncols, len(classes)))
    nrows = max(1, -(-len(classes) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(classes):]:
        ax.axis("off")
    for ax, c in zip(axes.flat, classes):
        curve = result["curves"][c]
        recall, precision = curve["recall"], curve["precision"]
        envelope = interpolated_precision(precision)
        steps_x, steps_y = np.r_[0.0, recall], np.r_[envelope[:1], envelope]
        ax.fill_between(steps_x, steps_y, step="pre", color="C0", alpha=0.15,
                        label="area = AP")
        ax.plot(recall, precision, color="C1", lw=3, alpha=0.55, label="precision")
        ax.step(steps_x, steps_y, where="pre", color="C0", lw=1.2,
                label="interpolated precision")
        ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        ax.set_title(f"{class_name(c, class_names)}: AP {result['per_class'][c]:.3f}", fontsize=10)
    fig.tight_layout()
    if classes:  # one legend for all panels, below them, where no curve can hide it
        fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center", ncol=3,
                   bbox_to_anchor=(0.5, 0.0), frameon=False, fontsize=9)
    return fig


def plot_loss_curves(records: Sequence[dict[str, Any]]) -> Figure:
    """The losses of a training log against the step, and the validation mAP@0.5.

    Args:
        records: the dicts of ``metrics.jsonl``: loss lines (``step``, ``classification``,
            ``bbox_regression``, ``bbox_ctrness``, ``total``, ...) and evaluation lines
            (``step``, ``map50``).

    Returns:
        A matplotlib Figure: losses (log scale) on the left, mAP@0.5 on the right.
    """
    import matplotlib.pyplot as plt

    losses = [r for r in records if "total" in r]
    evals = [r for r in records if "map50" in r]
    fig, (ax, ax_map) = plt.subplots(1, 2, figsize=(10, 3.5),
                                     gridspec_kw={"width_ratios": [2, 1]})
    for key in LOSS_KEYS:
        points = [(r["step"], r[key]) for r in losses if key in r]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=2 if key == "total" else 1, label=key)
    ax.set(xlabel="step", ylabel="loss", title="training losses")
    if losses:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    if evals:
        ax_map.plot([r["step"] for r in evals], [r["map50"] for r in evals], "o-", color="C3")
    ax_map.set(xlabel="step", ylabel="mAP@0.5", title="validation mAP@0.5", ylim=(0, 1))
    fig.tight_layout()
    return fig


def plot_loss_comparison(runs: Mapping[str, Sequence[dict[str, Any]]],
                         stopped: Mapping[str, str] | None = None,
                         keys: Sequence[str] = LOSS_KEYS, ncols: int = 2) -> Figure:
    """The losses of several runs on the same axes, to compare them: one panel per loss term,
    one line per run, in the same colour in every panel.

    Args:
        runs: a run's name (its legend entry) -> its metrics records, as
            :func:`plot_loss_curves` takes them; evaluation lines are left out.
        stopped: a run's name -> why it stopped early (e.g. ``"non-finite loss at step
            57"``): an x marks its last logged point, and its legend entry says why.
        keys: the loss terms to draw, a panel each.
        ncols: panels per row.

    Returns:
        A matplotlib Figure: every panel has the step on x (the same range in each, as
        every panel draws every run) and the loss on a log scale on y, one legend for all
        below the panels. Points that are not finite are left out (a log axis cannot
        place them).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatterSciNotation

    class PlainLogFormatter(LogFormatterSciNotation):
        """The ticks matplotlib labels on a log axis, written 0.6 and 4, not 6x10^-1."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    stopped = dict(stopped or {})
    unknown = sorted(set(stopped) - set(runs))
    if unknown:
        raise ValueError(f"stopped names runs that are not in runs: {unknown}; the runs are "
                         f"{list(runs)}")
    ncols = max(1, min(ncols, len(keys)))
    nrows = max(1, -(-len(keys) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(10, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key in zip(axes.flat, keys):
        for colour, (name, records) in enumerate(runs.items()):
            points = [(r["step"], r[key]) for r in records
                      if key in r and "total" in r and math.isfinite(r[key])]
            label = f"{name}: {stopped[name]}" if name in stopped else name
            steps, values = zip(*points) if points else ((), ())
            ax.plot(steps, values, color=f"C{colour}", lw=1.5, label=label)
            if name in stopped and points:
                ax.plot(steps[-1:], values[-1:], "x", color=f"C{colour}", ms=9, mew=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter())
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.set(xlabel="step", ylabel="loss", title=key)
        ax.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper center",
               ncol=min(4, len(runs)), bbox_to_anchor=(0.5, 0.0), frameon=False, fontsize=9)
    return fig


def save_loss_curve(out: str | Path) -> Path:
    """Draw the loss curves (and mAP points) of ``<out>/metrics.jsonl`` to
    ``<out>/loss_curve.png``; return that path."""
    import matplotlib.pyplot as plt

    fig = plot_loss_curves(read_metrics(out))
    picture = io.BytesIO()
    fig.savefig(picture, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_atomic(Path(out) / "loss_curve.png", picture.getvalue())


class LiveLossPlot:
    """An ``on_log`` callback for notebooks: the loss curves, redrawn in place as it trains.

    Args:
        every: redraw after this many loss records (evaluation records always redraw).
        records: earlier records to start from (e.g. ``read_metrics(out)`` when resuming).
    """

    def __init__(self, every: int = 5, records: list[dict[str, Any]] | None = None):
        self.every, self.records, self.handle = every, list(records or []), None

    def __call__(self, record: dict[str, Any]) -> None:
        """Take one metrics record; redraw when it is time."""
        self.records.append(record)
        if "total" in record and sum("total" in r for r in self.records) % self.every:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = plot_loss_curves(self.records)
        if self.handle is None:
            self.handle = display(fig, display_id=True)
        else:
            self.handle.update(fig)
        plt.close(fig)
