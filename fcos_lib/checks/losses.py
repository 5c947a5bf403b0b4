"""Checks for notebook 05's losses: the focal loss, a piece that training differentiates, so
its check compares gradients as well as values."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from fcos_lib.checks.core import Case, Mistake, Spec, run_check, stand_in
from fcos_lib.losses import focal_loss_plain

__all__ = ["check_focal_loss", "SPECS"]


def _focal(logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0,
           swap: bool = False, use_gamma: bool = True, mean: bool = False,
           naive: bool = False, last_class: bool = False) -> torch.Tensor:
    """A wrong (or, with the defaults, right) focal loss."""
    target = F.one_hot(labels.clamp(min=0), logits.shape[1]).float() * (labels >= 0)[:, None]
    if last_class:                     # labels -1 index the last column, as Python's [-1]
        target = F.one_hot(labels % logits.shape[1], logits.shape[1]).float()
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    a = 1 - alpha if swap else alpha
    alpha_t = a * target + (1 - a) * (1 - target)
    ce = -torch.log(p_t) if naive else F.binary_cross_entropy_with_logits(
        logits, target, reduction="none")
    weight = (1 - p_t) ** gamma if use_gamma else 1
    loss = alpha_t * weight * ce
    return loss.mean() if mean else loss.sum()


def focal_spec() -> Spec:
    """The cases and known mistakes of :func:`check_focal_loss`."""
    gen = torch.Generator().manual_seed(9)
    hand = [("one positive and one background location, 3 classes",
             torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.0]]), torch.tensor([0, -1]), {}),
            ("alpha = 0.5, gamma = 0: plain cross-entropy, halved",
             torch.tensor([[1.0, -2.0], [0.5, 0.5]]), torch.tensor([1, 0]),
             {"alpha": 0.5, "gamma": 0.0}),
            ("the last class (label C - 1) and alpha = 0.75",
             torch.tensor([[0.3, -0.2, 1.5], [0.0, 2.0, -1.0]]), torch.tensor([2, 2]),
             {"alpha": 0.75}),
            ("extreme logits (-200 on a positive, +60 on background)",
             torch.tensor([[-200.0, 0.0], [60.0, -5.0]]), torch.tensor([0, -1]), {}),
            ("no locations at all (N = 0): the sum is 0", torch.zeros(0, 3),
             torch.zeros(0, dtype=torch.long), {}),
            ("background everywhere (every label -1)", torch.tensor([[0.5, -1.0], [2.0, 0.0]]),
             torch.tensor([-1, -1]), {}),
            ("confident and right (+30 on a positive, -30 on background): tiny, finite "
             "gradients", torch.tensor([[30.0, -30.0], [-30.0, -25.0]]), torch.tensor([0, -1]),
             {})]
    cases = [Case(name, (x, y), focal_loss_plain(x, y, **kw).detach(), kwargs=kw, grad=True)
             for name, x, y, kw in hand]
    x = torch.randn(20, 4, generator=gen) * 3
    y = torch.randint(-1, 4, (20,), generator=gen)
    cases.append(Case("20 random locations, 4 classes", (x, y), focal_loss_plain(x, y).detach(),
                      grad=True))
    mistakes = [
        Mistake(lambda *a, **k: _focal(*a, **k, swap=True), "alpha weights the POSITIVE "
                "targets (a 1 in the one-hot), 1 - alpha the background ones"),
        Mistake(lambda *a, **k: _focal(*a, **k, use_gamma=False), "the focusing term "
                "(1 - p_t)^gamma is missing"),
        Mistake(lambda *a, **k: _focal(*a, **k, mean=True), "sum over every location and "
                "class; fcos_loss divides by the number of positives later"),
        Mistake(lambda *a, **k: _focal(*a, **k, naive=True), "log(sigmoid(x)) underflows to "
                "-inf for very negative x: compute -log(p_t) from the logits with "
                "F.binary_cross_entropy_with_logits (or F.logsigmoid)"),
        Mistake(lambda *a, **k: _focal(*a, **k, last_class=True), "background (-1) has no "
                "class: target[i, -1] = 1 marks the LAST class; set the one-hot only where "
                "labels >= 0")]
    return Spec("check_focal_loss", ("logits", "labels"),
                "a 0-d float32 tensor (the sum) that keeps its gradient",
                "FL = -alpha_t (1 - p_t)^gamma log(p_t), summed (not averaged) over every "
                "location and class", cases, mistakes, focal_loss_plain)


def check_focal_loss(fn: Callable) -> bool:
    """``fn(logits, labels, alpha=0.25, gamma=2.0)``: logits (N, C) float32, labels (N,)
    int64 in [0, C) or -1 for background, to the focal loss summed over every location and
    class, -alpha_t · (1 - p_t)^gamma · log(p_t) against one-hot targets: a 0-d float32
    tensor whose gradient with respect to the logits is the library's (training learns
    through it). The inputs are left as they were."""
    return run_check(focal_spec(), fn)


stand_in("focal_loss", focal_loss_plain)
SPECS = {"check_focal_loss": focal_spec}
