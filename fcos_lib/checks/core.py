"""How a check runs a student's function and says what went wrong.

A check is a list of :class:`Case` objects (inputs and the library's answer) and a list of
known mistakes (small wrong versions of the function, each with a hint). :func:`run_check`
calls the student's function on every case in order and stops at the first wrong answer; it
then prints that case, small and readable, what was expected and what came back, and the hint
of the known mistake that gives the same wrong answer, or the case's own hint when none does.
It never raises: a function that still raises ``NotImplementedError`` gets a "not done yet"
line, one that crashes gets the error's last line.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["Case", "Mistake", "run_check", "same"]


@dataclass
class Case:
    """One test of a student's function.

    Args:
        name: what the case is about, e.g. "a point exactly on a box's side".
        args: the inputs, as given to the function (keyword arguments in ``kwargs``).
        expected: the library's answer.
        hint: what to look at when this case fails and no known mistake explains it.
        shown: how to print the inputs in a failure report (default: the inputs themselves).
    """

    name: str
    args: tuple
    expected: Any
    hint: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, str] | None = None


@dataclass
class Mistake:
    """A mistake students make: a wrong version of the function and what to tell them."""

    fn: Callable
    hint: str


def same(got: Any, expected: Any, atol: float = 1e-4, rtol: float = 1e-4) -> str | None:
    """None when ``got`` equals ``expected`` (numbers to the tolerances, tensors in shape
    and dtype kind too), else why not, in a few words."""
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"expected a list of {len(expected)}, got {_describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            why = same(g, e, atol, rtol)
            if why:
                return f"item {i}: {why}"
        return None
    if torch.is_tensor(expected):
        if not torch.is_tensor(got):
            return f"expected a tensor, got {_describe(got)}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
        if expected.dtype == torch.bool or not expected.is_floating_point():
            if got.is_floating_point() and expected.dtype != torch.bool:
                return f"dtype {got.dtype}: expected whole numbers ({expected.dtype})"
            return None if torch.equal(got.to(expected.dtype), expected) else "different values"
        close = torch.allclose(got.detach().double().cpu(), expected.double().cpu(), atol=atol,
                               rtol=rtol, equal_nan=True)
        return None if close else "different values"
    if isinstance(expected, float):
        if not isinstance(got, (int, float, np.floating, np.integer)) and not (
                torch.is_tensor(got) and got.numel() == 1):
            return f"expected a number, got {_describe(got)}"
        value = float(got)
        return None if math.isclose(value, expected, rel_tol=rtol, abs_tol=atol) else \
            "different value"
    return None if got == expected else "different value"


def run_check(title: str, fn: Callable, cases: Sequence[Case], mistakes: Sequence[Mistake] = (),
              compare: Callable[[Any, Any], str | None] = same,
              arg_names: Sequence[str] = ()) -> bool:
    """Run ``fn`` on every case; print one line when all pass, else the first failure.

    Args:
        title: the check's name, e.g. ``"check_centerness"``.
        fn: the student's function.
        cases: hand-made traps first, then random cases.
        mistakes: known wrong versions, tried on a failing case to name the mistake.
        compare: ``compare(got, expected)``, None when right, else why not.
        arg_names: the names of the function's arguments, to label the inputs of a failure.

    Returns:
        True when every case passed.
    """
    for case in cases:
        try:
            got = fn(*_copies(case.args), **case.kwargs)
        except NotImplementedError:
            print(f"{title}: not done yet (your function still raises NotImplementedError).")
            return False
        except Exception as error:  # a student's bug: report it, never a traceback
            _report(title, case, None, f"raised {type(error).__name__}: {error}", case.hint,
                    arg_names)
            return False
        why = compare(got, case.expected)
        if why:
            hint = _diagnose(fn, case, got, cases, mistakes, compare) or case.hint
            _report(title, case, got, why, hint, arg_names)
            return False
    print(f"{title}: all {len(cases)} cases pass.")
    return True


def _diagnose(fn: Callable, failed: Case, got: Any, cases: Sequence[Case],
              mistakes: Sequence[Mistake], compare: Callable[[Any, Any], str | None]
              ) -> str | None:
    """The hint of the known mistake that explains ``got`` on the failing case and agrees
    with the student's function on the most cases (two mistakes can agree on one case)."""
    answers = [_call(fn, case) for case in cases]
    best, best_score = None, -1
    for mistake in mistakes:
        wrong = _call(mistake.fn, failed)
        if wrong is None or compare(got, wrong) is not None:
            continue
        score = sum(answer is not None and compare(answer, _call(mistake.fn, case)) is None
                    for answer, case in zip(answers, cases))
        if score > best_score:
            best, best_score = mistake.hint, score
    return best


def _call(fn: Callable, case: Case) -> Any:
    """``fn`` on a case, or None when it raises."""
    try:
        return fn(*_copies(case.args), **case.kwargs)
    except Exception:
        return None


def _report(title: str, case: Case, got: Any, why: str, hint: str,
            arg_names: Sequence[str]) -> None:
    """Print the failing case: its inputs, what was expected and received, and the hint."""
    lines = [f"{title}: FAILED on {case.name}"]
    for name, value in _named_args(case, arg_names):
        lines.append(f"  {name:<13} = {_show(value)}")
    lines.append(f"  {'expected':<13} = {_show(case.expected)}")
    lines.append(f"  {'received':<13} = {_show(got) if got is not None else '-'}  ({why})")
    if hint:
        lines.append(f"  hint: {hint}")
    print("\n".join(lines))


def _named_args(case: Case, arg_names: Sequence[str]) -> list[tuple[str, Any]]:
    if case.shown is not None:
        return [(name, _Shown(text)) for name, text in case.shown.items()]
    names = list(arg_names) + [f"input {i + 1}" for i in range(len(arg_names), len(case.args))]
    named = list(zip(names, case.args))
    return named + list(case.kwargs.items())


def _copies(args: tuple) -> tuple:
    """The arguments, tensors cloned: a function that edits its input in place must not
    change the case for the next call."""
    return tuple(a.clone() if torch.is_tensor(a) else a for a in args)


class _Shown(str):
    """Text to print as it is."""


def _show(value: Any) -> str:
    """A value in a line or a few: tensors rounded, long ones cut."""
    if isinstance(value, _Shown):
        return str(value)
    if torch.is_tensor(value):
        flat = value.detach().cpu()
        if flat.numel() > 24:
            return f"tensor of shape {tuple(flat.shape)}, first values {_round(flat.flatten()[:8])}"
        body = _round(flat) if flat.dim() else _round(flat.reshape(1))[1:-1]
        return f"{body}  (shape {tuple(flat.shape)}, {str(flat.dtype).replace('torch.', '')})"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)) and any(torch.is_tensor(v) for v in value):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _round(t: torch.Tensor) -> str:
    values = t.tolist()

    def fmt(v):
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return fmt(values)


def _describe(value: Any) -> str:
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {value!r}"[:80]
