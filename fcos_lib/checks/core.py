"""How a check runs a student's function and says what went wrong.

A check is a :class:`Spec`: the contract (argument names, what the function returns), a list
of :class:`Case` objects (inputs and the library's answer) and known mistakes (small wrong
versions, each with a hint). :func:`run_check` calls the student's function on every case in
order, each time on fresh copies of the inputs, and stops at the first case it gets wrong:

1. it raised: "not done yet" for ``NotImplementedError``, else the error's last line (and the
   function it came from). A stub of another exercise that the function calls does not hide
   this one: the library's version stands in for it (``stand_in``), and the report says so;
2. it changed its inputs in place (tensors, arrays, lists): that is named, with the input;
3. it returned the wrong type, dtype or shape: that is named first, with its own advice;
4. wrong values: the first differing element, and the hint of the known mistake that gives
   the same answer (else the case's hint);
5. for a piece that training differentiates (``Case.grad``), a result cut from the graph or a
   gradient that differs from the library's.

It never raises: a check that prints "all N cases pass" has tried every case.
"""
from __future__ import annotations

import contextlib
import io
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fcos_lib.checks.compare import changed, describe, float_leaves, fresh, problem, show
from fcos_lib.checks.stubs import STUB_MESSAGE, stand_in, stubbed_helper

__all__ = ["Case", "Mistake", "Spec", "run_check", "stand_in", "example", "STUB_MESSAGE"]



@dataclass
class Case:
    """One test of a student's function.

    Args:
        name: what the case is about, e.g. "a point exactly on a box's side".
        args: the inputs, as given to the function (keyword arguments in ``kwargs``).
        expected: the library's answer.
        hint: what to look at when this case fails and no known mistake explains it (the
            check's own hint when empty).
        shown: how to print the inputs in a failure report (default: the inputs themselves).
        grad: also compare the gradients of the result with respect to the float tensor
            inputs against the library's (the check's ``reference``).
    """

    name: str
    args: tuple
    expected: Any
    hint: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, str] | None = None
    grad: bool = False


@dataclass
class Mistake:
    """A mistake students make: a wrong version of the function and what to tell them."""

    fn: Callable
    hint: str


@dataclass
class Spec:
    """Everything a check knows about one exercise.

    Args:
        title: the check's name, e.g. ``"check_centerness"``.
        arg_names: the function's argument names, to label a failure's inputs.
        returns: the promised result in a few words, e.g. "an (N,) float32 tensor".
        hint: the contract in one line: the hint of a case that has none.
        cases: hand-made traps first, then random cases.
        mistakes: known wrong versions, tried on a failing case to name the mistake.
        reference: the library's version with the student's contract, for gradients.
        counts: the result's length depends on the values (NMS keeps K boxes): a wrong length
            is a wrong answer, not a broken promise of shape.
    """

    title: str
    arg_names: Sequence[str]
    returns: str
    hint: str
    cases: list[Case]
    mistakes: list[Mistake] = field(default_factory=list)
    reference: Callable | None = None
    counts: bool = False


def run_check(spec: Spec, fn: Callable) -> bool:
    """Run ``fn`` on every case of ``spec``; print one line when all pass, else the first
    failure, and return whether all passed."""
    stub = None
    for case in spec.cases:
        failure = _try(spec, fn, case)
        if failure == "stub" and stub is None:
            stub = stubbed_helper(fn)
            if stub is not None:
                fn = stub[1]
                failure = _try(spec, fn, case)
        if failure == "stub":
            print(f"{spec.title}: not done yet (your function still raises "
                  "NotImplementedError).")
            return False
        if failure:
            print(failure)
            return False
    if stub is not None:
        print(f"{spec.title}: all {len(spec.cases)} cases pass with the library's {stub[0]} "
              f"standing in for yours, which is not done yet: finish {stub[0]} too.")
        return False
    print(f"{spec.title}: all {len(spec.cases)} cases pass.")
    return True


