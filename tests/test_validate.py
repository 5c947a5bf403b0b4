"""The input checks of fcos_lib.validate: one definition of a proper box, one message."""
from __future__ import annotations

import pytest
import torch

from fcos_lib.validate import boxes_xyxy, integer_labels, number, one_of, proper_boxes, whole

NAN, INF = float("nan"), float("inf")


def test_a_proper_box_is_finite_with_positive_width_and_height():
    boxes = torch.tensor([[0., 0, 2, 2], [3, 0, 1, 2], [0, 3, 2, 1], [0, 0, 0, 2],
                          [0, 0, NAN, 1], [0, 0, INF, 1]])
    assert proper_boxes(boxes).tolist() == [True, False, False, False, False, False]
    assert proper_boxes(boxes, allow_flat=True).tolist() == [True, False, False, True, False,
                                                             False]
    assert proper_boxes(boxes.view(2, 3, 4)).shape == (2, 3)          # any leading shape


def test_a_bad_box_is_named_by_its_place_and_its_problem():
    batch = torch.zeros(2, 3, 4)
    batch[..., 2:] = 1.0
    batch[1, 2] = torch.tensor([0., 0, NAN, 1])
    with pytest.raises(ValueError, match=r"^image 1, box 2: \[0.0, 0.0, nan, 1.0\] is not "
                                         r"finite .*; before the loss$"):
        boxes_xyxy("boxes", batch, where=("image", "box"), hint="before the loss")
    real = torch.tensor([[True, True, True], [True, True, False]])   # the padding skipped
    assert boxes_xyxy("boxes", batch, real=real, where=("image", "box")) is batch
    with pytest.raises(ValueError, match=r"^target\[1\] = \[5.0, 0.0, 1.0, 1.0\] has x2 <= x1"):
        boxes_xyxy("target", torch.tensor([[0., 0, 1, 1], [5, 0, 1, 1]]))


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(2, 5), [[0, 0, 1, 1]]])
def test_boxes_of_the_wrong_shape_or_type_are_refused(bad):
    with pytest.raises(ValueError, match="expected \\(N, 4\\) xyxy pixels"):
        boxes_xyxy("boxes", bad)


def test_the_one_line_checks_name_the_setting_the_value_and_the_fix():
    assert whole("steps", torch.tensor(3)) == 3 and number("lr", 0.5, 0, 1) == 0.5
    for call, says in ((lambda: whole("steps", True), "steps=True: must be a whole number"),
                       (lambda: whole("steps", 2.5, minimum=1), ">= 1"),
                       (lambda: number("lr", 0.0, 0.0, low_open=True), "lr=0.0: must be a "
                                                                        "number > 0"),
                       (lambda: number("p", NAN), "not NaN"),
                       (lambda: one_of("norm", "grp", ("group", "batch"), "e.g. group"),
                        "norm='grp': choose one of ('group', 'batch'); e.g. group"),
                       (lambda: integer_labels("labels", torch.ones(2)), "torch.int64")):
        with pytest.raises(ValueError, match=says.replace("(", "\\(").replace(")", "\\)")):
            call()
