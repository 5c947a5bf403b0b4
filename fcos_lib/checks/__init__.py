"""Checks for the "Your turn" exercises: each runs a student's function on hand-made traps and
random cases against the library, and says at once whether it is right.

``check_centerness(my_centerness)`` prints one line when every case passes and returns True.
On the first wrong answer it prints that case (inputs, expected, received, the problem) and a
hint naming the likely mistake ("missing the square root?"), and returns False. It also
fails a function that edits its inputs, returns another type or dtype than promised, or (for
the pieces that training differentiates) loses the gradient; a function that still raises
``NotImplementedError`` gets a "not done yet" line. A check never raises.

==========  =======================================================================
notebook    checks
==========  =======================================================================
01 data     :func:`check_voc_to_xyxy`
02          :func:`check_feature_sizes`
03          :func:`check_top_down`
04          :func:`check_locations`, :func:`check_head`
05          :func:`check_encode`, :func:`check_decode`, :func:`check_centerness`,
            :func:`check_assign`, :func:`check_focal_loss`, :func:`check_losses`
06          :func:`check_lr_factor`
07          :func:`check_box_iou`, :func:`check_nms`, :func:`check_detect`,
            :func:`check_average_precision`
==========  =======================================================================

``SPECS`` maps each check's name to the function that builds its cases (the student copies
print a worked example from them).
"""
from fcos_lib.checks import assembly, detection, early, head, losses, results, targets
from fcos_lib.checks.assembly import check_losses
from fcos_lib.checks.detection import check_detect
from fcos_lib.checks.early import (
                                   check_feature_sizes,
                                   check_locations,
                                   check_top_down,
                                   check_voc_to_xyxy,
)
from fcos_lib.checks.head import check_head
from fcos_lib.checks.losses import check_focal_loss
from fcos_lib.checks.results import (
                                   check_average_precision,
                                   check_box_iou,
                                   check_lr_factor,
                                   check_nms,
)
from fcos_lib.checks.targets import check_assign, check_centerness, check_decode, check_encode

SPECS = {**early.SPECS, **targets.SPECS, **losses.SPECS, **results.SPECS,
         **head.SPECS, **assembly.SPECS, **detection.SPECS}

__all__ = ["check_voc_to_xyxy", "check_feature_sizes", "check_top_down", "check_locations",
           "check_head", "check_encode", "check_decode", "check_centerness", "check_assign",
           "check_focal_loss", "check_losses", "check_lr_factor", "check_box_iou", "check_nms",
           "check_detect", "check_average_precision"]
