"""The three FCOS losses: focal classification, box regression (L1 or GIoU), centerness.

All three are sums over locations divided by the number of positive locations (at least 1;
averaged over processes in distributed training), so that a batch with many objects does not
weigh more than one with few:

- ``classification``: sigmoid focal loss (alpha 0.25, gamma 2) over every location and class;
  a positive location's target is the one-hot of its box's class, a background location's is
  all zeros. :func:`focal_loss_plain` is the formula as written; :func:`focal_loss`, which
  training uses, gives the same sum without building those targets, in a fraction of the
  memory and time (``bench/bench_targets.py`` times the two).
  Why this module is longer than 300 lines: the plain and the fast focal loss sit side by side,
  and so do the plain and the fast assembly of the three losses.
- ``bbox_regression``, on positives only: ``"l1"``, the mean over the four sides of the L1
  error of the LTRB distances in strides (the course's choice), or ``"giou"``, the
  generalized-IoU loss of the decoded box against the ground truth (the improved FCOS's and
  torchvision's choice).
- ``bbox_ctrness``, on positives only: binary cross-entropy with logits against
  :func:`fcos_lib.targets.centerness_target`.

:func:`fcos_loss` assigns the targets, then :func:`loss_terms` computes the three losses from
them. :func:`loss_terms_plain` is that second step written out, on every location of a batch
given as dense tables (the contract of notebook 05's exercise, L1 box loss);
:func:`fcos_lib.pieces.dense` makes training call it, or a student's version, and the tests
prove it equal to :func:`loss_terms`.

With ``box_loss="giou"``, ``center_sampling_radius=1.5``, the default size ranges, levels
P3-P7 and locations at ``i * stride`` (``location_offset=0.0``), the result equals the loss
dict of ``torchvision.models.detection.FCOS`` in training mode. One convention differs, in
every configuration: among several boxes that claim a location, torchvision keeps the
largest ``1e8 - area`` in float32, which cannot tell apart areas less than 8 px² apart
(float32 spacing at 1e8) and then keeps the box listed first; here the truly smallest box wins.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torchvision.ops import generalized_box_iou_loss

from fcos_lib.config import MODEL_CHOICES
from fcos_lib.targets import (
    assign_targets,
    centerness_target,
    decode_boxes,
    default_size_ranges,
    encode_boxes,
    pad_targets,
)
from fcos_lib.validate import integer_labels, number, one_of

BOX_LOSSES = MODEL_CHOICES["box_loss"]


def num_positives(positive: Tensor) -> Tensor:
    """The loss normalizer: the number of positive locations, at least 1.

    In distributed training (``torch.distributed`` initialized) it is the mean over processes,
    so that every process divides by the same number and the gradients average correctly.

    Args:
        positive: (B, L) bool, this process's positive locations.

    Returns:
        A float32 scalar tensor on ``positive``'s device.
    """
    count = positive.sum().to(torch.float32)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count)
        count = count / dist.get_world_size()
    return count.clamp(min=1.0)


def focal_loss_plain(logits: Tensor, labels: Tensor, alpha: float = 0.25,
                     gamma: float = 2.0) -> Tensor:
    """The focal loss as the paper writes it, summed: the contract of notebook 05's exercise,
    and the same value as :func:`focal_loss` (which takes the per-level logits of a batch;
    :func:`fcos_lib.pieces.flat` turns this one into that).

    FL(p_t) = -alpha_t · (1 - p_t)^gamma · log(p_t), where p_t is the predicted probability
    of the right answer (p for a 1 target, 1 - p for a 0 target) and alpha_t is alpha for a
    1 target, 1 - alpha for a 0 target. Every location has C targets: the one-hot of its
    class, all zeros for background.

    Args:
        logits: (N, C) classification logits of N locations.
        labels: (N,) integer class of each location, -1 for background.
        alpha, gamma: the paper's 0.25 and 2.

    Returns:
        A 0-d tensor: the sum over every location and class.
    """
    # One-hot of each location's class; background (-1) is clamped to class 0, then zeroed.
    positive = (labels >= 0)[:, None]                                        # (N, 1)
    target = F.one_hot(labels.clamp(min=0), logits.shape[-1]).to(logits) * positive  # (N, C)
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    # -log(p_t) from the logits: log(sigmoid(x)) would be -inf for x far below 0.
    minus_log_p_t = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (alpha_t * (1 - p_t) ** gamma * minus_log_p_t).sum()


def loss_terms_plain(cls_logits: Tensor, box_deltas: Tensor, centerness: Tensor, labels: Tensor,
                     box_targets: Tensor, ctr_targets: Tensor, positive: Tensor) -> list[Tensor]:
    """The three losses of a batch from its per-location targets, as written (L1 box loss):
    the contract of notebook 05's exercise, and :func:`loss_terms`'s values.

    Args:
        cls_logits: (B, L, C) class logits of every location (all levels, in order).
        box_deltas: (B, L, 4) predicted LTRB distances, in strides.
        centerness: (B, L) centerness logits.
        labels: (B, L) int64, each location's class, -1 for background.
        box_targets: (B, L, 4) LTRB distances to each positive's box, in strides (0 elsewhere).
        ctr_targets: (B, L) centerness targets in (0, 1] (0 elsewhere).
        positive: (B, L) bool, ``labels >= 0``.

    Returns:
        ``[classification, bbox_regression, bbox_ctrness]``, 0-d tensors: the focal loss
        summed over every location and class, the L1 error averaged over the four sides and
        summed over the positives, the centerness BCE with logits summed over the positives,
        each divided by the number of positives of the whole batch (at least 1).

    >>> one = loss_terms_plain(torch.zeros(1, 2, 3), torch.ones(1, 2, 4), torch.zeros(1, 2),
    ...                        torch.tensor([[1, -1]]), torch.full((1, 2, 4), 3.0),
    ...                        torch.tensor([[1.0, 0.0]]), torch.tensor([[True, False]]))
    >>> [round(t.item(), 4) for t in one]                    # 1 positive: divided by 1
    [0.6931, 2.0, 0.6931]
    """
    normalizer = positive.sum().clamp(min=1)                  # the batch's positives, >= 1
    cls = focal_loss_plain(cls_logits.flatten(0, 1), labels.flatten())   # every location
    box = F.l1_loss(box_deltas[positive], box_targets[positive], reduction="sum") / 4
    ctr = F.binary_cross_entropy_with_logits(centerness[positive], ctr_targets[positive],
                                             reduction="sum")
    return [cls / normalizer, box / normalizer, ctr / normalizer]


# Elements per piece of the focal loss on the CPU: 1 MiB of float32, so that its temporaries
# stay in cache. Whole-level temporaries of several MiB would be fresh pages each time, which
# the kernel must fault in and zero.
_CPU_PIECE = 1 << 18


def _pieces(level: Tensor) -> list[Tensor]:
    """Split one level's (B, HW, C) logits along HW into pieces of about ``_CPU_PIECE`` elements.

    Only on the CPU: on GPUs a caching allocator reuses memory and one launch per level is best.
    """
    if level.device.type != "cpu" or level.numel() <= _CPU_PIECE:
        return [level]
    rows = max(1, _CPU_PIECE // max(1, level.shape[0] * level.shape[2]))
    return list(level.split(rows, dim=1))


def _loss_of_target_0(x: Tensor, gamma: float, slope_out: Tensor | None = None) -> Tensor:
    """p^gamma · softplus(x) elementwise, p = sigmoid(x): a logit's focal loss for target 0,
    without alpha. With ``slope_out``, its derivative p^g · (g · (1 - p) · softplus(x) + p) is
    written there too (dp/dx = p · (1 - p)).

    softplus(x) = x - log(p): ``log`` and ``sigmoid`` are vectorized on the CPU, ``log1p``
    (inside ``F.softplus``) is not. p is floored at the dtype's smallest normal number so that
    its log stays finite (below x = -87 in float32), and the result is clamped at softplus's
    lower bound, 0, against rounding where the true value is tiny (below x = -14 or so).
    """
    p = torch.sigmoid(x)
    softplus = p.clamp(min=torch.finfo(p.dtype).tiny).log_()
    torch.sub(x, softplus, out=softplus).clamp_(min=0)
    p_gamma = p.pow(gamma)
    if slope_out is not None:
        slope = torch.rsub(p, 1).mul_(softplus).mul_(gamma).add_(p)
        torch.mul(p_gamma, slope, out=slope_out)
    return p_gamma.mul_(softplus)


def _swap(x: Tensor, alpha: float, gamma: float) -> tuple[Tensor, Tensor]:
    """For positive logits x: the loss of target 1 minus the loss of target 0, and its slope.

    The target-0 part is computed as the dense pass computed it, so that the two cancel to the
    last bit. The target-1 part, alpha · q^g · (-log p) with q = 1 - p, uses ``F.logsigmoid``
    (stable for any x) and d(log p)/dx = q, dq/dx = -p · q.
    """
    zero_slope = torch.empty_like(x)
    zero = _loss_of_target_0(x, gamma, slope_out=zero_slope)
    p, q, log_p = torch.sigmoid(x), torch.sigmoid(-x), F.logsigmoid(x)
    q_gamma = q ** gamma
    value = -alpha * q_gamma * log_p - (1 - alpha) * zero
    slope = alpha * q_gamma * (gamma * p * log_p - q) - (1 - alpha) * zero_slope
    return value, slope


class _FocalLoss(torch.autograd.Function):
    """The sum of :func:`focal_loss`, its gradient computed in the same pass as its value.

    Autograd would keep five full-size temporaries per level and make twice the passes over
    memory, and the positives, read from the same logits, would add another full-size gradient.
    Here each piece of the logits is read once: the loss and the gradient come out while the
    piece is in cache, and the backward only scales the stored gradients.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, labels: Tensor, alpha: float, gamma: float, want_grad: bool,
                *levels: Tensor) -> Tensor:
        dense = levels[0].new_zeros(())
        grads, positives = [], []
        for level, lab in zip(levels, labels.split([lv.shape[1] for lv in levels], dim=1)):
            grad = torch.empty_like(level) if want_grad else None
            pieces = _pieces(level)
            grad_pieces = _pieces(grad) if want_grad else [None] * len(pieces)
            for piece, grad_piece in zip(pieces, grad_pieces):
                # sum(), not dot(): pairwise summation keeps 1e-6 relative error on 10^6 terms.
                dense += _loss_of_target_0(piece, gamma, slope_out=grad_piece).sum()
                if want_grad:
                    grad_piece.mul_(1 - alpha)
            img, loc = (lab >= 0).nonzero(as_tuple=True)
            positives.append((img, loc, lab[img, loc]))
            grads.append(grad)
        # The P positive logits of all levels swap the loss of target 0 for that of target 1.
        swap, slope = _swap(torch.cat([lv[index] for lv, index in zip(levels, positives)]),
                            alpha, gamma)                                      # (P,) each
        if want_grad:
            for grad, index, part in zip(grads, positives,
                                         slope.split([len(i[0]) for i in positives])):
                grad.index_put_(index, part, accumulate=True)
        ctx.save_for_backward(*grads)  # freed by autograd after the backward
        return dense * (1 - alpha) + swap.sum()

    @staticmethod
    @once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        return None, None, None, None, *(g * grad for g in ctx.saved_tensors)


