"""What a check says about a call: did it leave its inputs as they were, is its result the
promised type, dtype and shape, are its values right, and where do they first differ; and how
values print in a report, a line each.

A wrong type is named before any hint about the maths: a float64 tensor where float32 is
promised gets "computed in NumPy?", not "missing the square root?".

>>> import torch
>>> problem(torch.zeros(2, dtype=torch.float64), torch.zeros(2))
('type', 'expected a float32 tensor, got float64: computed in NumPy, or with dtype=float64? .float() converts it')
>>> problem(torch.tensor([1.0, 2.5, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
('value', 'different values: 1 of 3 differ, the first at [1] (expected 2, received 2.5)')
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["problem", "show", "describe", "fresh", "changed", "float_leaves"]

_DTYPE_ADVICE = {
    torch.float64: "computed in NumPy, or with dtype=float64? .float() converts it",
    torch.float16: "half precision loses digits: compute in float32 (.float())",
    torch.int64: "whole numbers where fractions are promised: .float() converts them",
    torch.int32: "int32 is not int64: .long() converts it",
    torch.bool: "a mask, not numbers: .float() or .long() converts it",
}


def describe(value: Any) -> str:
    """A value's kind in a few words: "a float64 tensor of shape (3,)", "a Python list"."""
    if torch.is_tensor(value):
        return f"a {_dtype(value.dtype)} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a NumPy {value.dtype} array of shape {value.shape}"
    if isinstance(value, np.generic):
        return f"a NumPy {type(value).__name__}"
    if value is None:
        return "None (a missing return?)"
    return f"a Python {type(value).__name__}"


def problem(got: Any, expected: Any, atol: float = 1e-4, rtol: float = 1e-4
            ) -> tuple[str, str] | None:
    """None when ``got`` is ``expected``, else ``(kind, why)``: kind ``"type"`` for a wrong
    type, dtype, shape or length (the promise broken), ``"value"`` for wrong numbers."""
    if isinstance(expected, list):
        if not isinstance(got, list):
            return "type", f"expected a list of {len(expected)}, got {describe(got)}"
        if len(got) != len(expected):
            return "type", f"expected a list of {len(expected)}, got one of {len(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            found = problem(g, e, atol, rtol)
            if found:
                return found[0], f"item {i}: {found[1]}"
        return None
    if isinstance(expected, tuple):     # a tuple of Python ints, e.g. a (height, width)
        if not isinstance(got, tuple):
            return "type", f"expected a tuple {expected}, got {describe(got)}"
        if len(got) != len(expected):
            return "type", f"expected a tuple of {len(expected)}, got one of {len(got)}"
        for g in got:
            if not isinstance(g, int) or isinstance(g, bool):
                return "type", (f"expected whole numbers (Python int), got {describe(g)}: "
                                "int(...) or // keep them whole")
        return None if tuple(got) == expected else (
            "value", f"different values: expected {expected}, received {tuple(got)}")
    if torch.is_tensor(expected):
        return _tensor_problem(got, expected, atol, rtol)
    if isinstance(expected, float):
        return _float_problem(got, expected, atol, rtol)
    return None if got == expected else ("value", "different value")


def _tensor_problem(got: Any, expected: torch.Tensor, atol: float, rtol: float
                    ) -> tuple[str, str] | None:
    want = f"a {_dtype(expected.dtype)} tensor"
    if not torch.is_tensor(got):
        if isinstance(got, (float, int)) and expected.dim() == 0:
            return "type", (f"expected {want} (0-d), got {describe(got)}: .item() and float() "
                            "cut the tensor from its gradient; return the tensor itself")
        if isinstance(got, np.ndarray):
            return "type", (f"expected {want}, got {describe(got)}: compute with torch, or "
                            "convert with torch.from_numpy(...)")
        return "type", f"expected {want}, got {describe(got)}"
    if got.layout != torch.strided:
        return "type", f"expected a dense tensor, got a {got.layout} one: .to_dense()"
    if got.dtype != expected.dtype:
        advice = ("indices are whole numbers: make them with dtype=torch.long (an empty "
                  "torch.tensor([]) is float32)" if expected.dtype == torch.int64
                  and got.is_floating_point() else _DTYPE_ADVICE.get(got.dtype, "convert it"))
        return "type", f"expected {want}, got {_dtype(got.dtype)}: {advice}"
    if got.device != expected.device:
        return "type", f"expected a tensor on {expected.device}, got one on {got.device}"
    if tuple(got.shape) != tuple(expected.shape):
        extra = (": return a 0-d tensor (what .sum() gives), not shape (1,)"
                 if expected.dim() == 0 else "")
        return "type", f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}{extra}"
    g, e = got.detach().cpu(), expected.detach().cpu()
    if expected.is_floating_point():
        bad = ~torch.isclose(g.double(), e.double(), rtol=rtol, atol=atol, equal_nan=True)
    else:
        bad = g != e
    if not bad.any():
        return None
    return "value", first_difference(g, e, bad)


