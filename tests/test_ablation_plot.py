"""fcos_lib.ablation_plot: the effects it draws are the table's, seed by seed, and the figure
reads at its saved size (every text TEXT_PX high or more, none over another)."""
from __future__ import annotations

import io

import matplotlib.pyplot as plt
import pytest
from figtext import assert_texts_readable
from matplotlib.collections import PathCollection

from fcos_lib.ablation import Comparison, summarize
from fcos_lib.ablation_plot import NO_NUMBER, effects, plot_effects

BASE = {"map50": [0.80, 0.82, 0.81], "map_coco": [0.50, 0.53, 0.51]}
SHIFTS = {"giou": 0.05, "p3-p7": -0.002, "nms-0.5": 0.001}   # one beyond noise, two within
PAPER = {"giou": {"map50": 0.4, "map_coco": 0.2}, "nms-0.5": {"map50": 0.4, "map_coco": -0.1}}


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def table() -> Comparison:
    """A Comparison as compare() returns it, three seeds, without training anything."""
    rows = []
    for switch, shift in [("baseline", 0.0), *SHIFTS.items()]:
        for metric, base in BASE.items():
            values = [v + shift + 0.004 * k for k, v in enumerate(base)] if shift else base
            stats = summarize(values, base)
            if switch == "baseline":
                stats["verdict"] = "baseline"
            rows.append({"switch": switch, "metric": metric, "values": values,
                         "evaluation_only": switch == "nms-0.5", "seeds": [0, 1, 2],
                         **stats})
    return Comparison(rows)


def test_the_effects_are_the_tables_differences_seed_by_seed_in_points():
    comparison = table()
    for metric in BASE:
        found = effects(comparison.rows, metric, PAPER)
        assert [e["switch"] for e in found] == list(SHIFTS)          # the baseline left out
        for e in found:
            row = comparison.row(e["switch"], metric)
            assert e["difference"] == pytest.approx(100 * row["difference"])
            assert e["noise"] == pytest.approx(100 * row["noise"])
            assert e["per_seed"] == pytest.approx(
                [100 * (v - b) for v, b in zip(row["values"], BASE[metric])])
            assert sum(e["per_seed"]) / 3 == pytest.approx(e["difference"])  # paired = means
            assert e["paper"] == PAPER.get(e["switch"], {}).get(metric)
            # The band drawn is the verdict's: a mean outside it is beyond noise.
            assert (abs(e["difference"]) > e["noise"]) == (e["verdict"] == "beyond noise")
    assert [e["verdict"] for e in effects(comparison.rows)] == [
        "beyond noise", "within noise", "within noise"]


def test_one_seed_has_no_band_and_a_bad_metric_is_named():
    rows = [{"switch": s, "metric": "map50", "values": [v], "difference": v - 0.5,
             "noise": None, "verdict": v == 0.5 and "baseline" or "one seed: no noise estimate"}
            for s, v in (("baseline", 0.5), ("giou", 0.6))]
    (giou,) = effects(rows)
    assert giou["noise"] is None and giou["per_seed"] == pytest.approx([10.0])
    plot_effects(rows, metrics=("map50",))                          # draws without a band
    with pytest.raises(ValueError, match="'map75'.*'map50' or 'map_coco'"):
        effects(rows, "map75")


def test_the_figure_shows_every_switch_the_papers_numbers_and_reads_at_its_size():
    fig = plot_effects(table().rows, PAPER)
    fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")     # as the notebook saves it
    axes = fig.axes
    assert len(axes) == 2
    ticks = [t.get_text() for t in axes[0].get_yticklabels()]
    assert ticks == ["giou", f"p3-p7\n({NO_NUMBER})", "nms-0.5 (test time)"]
    for ax in axes:   # a cross per number the paper has; one dot per seed and switch
        marks = [c for c in ax.collections if isinstance(c, PathCollection)]   # the scatters
        crosses = [c for c in marks if c.get_offsets().shape[0] == 1]
        dots = [c for c in marks if c.get_offsets().shape[0] == 3]
        assert len(crosses) == 2 and len(dots) == 3
        assert "(points)" in ax.get_xlabel()
    legend = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert len(legend) == 4 and any("paper" in t for t in legend)
    texts = [t for ax in axes for t in [ax.xaxis.label, *ax.get_yticklabels()]]
    for ax in axes:                          # the x ticks drawn (the list has more)
        lo, hi = ax.get_xlim()
        texts += [t for x, t in zip(ax.get_xticks(), ax.get_xticklabels()) if lo <= x <= hi]
    texts += [t for legend in fig.legends for t in legend.get_texts()]
    assert_texts_readable(fig, texts)