def _try(spec: Spec, fn: Callable, case: Case) -> str | None:
    """None when ``fn`` gets ``case`` right, "stub" when it is not written yet, else the
    report of what went wrong."""
    args, kwargs = fresh(case.args), fresh(case.kwargs)
    pristine = fresh(case.args)
    leaves = float_leaves(args) if case.grad else []
    for leaf in leaves:
        leaf.requires_grad_(True)
    try:
        got = fn(*args, **kwargs)
    except NotImplementedError:
        return "stub"
    except Exception as error:  # a student's bug: report it, never a traceback
        where, text = _where(error, fn), " ".join(str(error).split())
        text = text if len(text) <= 160 else text[:155] + " ..."
        if isinstance(error, RuntimeError) and "in-place operation" in text:
            return _report(spec, case, None, "it changed an input in place (a leaf tensor "
                           "that needs its gradient)", _IN_PLACE)
        hint = _NO_GRAD if "requires grad" in text or "require grad" in text else (
            case.hint or spec.hint)
        return _report(spec, case, None, f"raised {type(error).__name__}{where}: {text}", hint)
    try:
        return _judge(spec, fn, case, got, args, pristine, leaves)
    except Exception as error:   # an odd result our comparison cannot even handle
        return _report(spec, case, None, f"cannot read your result ({describe(got)}: "
                       f"{type(error).__name__})", f"the result must be {spec.returns}")


def _judge(spec: Spec, fn: Callable, case: Case, got: Any, args: tuple, pristine: tuple,
           leaves: list[torch.Tensor]) -> str | None:
    """The report of what is wrong with a call that returned ``got``, or None."""
    edited = changed(args, pristine, spec.arg_names)
    if edited:
        return _report(spec, case, got, f"your function changed its input {edited} in "
                       "place", _IN_PLACE)
    found = _problem(got, case.expected)
    if found and spec.counts and found[1].startswith("shape ("):
        found = "value", (f"{len(got)} elements, expected {len(case.expected)}: a different "
                          "number of boxes kept")
    if found:
        kind, why = found
        hint = _diagnose(fn, case, got, spec) or (
            f"the result must be {spec.returns}" if kind == "type" else case.hint or spec.hint)
        return _report(spec, case, got, why, hint)
    if case.grad:
        why = _gradient_problem(spec, case, got, leaves)
        if why:
            return _report(spec, case, got, why, _NO_GRAD)
    return None


_IN_PLACE = ("work on copies and leave the inputs as they were: x = x - 1, not x -= 1; "
             "x = x.clone() (tensors), x.copy() (NumPy arrays), list(x) (lists) before editing")
_NO_GRAD = ("keep every step in torch, on tensors: .item(), float(), .detach(), .numpy(), "
            "torch.tensor(...) and in-place writes cut the gradient, and training then learns "
            "nothing from this piece")


def _problem(got: Any, expected: Any) -> tuple[str, str] | None:
    try:
        return problem(got, expected)
    except Exception as error:   # an odd object that cannot even be compared
        return "type", f"cannot compare {describe(got)} with the answer ({error})"


def _gradient_problem(spec: Spec, case: Case, got: Any, leaves: list[torch.Tensor]
                      ) -> str | None:
    outputs = [o for o in (got if isinstance(got, (list, tuple)) else [got])]
    if not any(torch.is_tensor(o) and o.requires_grad for o in outputs):
        return ("the values are right, but the result carries no gradient "
                "(requires_grad is False)")
    mine = _gradients(outputs, leaves)
    ref_args = fresh(case.args)
    ref_leaves = float_leaves(ref_args)
    for leaf in ref_leaves:
        leaf.requires_grad_(True)
    theirs = _gradients(spec.reference(*ref_args, **fresh(case.kwargs)), ref_leaves)
    for i, (g, e) in enumerate(zip(mine, theirs)):
        if g is None and e is not None and e.abs().sum() > 0:
            return f"the values are right, but no gradient reaches input {i + 1}"
        found = problem(g if g is not None else torch.zeros_like(e), e)
        if found:
            return f"the values are right, but the gradient of input {i + 1} is not: {found[1]}"
    return None