def first_difference(got: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor) -> str:
    """"k of n differ, the first at [i, j] (expected a, received b)"."""
    index = tuple(bad.nonzero()[0].tolist())
    if not index:
        return "different value"
    where = ", ".join(map(str, index))
    return (f"different values: {int(bad.sum())} of {bad.numel()} differ, the first at "
            f"[{where}] (expected {_number(expected[index].item())}, received "
            f"{_number(got[index].item())})")


def _float_problem(got: Any, expected: float, atol: float, rtol: float
                   ) -> tuple[str, str] | None:
    if torch.is_tensor(got):
        return "type", (f"expected a Python float, got {describe(got)}: return float(...) "
                        "(or .item())")
    if isinstance(got, np.ndarray):
        return "type", f"expected a Python float, got {describe(got)}: return float(...)"
    if not isinstance(got, float):
        advice = (": wrap it in float(...)" if isinstance(got, (np.generic, int)) else "")
        return "type", f"expected a Python float, got {describe(got)}{advice}"
    if math.isclose(float(got), expected, rel_tol=rtol, abs_tol=atol) or (
            math.isnan(got) and math.isnan(expected)):
        return None
    return "value", "different value"


def show(value: Any, focus: int | None = None, width: int = 240) -> str:
    """``value`` in one line of at most about ``width`` characters: tensors and arrays
    rounded, their shape and dtype beside; a long one shown around flat index ``focus``
    (where it first differs) or from its start."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return show(torch.from_numpy(value.copy()), focus, width) \
            .replace("(shape", "(NumPy, shape")
    if torch.is_tensor(value):
        flat = value.detach().cpu()
        kind = f"shape {tuple(flat.shape)}, {_dtype(flat.dtype)}"
        if flat.numel() <= 16:
            body = _round(flat.tolist()) if flat.dim() else _number(flat.item())
            text = f"{body}  ({kind})"
            if len(text) <= width:
                return text
        start = max(0, (focus or 0) - 4)
        part = flat.flatten()[start:start + 9].tolist()
        where = f"flat values {start}..{start + len(part) - 1}"
        return f"[{'... ' if start else ''}{_round(part)[1:-1]} ...]  ({kind}; {where})"
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (list, tuple)) and any(torch.is_tensor(v) for v in value):
        if any(torch.is_tensor(v) and v.numel() > 16 for v in value):   # shapes say enough
            return "[" + ", ".join(f"a tensor of shape {tuple(v.shape)}, {_dtype(v.dtype)}"
                                   if torch.is_tensor(v) else show(v, None, 40)
                                   for v in value) + "]"
        return "[" + ", ".join(show(v, None, width // max(len(value), 1)) for v in value) + "]"
    text = " ".join(repr(value).split())
    return text if len(text) <= width else text[:width - 5] + " ..."


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _number(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _round(values: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_round(v) for v in values) + "]"
    return _number(values)


def fresh(value: Any) -> Any:
    """A deep copy: tensors cloned (detached), arrays copied, containers rebuilt, so that no
    case shares anything with another or with the student's previous call."""
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(fresh(v) for v in value)
    if isinstance(value, dict):
        return {k: fresh(v) for k, v in value.items()}
    return copy.deepcopy(value)


def float_leaves(args: Any) -> list[torch.Tensor]:
    """The float tensors among ``args`` (nested lists included), in order: the inputs that a
    gradient check differentiates with respect to."""
    if torch.is_tensor(args):
        return [args] if args.is_floating_point() else []
    if isinstance(args, (list, tuple)):
        return [leaf for a in args for leaf in float_leaves(a)]
    return []


def changed(after: Sequence, before: Sequence, names: Sequence[str]) -> str | None:
    """The name of the first argument that differs from its copy taken before the call."""
    for i, (a, b) in enumerate(zip(after, before)):
        if not _equal(a, b):
            return f"`{names[i]}`" if i < len(names) else f"number {i + 1}"
    return None


def _equal(a: Any, b: Any) -> bool:
    if torch.is_tensor(b):
        return (torch.is_tensor(a) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a.detach().nan_to_num(0.5), b.nan_to_num(0.5))))
    if isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and a.shape == b.shape and np.array_equal(
            np.nan_to_num(a, nan=0.5), np.nan_to_num(b, nan=0.5))
    if isinstance(b, (list, tuple)):
        return isinstance(a, type(b)) and len(a) == len(b) and all(map(_equal, a, b))
    if dataclasses.is_dataclass(b):
        return a == b
    return True