def focal_loss(logits: Sequence[Tensor], labels: Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> Tensor:
    """Sigmoid focal loss against one-hot targets, summed over every location and class.

    Equal to ``torchvision.ops.sigmoid_focal_loss(torch.cat(logits, 1), one_hot, alpha, gamma,
    reduction="sum")``, where ``one_hot`` has a 1 at each positive location's class, but builds
    neither: every logit is first charged the loss of a 0 target,
    (1 - alpha) · p^gamma · softplus(x); then the P positive logits swap that for the loss of
    a 1 target, alpha · (1 - p)^gamma · softplus(-x). The first part is a few passes over the
    logits, the second touches P elements. The tests check values and gradients
    against torchvision; ``bench/bench_targets.py`` times the two.

    Args:
        logits: per level, (B, HW_l, C) classification logits.
        labels: (B, L) integer, L = sum of HW_l: the class of each location in [0, C), or -1
            for background; on the logits' device.
        alpha: weight of the positive targets, in [0, 1] (paper: 0.25).
        gamma: focusing exponent, at least 0 (paper: 2; 0 gives alpha-weighted cross-entropy).

    Returns:
        A scalar tensor of the logits' dtype: the sum (not the mean).

    Raises:
        ValueError: on labels of the wrong size, type, device or range, or alpha or gamma out
            of range.
    """
    total, classes = sum(level.shape[1] for level in logits), logits[0].shape[-1]
    if labels.dim() != 2 or labels.shape[1] != total:
        raise ValueError(f"labels {tuple(labels.shape)} for logits of {total} locations: "
                         "expected (B, L), L the number of locations of all levels")
    integer_labels("labels", labels)
    if labels.device != logits[0].device:
        raise ValueError(f"labels are on {labels.device}, the logits on {logits[0].device}: "
                         "move them with labels.to(logits[0].device)")
    if labels.numel() and (labels.min() < -1 or labels.max() >= classes):
        raise ValueError(f"labels run from {labels.min().item()} to {labels.max().item()}: "
                         f"classes are 0 to {classes - 1}, and -1 marks background")
    number("alpha", alpha, 0.0, 1.0, hint="torchvision's 'alpha < 0: no weighting' is not "
           "offered")
    number("gamma", gamma, 0.0, hint="0 gives alpha-weighted cross-entropy")
    return _focal_sum(logits, labels, alpha, gamma)


def _focal_sum(logits: Sequence[Tensor], labels: Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> Tensor:
    """:func:`focal_loss` without its checks, for :func:`fcos_loss`, whose labels come from
    :func:`fcos_lib.targets.pad_targets`, already checked."""
    want_grad = torch.is_grad_enabled() and any(level.requires_grad for level in logits)
    return _FocalLoss.apply(labels, alpha, gamma, want_grad, *logits)


def loss_terms(outputs: dict[str, list], matched: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
               *, box_loss: str = "l1", focal: Callable | None = None) -> dict[str, Tensor]:
    """The three losses of a batch whose locations are assigned: the second step of
    :func:`fcos_loss`, fast (the focal loss per level, without one-hot targets; the box
    targets of the positives alone).

    Args:
        outputs: the model's raw outputs, as for :func:`fcos_loss`.
        matched: (B, L) the box index of each location, -1 for background.
        gt_boxes: (B, M, 4) xyxy pixels and gt_labels (B, M) int64, padded
            (:func:`fcos_lib.targets.pad_targets`).
        box_loss: ``"l1"`` or ``"giou"``.
        focal: the classification loss ``focal(logits per level, labels (B, L)) -> sum``
            (default: :func:`focal_loss`'s fast sum, its arguments already checked).

    Returns:
        ``classification``, ``bbox_regression``, ``bbox_ctrness``: float32 scalar tensors,
        each divided by the number of positives (:func:`num_positives`).
    """
    # Losses in float32 even under autocast: the focal loss and GIoU lose too much in float16.
    cls_logits = [level.float() for level in outputs["cls_logits"]]           # (B, HW_l, C)
    deltas = torch.cat(outputs["box_deltas"], dim=1).float()                  # (B, L, 4)
    ctr_logits = torch.cat(outputs["centerness"], dim=1).float()              # (B, L)
    locations = torch.cat(outputs["locations"], dim=0).to(deltas)             # (L, 2)
    loc_strides = torch.cat([deltas.new_full((len(p),), float(s))
                             for p, s in zip(outputs["locations"], outputs["strides"])])  # (L,)
    positive = matched >= 0
    normalizer = num_positives(positive)

    img, loc = positive.nonzero(as_tuple=True)                                # (P,) each
    box_index = matched[img, loc]
    pos_boxes = gt_boxes[img, box_index]                                      # (P, 4)
    labels = torch.full_like(matched, -1)                                     # (B, L)
    labels[img, loc] = gt_labels[img, box_index]
    cls = (focal or _focal_sum)(cls_logits, labels)

    pos_locations, pos_strides = locations[loc], loc_strides[loc]             # (P, 2), (P,)
    target_deltas = encode_boxes(pos_boxes, pos_locations, pos_strides)       # (P, 4)
    pos_deltas = deltas[img, loc]                                             # (P, 4)
    if box_loss == "l1":
        box = F.l1_loss(pos_deltas, target_deltas, reduction="sum") / 4
    else:
        pred_boxes = decode_boxes(pos_deltas, pos_locations, pos_strides)
        box = generalized_box_iou_loss(pred_boxes, pos_boxes, reduction="sum")
    ctr = F.binary_cross_entropy_with_logits(
        ctr_logits[img, loc], centerness_target(target_deltas), reduction="sum")
    return {"classification": cls / normalizer, "bbox_regression": box / normalizer,
            "bbox_ctrness": ctr / normalizer}


def fcos_loss(outputs: dict[str, list], targets: list[dict[str, Tensor]], *,
              box_loss: str = "l1", center_sampling_radius: float | None = None,
              size_ranges: list[tuple[float, float]] | None = None,
              assign: Callable = assign_targets, focal: Callable | None = None,
              terms: Callable = loss_terms) -> dict[str, Tensor]:
    """The FCOS losses of a batch: assign targets, then the three losses.

    Args:
        outputs: the model's raw outputs (see ``docs/design.md``), per-level lists of
            ``cls_logits`` (B, HW_l, C), ``box_deltas`` (B, HW_l, 4) LTRB in strides,
            ``centerness`` (B, HW_l) logits, ``locations`` (HW_l, 2) xy pixels, ``strides`` int.
        targets: B dicts with ``boxes`` (N_i, 4) xyxy pixels and ``labels`` (N_i,) int64.
        box_loss: ``"l1"`` or ``"giou"``.
        center_sampling_radius: None (whole box) or the radius in strides (paper: 1.5).
        size_ranges: None (:func:`fcos_lib.targets.default_size_ranges`) or one (lo, hi)
            pair in pixels per level.
        assign: the target assignment, with the signature and result of
            :func:`fcos_lib.targets.assign_targets` (see :mod:`fcos_lib.pieces`).
        focal: the classification loss ``focal(logits per level, labels (B, L)) -> sum``
            (default: :func:`focal_loss`'s fast sum, its arguments already checked).
        terms: the three losses from the assignment, with :func:`loss_terms`'s signature
            and result (see :mod:`fcos_lib.pieces`); it receives ``focal``.

    Returns:
        ``classification``, ``bbox_regression``, ``bbox_ctrness`` and their sum ``total``,
        float32 scalar tensors.
    """
    one_of("box_loss", box_loss, BOX_LOSSES)
    strides = list(outputs["strides"])
    if size_ranges is None:
        size_ranges = default_size_ranges(strides)
    if len(size_ranges) != len(strides):
        raise ValueError(f"{len(size_ranges)} size ranges for {len(strides)} levels: "
                         "give one (lo, hi) pair per level, or None for the paper's rule")
    num_classes = outputs["cls_logits"][0].shape[-1]
    gt_boxes, gt_labels = pad_targets(targets, num_classes,
                                      device=outputs["box_deltas"][0].device)
    matched = assign(gt_boxes, gt_labels, outputs["locations"], strides, size_ranges,
                     center_sampling_radius)                                  # (B, L)
    losses = terms(outputs, matched, gt_boxes, gt_labels, box_loss=box_loss, focal=focal)
    losses["total"] = sum(losses.values())
    return losses