def _gradients(outputs: Any, leaves: list[torch.Tensor]) -> list[torch.Tensor | None]:
    """d(sum of each output times fixed weights)/d(leaves)."""
    outputs = [o for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
               if torch.is_tensor(o) and o.requires_grad]
    gen = torch.Generator().manual_seed(0)
    total = sum((o * (torch.rand(o.shape, generator=gen) + 0.5).to(o)).sum() for o in outputs)
    return list(torch.autograd.grad(total, leaves, allow_unused=True))


def _where(error: Exception, fn: Callable) -> str:
    """" in box_iou" when the error came from another function than ``fn``."""
    frames = traceback.extract_tb(error.__traceback__)
    code = getattr(fn, "__code__", None)
    mine = [f for f in frames if code is not None and f.filename == code.co_filename]
    if mine and mine[-1].name != getattr(fn, "__name__", None):
        return f" in {mine[-1].name}"
    return ""


def _diagnose(fn: Callable, failed: Case, got: Any, spec: Spec) -> str | None:
    """The hint of the known mistake that explains the student's answers: the same wrong
    answer on the failing case and on every other case the student gets wrong, and of those
    the one that agrees with the student most often. The student's function runs silenced
    here: its prints showed once already."""
    answers = [_call(fn, case) for case in spec.cases]
    best, best_score = None, -1
    for mistake in spec.mistakes:
        theirs = _call(mistake.fn, failed)
        if theirs is None or _problem(got, theirs) is not None:
            continue
        same = [a is not None and _problem(a, _call(mistake.fn, c)) is None
                for a, c in zip(answers, spec.cases)]
        explains = all(ok for ok, a, c in zip(same, answers, spec.cases)
                       if a is not None and _problem(a, c.expected) is not None)
        if explains and sum(same) > best_score:
            best, best_score = mistake.hint, sum(same)
    return best


def _call(fn: Callable, case: Case) -> Any:
    """``fn`` on fresh copies of a case's inputs, printing nothing, or None when it raises."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*fresh(case.args), **fresh(case.kwargs))
    except Exception:
        return None


def _report(spec: Spec, case: Case, got: Any, why: str, hint: str) -> str:
    """The failing case: its inputs, what was expected and received, why, and the hint."""
    focus = _first_flat(got, case.expected)
    lines = [f"{spec.title}: FAILED on {case.name}"]
    lines += [f"  {name:<13} = {text}" for name, text in _inputs(case, spec.arg_names)]
    lines.append(f"  {'expected':<13} = {show(case.expected, focus)}")
    lines.append(f"  {'received':<13} = {show(got, focus) if got is not None else '-'}")
    lines.append(f"  problem: {why}")
    if hint:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def _first_flat(got: Any, expected: Any) -> int | None:
    """The flat index where two tensors of one shape first differ, to show them there."""
    if not (torch.is_tensor(got) and torch.is_tensor(expected)) or got.shape != expected.shape:
        return None
    bad = (got.detach().cpu().double() - expected.detach().cpu().double()).abs().flatten()
    bad = ~(bad <= 1e-4 + 1e-4 * expected.detach().cpu().double().abs().flatten())
    return int(bad.nonzero()[0]) if bad.any() else None


def _inputs(case: Case, arg_names: Sequence[str], width: int = 240) -> list[tuple[str, str]]:
    """(name, text) of each input of a case, as a report shows them."""
    if case.shown is not None:
        return list(case.shown.items())
    names = list(arg_names) + [f"input {i + 1}" for i in range(len(arg_names), len(case.args))]
    return [(n, show(v, width=width)) for n, v in
            list(zip(names, case.args)) + list(case.kwargs.items())]


def example(spec: Spec, index: int = 0) -> list[str]:
    """A worked example for the student copies: case ``index``'s inputs and the answer."""
    case = spec.cases[index]
    inputs = _inputs(case, spec.arg_names, 90)
    pad = max(len(name) for name, _ in inputs + [("returns", "")])
    lines = [f"Example ({case.name}):"]
    lines += [f"  {name:<{pad}} = {text}" for name, text in inputs]
    lines.append(f"  {'returns':<{pad}}   {show(case.expected, width=90)}")
    return lines
