"""The check of notebook 04's head exercise: the head's forward pass on one pyramid level
(two stems, three final convs, ReLU distances, centerness from the box stem, row-major
flattening), against :func:`fcos_lib.head.head_level_plain`, gradients included: training
learns through it."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from fcos_lib.checks.compare import show
from fcos_lib.checks.core import Case, Mistake, Spec, run_check
from fcos_lib.head import FCOSHead, head_level_plain

__all__ = ["check_head", "SPECS"]

ARGS = ("cls_stem", "box_stem", "cls_logits", "box_deltas", "centerness", "features")


def _head_level(cls_stem: nn.Module, box_stem: nn.Module, cls_logits: nn.Module,
                box_deltas: nn.Module, centerness: nn.Module, features: Tensor, *,
                ctr_stem: str = "box", box_stem_used: str = "box", cls_stem_used: str = "cls",
                relu: str = "box", sigmoid: bool = False, order: str = "rows") -> list[Tensor]:
    """A wrong (or, with the defaults, right) head on one level."""
    stems = {"cls": cls_stem(features), "box": box_stem(features)}
    logits = cls_logits(stems[cls_stem_used])
    deltas = box_deltas(stems[box_stem_used])
    ctr = centerness(stems[ctr_stem])
    if relu in ("box", "all"):
        deltas = torch.relu(deltas)
    if relu == "all":
        logits, ctr = torch.relu(logits), torch.relu(ctr)
    if sigmoid:
        logits = torch.sigmoid(logits)

    def rows(x: Tensor) -> Tensor:
        if order == "columns":
            return x.permute(0, 3, 2, 1).flatten(1, 2)
        if order == "reshape":
            return x.reshape(x.shape[0], x.shape[2] * x.shape[3], x.shape[1])
        return x.permute(0, 2, 3, 1).flatten(1, 2)

    return [rows(logits), rows(deltas), rows(ctr)[..., 0]]


def _head(in_channels: int, classes: int, stem_convs: int, norm: str, seed: int,
          box_bias: float = 0.0) -> FCOSHead:
    """A head whose weights are random at a scale that makes every output matter (the
    library's initial weights are tiny: every location would give nearly the bias)."""
    gen = torch.Generator().manual_seed(seed)
    head = FCOSHead(classes, in_channels, 1, stem_convs, norm=norm)
    with torch.no_grad():
        for name, p in head.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            scale = 1.0 / fan_in ** 0.5 if p.dim() > 1 else 0.3
            p.copy_(torch.randn(p.shape, generator=gen) * scale + (1.0 if name.endswith(
                ".weight") and p.dim() == 1 else 0.0))
        head.box_deltas.bias.add_(box_bias)
    return head


def _case(name: str, head: FCOSHead, features: Tensor, shown: dict[str, str] | None = None
          ) -> Case:
    args = (head.cls_stem, head.box_stem, head.cls_logits, head.box_deltas, head.centerness,
            features)
    expected = [t.detach() for t in head_level_plain(*args)]
    return Case(name, args, expected, shown=shown, grad=True)


def _features(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen)


def head_spec() -> Spec:
    """The cases and known mistakes of :func:`check_head`."""
    gen = torch.Generator().manual_seed(15)
    first = _head(2, 2, 1, "group", 1)
    conv = "Conv2d(2, 2, 3, padding=1)"
    shown = {"cls_stem": f"Sequential({conv}, GroupNorm(2, 2), ReLU())",
             "box_stem": f"Sequential({conv}, GroupNorm(2, 2), ReLU())  (its own weights)",
             "cls_logits": "Conv2d(2, 2, 3, padding=1)  (C = 2 classes)",
             "box_deltas": "Conv2d(2, 4, 3, padding=1)", "centerness": "Conv2d(2, 1, 3, padding=1)"}
    x = _features(gen, 1, 2, 1, 3)
    cases = [
        _case("one 1 x 3 level, a batch of 1, two classes, one conv per stem", first, x,
              {**shown, "features": show(x)}),
        _case("a 3 x 5 map (wider than high): row by row, x fastest", _head(4, 3, 1, "group", 2),
              _features(gen, 1, 4, 3, 5)),
        _case("box outputs mostly below 0: the ReLU cuts them at 0",
              _head(4, 2, 1, "group", 3, box_bias=-0.5), _features(gen, 2, 4, 3, 3)),
        _case("no stem convs (stem_convs = 0): the final convs read the features",
              _head(4, 3, 0, "group", 4), _features(gen, 1, 4, 2, 4)),
        _case("a map of a single cell (1 x 1)", _head(4, 3, 1, "group", 5),
              _features(gen, 2, 4, 1, 1)),
        _case("an empty batch (B = 0)", _head(4, 3, 1, "group", 6), torch.zeros(0, 4, 3, 2)),
        _case("the course's stems: two convs, no normalization", _head(8, 4, 2, "none", 7),
              _features(gen, 2, 8, 4, 3)),
        _case("a batch of 2, two convs with GroupNorm, 5 classes", _head(8, 5, 2, "group", 8),
              _features(gen, 2, 8, 5, 4)),
        _case("random: the paper's four convs per stem, 16 channels, 6 classes",
              _head(16, 6, 4, "group", 9), _features(gen, 2, 16, 4, 4))]

    def wrong(**how: object) -> Callable:
        return lambda *a: _head_level(*a, **how)

    mistakes = [
        Mistake(wrong(ctr_stem="cls"), "centerness is computed from the BOX stem's features: "
                "centerness(box_stem(features)), as the improved FCOS and the course have it"),
        Mistake(wrong(box_stem_used="cls"), "the distances come from the box stem: "
                "box_deltas(box_stem(features))"),
        Mistake(wrong(cls_stem_used="box"), "the class logits come from the classification "
                "stem: cls_logits(cls_stem(features))"),
        Mistake(wrong(relu="none"), "the distances go through a ReLU: the conv's output can "
                "be negative, a distance to a side cannot"),
        Mistake(wrong(relu="all"), "only the distances get the ReLU: class and centerness "
                "logits may be negative (a sigmoid reads them later)"),
        Mistake(wrong(sigmoid=True), "return the class LOGITS, not probabilities: the focal "
                "loss and detect apply the sigmoid themselves"),
        Mistake(wrong(order="columns"), "flatten row by row, x fastest: permute the (B, K, H, "
                "W) map to (B, H, W, K), then flatten(1, 2); (B, W, H, K) lists it column by "
                "column"),
        Mistake(wrong(order="reshape"), "reshape alone mixes channels and locations: move the "
                "channels last first, permute(0, 2, 3, 1), then flatten H and W")]
    return Spec("check_head", ARGS,
                "a list [cls_logits (B, H·W, C), box_deltas (B, H·W, 4), centerness (B, H·W)] "
                "of float32 tensors that keep their gradient",
                "each stem reads the features; cls_logits from the classification stem, "
                "ReLU(box_deltas) and centerness from the BOX stem; each map (B, K, H, W) to "
                "(B, H·W, K), row by row", cases, mistakes, head_level_plain)


def check_head(fn: Callable) -> bool:
    """Notebook 04. ``fn(cls_stem, box_stem, cls_logits, box_deltas, centerness, features)``:
    the head's modules (two stems, three final convs) and one pyramid level ``features``
    (B, in_channels, H, W) float32 to ``[cls_logits (B, H·W, C), box_deltas (B, H·W, 4),
    centerness (B, H·W)]``: the class logits from the classification stem, the distances
    through a ReLU and the centerness logits from the box stem, each map flattened row by
    row (x fastest). The gradients with respect to the features must be the library's
    (training learns through this); the features are left as they were."""
    return run_check(head_spec(), fn)


SPECS = {"check_head": head_spec}
