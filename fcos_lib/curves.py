"""Curves of the numbers: precision/recall per class, and the losses of a training run.

:func:`plot_pr_curves` draws a :func:`fcos_lib.evaluate.mean_average_precision` result;
:func:`plot_loss_curves` the records of a run's ``metrics.jsonl``, which
:func:`save_loss_curve` writes to a file at the end of training and :class:`LiveLossPlot`
redraws in a notebook while it trains.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcos_lib.evaluate import interpolated_precision
from fcos_lib.files import write_atomic
from fcos_lib.runlog import read_metrics
from fcos_lib.viz import class_name

if TYPE_CHECKING:                      # matplotlib is imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = ["plot_pr_curves", "plot_loss_curves", "save_loss_curve", "LiveLossPlot"]


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
    for key in ("total", "classification", "bbox_regression", "bbox_ctrness"):
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
