"""plot_loss_comparison: several runs' losses on the same axes, a panel per loss term, the
run that stopped early marked (the single-run plots: tests/test_viz.py)."""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from fcos_lib.curves import LOSS_KEYS, plot_loss_comparison


def log(scale: float, steps: int, blow_up_at: int | None = None) -> list[dict]:
    """Loss records of a made-up run (``scale / step``), an evaluation line at its end, and a
    total that turns inf at ``blow_up_at``."""
    records = [{"step": s, "lr": 0.01, "classification": scale / s, "bbox_regression": 2 * scale,
                "bbox_ctrness": 0.6, "total": math.inf if s == blow_up_at else 3 * scale}
               for s in range(10, steps + 1, 10)]
    return records + [{"step": steps, "map50": 0.5}]


def test_a_panel_per_loss_a_line_per_run_in_the_same_colour():
    runs = {"high": log(10.0, 30), "preset": log(1.0, 60), "low": log(0.1, 60)}
    fig = plot_loss_comparison(runs)
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == list(LOSS_KEYS)
    for ax in panels:
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "step"
        assert ax.get_ylabel() == "loss"
        assert [line.get_color() for line in ax.lines] == ["C0", "C1", "C2"]
        assert ax.get_xlim() == panels[0].get_xlim()
    classification = panels[LOSS_KEYS.index("classification")]
    np.testing.assert_allclose(classification.lines[0].get_xdata(), [10, 20, 30])
    np.testing.assert_allclose(classification.lines[2].get_ydata(),
                               [0.1 / s for s in range(10, 61, 10)])   # the map50 line left out
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(runs)
    fig.canvas.draw()      # the tick labels are written when drawn: plain numbers, 0.3 and 2
    for ax in panels:
        labels = [t.get_text() for t in ax.get_yticklabels(which="both") if t.get_text()]
        assert labels and all(float(label) > 0 for label in labels), labels
    plt.close(fig)


def test_a_stopped_run_is_marked_and_named_and_non_finite_points_are_left_out():
    runs = {"high": log(10.0, 40, blow_up_at=40), "preset": log(1.0, 60)}
    fig = plot_loss_comparison(runs, stopped={"high": "non-finite loss at step 37"},
                               keys=("total", "classification"))
    total, classification = fig.axes
    line, cross, healthy = total.lines
    np.testing.assert_allclose(line.get_xdata(), [10, 20, 30])            # step 40 was inf
    assert cross.get_marker() == "x" and cross.get_color() == line.get_color()
    np.testing.assert_allclose(cross.get_xydata(), [[30, 30.0]])         # its last finite point
    np.testing.assert_allclose(classification.lines[1].get_xydata(), [[40, 10.0 / 40]])
    assert healthy.get_marker() == "None"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        "high: non-finite loss at step 37", "preset"]
    plt.close(fig)


def test_three_keys_on_two_columns_leave_the_fourth_panel_empty():
    fig = plot_loss_comparison({"a": log(1.0, 20)}, keys=LOSS_KEYS[:3])
    assert len(fig.axes) == 4 and [ax.axison for ax in fig.axes] == [True, True, True, False]
    plt.close(fig)


def test_stopped_must_name_a_run():
    with pytest.raises(ValueError, match=r"not in runs: \['hihg'\]; the runs are \['high'\]"):
        plot_loss_comparison({"high": log(1.0, 20)}, stopped={"hihg": "non-finite loss"})
