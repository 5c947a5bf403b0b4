"""Your pieces, written once: a notebook saves the functions you wrote, the next one imports
them (as d2l's ``#@save`` keeps one copy of its code).

Notebook 05 ends with ``save_pieces(assign=assign, focal_loss=focal_loss)``; notebook 06, in
a runtime of its own (on Colab each notebook has one), gets them back with ``load_pieces()``.
The file is ``my_pieces.py`` in :func:`fcos_lib.env.runs_dir` (on Colab, Google Drive, next
to the runs), written whole or not at all. It holds each function's own source, the helper
functions of the notebook that they call, and an import for each module they use, so it
imports on its own:

>>> import tempfile, math
>>> def half_turn():
...     return math.pi
>>> folder = tempfile.mkdtemp()
>>> path = save_pieces(folder=folder, turn=half_turn)
>>> load_pieces(folder)["turn"]()
3.141592653589793
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path

from fcos_lib.env import runs_dir
from fcos_lib.files import write_atomic

__all__ = ["save_pieces", "load_pieces", "FILE_NAME"]

FILE_NAME = "my_pieces.py"
HEADER = '"""Pieces written in the notebooks, saved by fcos_lib.saved.save_pieces."""\n'


def save_pieces(folder: str | Path | None = None, **functions: Callable) -> Path:
    """Write ``functions`` (name -> function) to ``<folder>/my_pieces.py`` (default: the runs
    folder), replacing what an earlier call saved; return the file's path.

    Raises:
        ValueError: a piece that is not a function written with ``def`` (whose source
            Python cannot read back), or no piece at all.
    """
    if not functions:
        raise ValueError("save_pieces() got no function: name each, e.g. save_pieces("
                         "assign=assign, focal_loss=focal_loss)")
    imports: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name, fn in functions.items():
        _collect(name, fn, sources, imports)
    aliases = [f"{name} = {fn.__name__}" for name, fn in functions.items()
               if name != fn.__name__]
    text = "\n".join([HEADER, *sorted(imports.values()), "", "",
                      "\n\n".join(sources.values()), *aliases, ""])
    path = Path(folder) if folder is not None else runs_dir()
    path.mkdir(parents=True, exist_ok=True)
    return write_atomic(path / FILE_NAME, text.encode())


def _collect(name: str, fn: Callable, sources: dict[str, str],
             imports: dict[str, str]) -> None:
    """Add ``fn``'s source to ``sources`` (or an import of it, where it can be imported),
    with the notebook functions it calls (recursively) and an import for each module,
    class or library function it names (parameters and locals are not in its globals)."""
    if not isinstance(fn, types.FunctionType) or fn.__name__ == "<lambda>":
        raise ValueError(f"{name}: {fn!r} is not a function written with def: save_pieces "
                         "keeps the source of functions")
    if fn.__name__ in sources or fn.__name__ in imports:
        return
    if _importable(fn):
        imports[fn.__name__] = f"from {fn.__module__} import {fn.__name__}"
        return
    try:
        sources[fn.__name__] = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError) as err:
        raise ValueError(f"{name}: Python cannot read the source of {fn.__name__} ({err}): "
                         "define it with def in a notebook cell or a file") from None
    for used in sorted(_names(sources[fn.__name__]) & set(fn.__globals__)):
        value = fn.__globals__[used]
        if isinstance(value, types.ModuleType):
            module = value.__name__
            imports[used] = (f"import {module}" if module == used
                             else f"import {module} as {used}")
        elif isinstance(value, types.FunctionType):
            _collect(used, value, sources, imports)
        elif isinstance(value, type | types.BuiltinFunctionType) and _importable(value):
            imports[used] = f"from {value.__module__} import {value.__name__}" + (
                f" as {used}" if used != value.__name__ else "")
        elif _literal(value):                  # a constant of the notebook: STRIDES = (8, 16)
            sources.setdefault(used, f"{used} = {value!r}\n")


def _names(source: str) -> set[str]:
    """Every name the source reads: in its body, defaults, annotations and decorators."""
    return {node.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Name)}


def _literal(value: object) -> bool:
    """Whether ``value`` is a plain constant that its ``repr`` writes back exactly."""
    if value is None or isinstance(value, bool | int | float | str | tuple | list | dict):
        try:
            return ast.literal_eval(repr(value)) == value
        except (ValueError, SyntaxError):
            return False
    return False


def _importable(value: object) -> bool:
    """Whether ``value`` (a function or class) is what ``from its module import its name``
    gives: the library's and other packages', not a notebook's."""
    module = sys.modules.get(getattr(value, "__module__", None) or "")
    return (module is not None and module.__name__ != "__main__"
            and getattr(module, getattr(value, "__name__", ""), None) is value)


def load_pieces(folder: str | Path | None = None) -> dict[str, Callable]:
    """The functions :func:`save_pieces` wrote in ``folder`` (default: the runs folder),
    imported afresh; an empty dict, and a line saying so, when there are none."""
    path = (Path(folder) if folder is not None else runs_dir()) / FILE_NAME
    if not path.exists():
        print(f"no pieces saved yet ({path} does not exist): run the last cell of notebook "
              "05, which saves them, or paste your functions here")
        return {}
    spec = importlib.util.spec_from_file_location("my_pieces", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: value for name, value in vars(module).items()
            if isinstance(value, types.FunctionType) and not name.startswith("_")}
