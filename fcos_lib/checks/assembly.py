"""The check of notebook 05's loss assembly: from a batch's per-location targets and the head's
outputs to the three losses (focal over every location, L1 and centerness BCE on the
positives, each divided by the batch's positives, at least 1), against
:func:`fcos_lib.losses.loss_terms_plain`, gradients included: training learns through it."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from fcos_lib.checks.core import Case, Mistake, Spec, run_check
from fcos_lib.losses import focal_loss_plain, loss_terms_plain
from fcos_lib.targets import centerness_target

__all__ = ["check_losses", "SPECS"]

ARGS = ("cls_logits", "box_deltas", "centerness", "labels", "box_targets", "ctr_targets",
        "positive")


def _terms(cls_logits: Tensor, box_deltas: Tensor, centerness: Tensor, labels: Tensor,
           box_targets: Tensor, ctr_targets: Tensor, positive: Tensor, *,
           divide: str = "positives", sides: bool = True, box_on: str = "positives",
           ctr_on: str = "positives", cls_on: str = "all", cls_mean: bool = False,
           ctr_logits: bool = True, box_fn: str = "l1") -> list[Tensor]:
    """Wrong (or, with the defaults, right) losses of a batch."""
    if cls_on == "all":
        cls = focal_loss_plain(cls_logits.flatten(0, 1), labels.flatten())
    else:
        cls = focal_loss_plain(cls_logits[positive], labels[positive])
    if cls_mean:
        cls = cls / max(cls_logits.numel(), 1)
    where = positive if box_on == "positives" else torch.ones_like(positive)
    diff = box_deltas[where] - box_targets[where]
    box = (diff.abs() if box_fn == "l1" else diff ** 2).sum() / (4 if sides else 1)
    where = positive if ctr_on == "positives" else torch.ones_like(positive)
    if ctr_logits:
        ctr = F.binary_cross_entropy_with_logits(centerness[where], ctr_targets[where],
                                                 reduction="sum")
    else:
        ctr = F.binary_cross_entropy(torch.sigmoid(centerness[where]), ctr_targets[where],
                                     reduction="sum")
    if divide == "per image" and len(labels):  # each image by its own positives, averaged
        images = [_terms(*(a[i:i + 1] for a in (cls_logits, box_deltas, centerness, labels,
                                                 box_targets, ctr_targets, positive)))
                  for i in range(len(labels))]
        return [torch.stack(parts).mean() for parts in zip(*images)]
    n = {"positives": positive.sum().clamp(min=1), "per image": 1,
         "unclamped": positive.sum(),
         "locations": max(positive.numel(), 1), "nothing": 1}[divide]
    return [cls / n, box / n, ctr / n]


def _case(name: str, cls_logits: Tensor, box_deltas: Tensor, centerness: Tensor, labels: Tensor,
          box_targets: Tensor) -> Case:
    """A case whose targets agree: positives where labels >= 0, their centerness target from
    their box targets, zeros at background."""
    positive = labels >= 0
    box_targets = box_targets * positive[..., None]
    ctr_targets = torch.where(positive, centerness_target(box_targets), 0.0)
    args = (cls_logits, box_deltas, centerness, labels, box_targets, ctr_targets, positive)
    return Case(name, args, [t.detach() for t in loss_terms_plain(*args)], grad=True)


def _random(name: str, gen: torch.Generator, images: int, locations: int, classes: int,
            share: float) -> Case:
    labels = torch.randint(0, classes, (images, locations), generator=gen)
    labels[torch.rand(images, locations, generator=gen) > share] = -1
    return _case(name, torch.randn(images, locations, classes, generator=gen) * 2 - 2,
                 torch.rand(images, locations, 4, generator=gen) * 6,
                 torch.randn(images, locations, generator=gen),
                 labels, torch.rand(images, locations, 4, generator=gen) * 6 + 0.1)


def losses_spec() -> Spec:
    """The cases and known mistakes of :func:`check_losses`."""
    t = torch.tensor
    gen = torch.Generator().manual_seed(16)
    cases = [
        _case("one image, two locations: one positive (class 0), one background",
              t([[[1.0, -1.0], [0.5, -2.0]]]), t([[[1.0, 2, 1.5, 0.5], [0.2, 0.2, 0.2, 0.2]]]),
              t([[0.5, -1.0]]), t([[0, -1]]), t([[[1.5, 1.5, 1.0, 1.0], [0.0, 0, 0, 0]]])),
        _case("no positives at all: every sum divided by 1, the box and centerness losses 0",
              t([[[-1.0, 0.5], [2.0, -3.0], [0.0, 0.0]]]), torch.ones(1, 3, 4),
              t([[0.3, -0.3, 1.0]]), t([[-1, -1, -1]]), torch.ones(1, 3, 4)),
        _case("every location positive, the last class among them",
              t([[[0.5, -0.5, 1.0], [-1.0, 2.0, 0.0]]]), t([[[1.0, 1, 1, 1], [2.0, 0, 3, 1]]]),
              t([[1.0, -2.0]]), t([[2, 1]]), t([[[2.0, 1, 0.5, 1], [1.0, 1, 4, 2]]])),
        _case("two images with 3 and 1 positives: divided by 4, the batch's count",
              torch.randn(2, 4, 3, generator=gen), torch.rand(2, 4, 4, generator=gen) * 3,
              torch.randn(2, 4, generator=gen), t([[0, 2, 1, -1], [-1, -1, 1, -1]]),
              torch.rand(2, 4, 4, generator=gen) * 3 + 0.5),
        _case("an empty batch (B = 0): all three 0", torch.zeros(0, 5, 3), torch.zeros(0, 5, 4),
              torch.zeros(0, 5), torch.zeros(0, 5, dtype=torch.long), torch.zeros(0, 5, 4)),
        _case("extreme logits: -200 on a positive's class and centerness, +60 on background",
              t([[[-200.0, 0.0], [60.0, -5.0]]]), t([[[1.0, 1, 1, 1], [0.0, 0, 0, 0]]]),
              t([[-200.0, 60.0]]), t([[0, -1]]), t([[[1.0, 2, 1, 2], [0.0, 0, 0, 0]]])),
        _case("targets at the ends of their ranges: centerness 1 (the centre) and near 0, "
              "distances of 0 and 20 strides", t([[[0.2, -0.4], [0.1, 0.3], [-1.0, 1.0]]]),
              t([[[2.0, 2, 2, 2], [0.0, 19, 21, 0.5], [1.0, 1, 1, 1]]]), t([[2.0, -1.5, 0.0]]),
              t([[1, 0, -1]]), t([[[2.0, 2, 2, 2], [0.05, 20, 20, 0.05], [0.0, 0, 0, 0]]])),
        _random("random: 2 images x 30 locations, 4 classes, a third positive", gen, 2, 30, 4,
                0.33),
        _random("random: 4 images x 50 locations, 20 classes (VOC), few positives", gen, 4, 50,
                20, 0.1)]

    def wrong(**how: object) -> Callable:
        return lambda *a: _terms(*a, **how)

    mistakes = [
        Mistake(wrong(divide="locations"), "divide each sum by the number of POSITIVE "
                "locations of the batch, not by all locations (a mean)"),
        Mistake(wrong(divide="nothing"), "each loss is a sum divided by the number of "
                "positives of the batch (at least 1)"),
        Mistake(wrong(divide="unclamped"), "at least 1: a batch without positives divides "
                "by 1, not by 0"),
        Mistake(wrong(divide="per image"), "count the positives over the whole batch (the "
                "sum over its images), not image by image"),
        Mistake(wrong(sides=False), "the box loss averages the L1 error over the four sides "
                "(its sum / 4), then sums over the positives"),
        Mistake(wrong(box_fn="l2"), "the box loss is L1: the absolute differences, not their "
                "squares"),
        Mistake(wrong(box_on="all"), "the box loss counts the POSITIVE locations only: "
                "background has no box"),
        Mistake(wrong(ctr_on="all"), "the centerness loss counts the POSITIVE locations only"),
        Mistake(wrong(cls_on="positives"), "the focal loss counts EVERY location: background "
                "too, with all-zero targets"),
        Mistake(wrong(cls_mean=True), "the focal loss is a SUM over every location and "
                "class, then divided by the number of positives"),
        Mistake(wrong(ctr_logits=False), "use F.binary_cross_entropy_with_logits on the "
                "logits: sigmoid, then BCE, loses the large logits (its log is clamped)")]
    return Spec("check_losses", ARGS,
                "a list [classification, bbox_regression, bbox_ctrness] of 0-d float32 "
                "tensors that keep their gradient",
                "focal over every location and class; L1 (mean of the 4 sides) and centerness "
                "BCE with logits over the positives; each sum / max(positives of the batch, 1)",
                cases, mistakes, loss_terms_plain)


def check_losses(fn: Callable) -> bool:
    """Notebook 05. ``fn(cls_logits, box_deltas, centerness, labels, box_targets,
    ctr_targets, positive)``: a batch's outputs, (B, L, C), (B, L, 4) in strides and (B, L)
    logits, and its targets, labels (B, L) int64 (-1 background), box_targets (B, L, 4) in
    strides and ctr_targets (B, L) (zeros at background), positive (B, L) bool, to
    ``[classification, bbox_regression, bbox_ctrness]``: the focal loss summed over every
    location and class, the L1 error averaged over the four sides and summed over the
    positives, the centerness BCE with logits summed over the positives, each divided by the
    number of positives of the batch (at least 1). The gradients must be the library's; the
    inputs are left as they were."""
    return run_check(losses_spec(), fn)


SPECS = {"check_losses": losses_spec}
