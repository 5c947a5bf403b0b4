"""A stub of one exercise must not hide the check of another: when the function under check
calls a student's function that is still a stub (it raises the student copies'
``NotImplementedError``), the check runs it with the library's version in the stub's place.

The library registers its stand-ins by the names the notebooks give the exercises
(``stand_in("box_iou", torchvision.ops.box_iou)``); the student's own function is never
touched: the check calls a copy of the function under check whose globals differ.
"""
from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

__all__ = ["STUB_MESSAGE", "stand_in", "stubbed_helper"]

STUB_MESSAGE = "your turn: write this function, then run the check"
_STAND_INS: dict[str, Callable] = {}


def stand_in(name: str, fn: Callable) -> None:
    """Register the library's ``fn`` to stand in for a student's stub called ``name``."""
    _STAND_INS[name] = fn


def stubbed_helper(fn: Callable) -> tuple[str, Callable] | None:
    """When ``fn`` raises NotImplementedError from another function of the student's (a
    stub of another exercise) that the library can stand in for: its name and ``fn`` with
    the library's version in its place."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    for name, value in getattr(fn, "__globals__", {}).items():
        if name in _STAND_INS and name in _names(code) and _raises_stub(value):
            patched = dict(fn.__globals__, **{name: _STAND_INS[name]})
            new = types.FunctionType(code, patched, fn.__name__, fn.__defaults__,
                                     fn.__closure__)
            new.__kwdefaults__ = fn.__kwdefaults__
            return name, new
    return None


def _names(code: types.CodeType) -> set[str]:
    """The global names a function's code uses, its nested functions' included."""
    inner = [c for c in code.co_consts if isinstance(c, types.CodeType)]
    return set(code.co_names).union(*map(_names, inner))


def _raises_stub(value: Any) -> bool:
    source = getattr(getattr(value, "__code__", None), "co_consts", ())
    return STUB_MESSAGE in source
