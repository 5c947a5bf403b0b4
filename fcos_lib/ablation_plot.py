"""The effects of an ablation table drawn: each switch's change from the baseline, seed by
seed, against the seeds' noise, beside the paper's number where it has one (notebook 08).

:func:`effects` takes the rows of :class:`fcos_lib.ablation.Comparison` (any object with
``.rows`` in that form) and returns, per switch, what the picture shows; :func:`plot_effects`
draws it, one panel per metric. Differences are in mAP points (x 100), as the table prints
them and as papers report AP.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fcos_lib.viz import TEXT_PX, text_height

if TYPE_CHECKING:                      # matplotlib is imported when a plot is drawn
    from matplotlib.figure import Figure

__all__ = ["effects", "plot_effects", "METRIC_LABELS"]

METRIC_LABELS = {"map50": "mAP@0.5", "map_coco": "COCO mAP (IoU 0.50:0.95)"}
NO_NUMBER = "no number in the paper"


def effects(rows: Sequence[Mapping[str, Any]], metric: str = "map50",
            paper: Mapping[str, Mapping[str, float | None]] | None = None
            ) -> list[dict[str, Any]]:
    """Per switch (the baseline left out, in the table's order), in mAP points (x 100):
    ``switch``, ``per_seed`` (its value minus the baseline's, seed by seed: the runs of one
    seed share their batches), ``difference`` (mean minus the baseline's mean), ``noise``
    (the verdict's threshold, None for one seed), ``verdict``, ``evaluation_only`` and
    ``paper`` (the paper's change for this switch and metric, None where it has none).

    Args:
        rows: a Comparison's ``rows``; metric: ``"map50"`` or ``"map_coco"``.
        paper: switch -> {metric: the paper's change in AP points, or None}.

    Raises:
        ValueError: no row of ``metric``, or no baseline row.

    >>> rows = [{"switch": "baseline", "metric": "map50", "values": [0.50, 0.52],
    ...          "difference": 0.0, "noise": 0.03, "verdict": "baseline"},
    ...         {"switch": "giou", "metric": "map50", "values": [0.55, 0.56],
    ...          "difference": 0.045, "noise": 0.03, "verdict": "beyond noise"}]
    >>> [(e["switch"], [round(d, 1) for d in e["per_seed"]], e["paper"])
    ...  for e in effects(rows, "map50", {"giou": {"map50": 0.4}})]
    [('giou', [5.0, 4.0], 0.4)]
    """
    mine = [r for r in rows if r["metric"] == metric]
    base = [r for r in mine if r["verdict"] == "baseline"]
    if not mine or not base:
        raise ValueError(f"no rows of metric {metric!r} with a baseline: pass a Comparison's "
                         "rows and one of its metrics, 'map50' or 'map_coco'")
    base_values = base[0]["values"]
    out = []
    for r in mine:
        if r["verdict"] == "baseline":
            continue
        noise = None if r["noise"] is None else 100 * r["noise"]
        out.append({"switch": r["switch"], "difference": 100 * r["difference"],
                    "per_seed": [100 * (v - b) for v, b in zip(r["values"], base_values)],
                    "noise": noise, "verdict": r["verdict"],
                    "evaluation_only": bool(r.get("evaluation_only", False)),
                    "paper": (paper or {}).get(r["switch"], {}).get(metric)})
    return out


def plot_effects(rows: Sequence[Mapping[str, Any]],
                 paper: Mapping[str, Mapping[str, float | None]] | None = None,
                 metrics: Sequence[str] = ("map50", "map_coco"), width: float = 9.0,
                 paper_label: str = "the paper (COCO, ResNet-50)") -> Figure:
    """One panel per metric, one row per switch: each seed's change from the baseline (dots),
    their mean (a bar), the band of the seeds' noise around zero (a mean outside its band is
    *beyond noise*), and the paper's change (a cross), or "no number in the paper".

    Args:
        rows: a Comparison's ``rows``; paper: as :func:`effects`.
        metrics: the panels, left to right; width: inches (the notebook's column is about 9).
        paper_label: the legend's name for the paper's numbers.

    Returns:
        A matplotlib Figure whose every text stands :data:`fcos_lib.viz.TEXT_PX` pixels or
        more at its dpi.
    """
    import matplotlib.pyplot as plt

    panels = [effects(rows, m, paper) for m in metrics]
    names = [e["switch"] for e in panels[0]]
    font = max(10.0, _points(TEXT_PX, plt.rcParams["figure.dpi"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 0.45 * len(names) + 1.6),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, metric, rows_of in zip(axes[0], metrics, panels):
        for y, e in enumerate(rows_of):
            if e["noise"] is not None:
                ax.fill_betweenx([y - 0.32, y + 0.32], -e["noise"], e["noise"],
                                 color="0.85", lw=0, label="noise: ±2 × the larger seed std")
            # The seeds a little above the row's middle, the paper's cross below it: a
            # cross on the same spot as the dots would hide them (rows run top down).
            offsets = [0.1 * (k - (len(e["per_seed"]) - 1) / 2) - 0.08
                       for k in range(len(e["per_seed"]))]
            ax.scatter(e["per_seed"], [y + o for o in offsets], s=18, color="C0", zorder=4,
                       label="one seed: switch − baseline")
            ax.plot([e["difference"]] * 2, [y - 0.3, y + 0.3], color="k", lw=2.5, zorder=3,
                    label="mean over the seeds")
            if e["paper"] is not None:
                ax.scatter([e["paper"]], [y + 0.2], marker="X", s=55, color="C3", zorder=5,
                           label=paper_label)
        ax.axvline(0, color="0.4", lw=0.8)
        ax.set_xlabel(f"change in {METRIC_LABELS.get(metric, metric)} (points)",
                      fontsize=font)
        ax.tick_params(labelsize=font)
        ax.grid(axis="x", color="0.92")
    axes[0, 0].set_yticks(range(len(names)), [_tick(e) for e in panels[0]])
    axes[0, 0].set_ylim(len(names) - 0.5, -0.5)              # the table's order, top down
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes[0, 1:]:
        more = ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    unique = dict(zip(labels, handles))                       # one entry per kind
    fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncols=2,
               fontsize=font, frameon=False)
    return fig


def _tick(effect: Mapping[str, Any]) -> str:
    """A row's name, marked when it only changes the evaluation, and when the paper has no
    number for it."""
    name = effect["switch"] + (" (test time)" if effect["evaluation_only"] else "")
    return name if effect["paper"] is not None else f"{name}\n({NO_NUMBER})"


def _points(pixels: float, dpi: float) -> float:
    """The font size, in points, whose capitals and digits stand ``pixels`` high at ``dpi``
    in matplotlib's default font (the labels' font, :func:`fcos_lib.viz.text_height`),
    rounded up to a half point."""
    size = pixels / (text_height(1000) / 1000) * 72 / dpi
    return -(-size * 2 // 1) / 2
