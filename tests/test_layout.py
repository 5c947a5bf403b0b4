"""The shape of the library, checked from its own source so that it stays true.

The floors are described once, in the table of ``docs/design.md``; ``FLOORS`` is read from
it. A module may import from its own floor or below, never from above, and the imports,
those inside functions included, form no cycle. Commands alone parse arguments. Every
module is short, or says at its top why not; every public function is documented; every
docstring example runs.
"""
from __future__ import annotations

import ast
import doctest
import importlib
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fcos_lib"

DESIGN = PACKAGE.parent / "docs" / "design.md"


def read_floors(text: str) -> list[tuple[str, list[str]]]:
    """The floors table of ``docs/design.md``, from the ground up: (floor, its modules), a
    package's name covering its submodules. A row reads ``| 2 pieces | `data/`, `fpn` | ...|``;
    names in parentheses are a package's submodules, listed for the reader."""
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    floors = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0][:1].isdigit():
            continue
        number, name = cells[0].split(" ", 1)
        names = re.findall(r"`([\w.]+)/?`", re.sub(r"\([^)]*\)", "", cells[1]))
        floors.append((int(number), name, names))
    floors.sort()
    assert [n for n, _, _ in floors] == list(range(1, len(floors) + 1)), "floors 1, 2, ..."
    return [(name, names) for _, name, names in floors]


FLOORS = read_floors(DESIGN.read_text())
LONG = "Why this module is longer than 300 lines"
MAX_LINES = 300


def module_files() -> dict[str, Path]:
    """``fcos_lib.x.y`` -> its file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = module_files()


def imported_modules(name: str) -> set[str]:
    """The fcos_lib modules that module ``name`` imports, anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{name} has a relative import (line {node.lineno}): write "
                                 "`from fcos_lib.x import y`, which the floor check can follow")
        if isinstance(node, ast.ImportFrom) and node.module:
            if not node.module.startswith("fcos_lib"):
                continue
            for alias in node.names:  # `from fcos_lib.data import download` names a module
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fcos_lib")}
    return found - {name}


def floor_of(name: str) -> int:
    """The floor of module ``fcos_lib.<...>``, by its first name under fcos_lib."""
    if name == "fcos_lib":
        return -1  # the package's own __init__: a docstring and a version, no imports
    top = name.split(".")[1]
    matches = [i for i, (_, names) in enumerate(FLOORS) if top in names]
    assert len(matches) == 1, f"{name} is on no floor of docs/design.md (or on several): place it there"
    return matches[0]


def test_every_module_has_a_floor():
    for name in MODULES:
        floor_of(name)
    tops = {name.split(".")[1] for name in MODULES if name != "fcos_lib"}
    listed = {n for _, names in FLOORS for n in names}
    assert listed <= tops, f"docs/design.md lists modules that do not exist: {listed - tops}"
    assert len(FLOORS) == 7 and FLOORS[0][1][:2] == ["env", "validate"], FLOORS[:1]


def test_the_floors_table_is_read_as_written():
    table = """## Floors
| floor | modules | what |
|---|---|---|
| 2 upper | `b/` (`x`, `y`), `c` | ... |
| 1 ground | `a` | ... |

## Next
| 3 not a floor | `z` | |
"""
    assert read_floors(table) == [("ground", ["a"]), ("upper", ["b", "c"])]


def test_no_import_runs_up_a_floor():
    upward = [f"{name} (floor {floor_of(name)}) imports {other} (floor {floor_of(other)})"
              for name in MODULES for other in imported_modules(name)
              if floor_of(other) > floor_of(name)]
    assert not upward, "\n".join(upward)


def test_the_imports_have_no_cycle():
    graph = {name: imported_modules(name) & set(MODULES) for name in MODULES}
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layout_check_catches_a_cycle_and_an_upward_import(monkeypatch):
    """The two checks above, fed a graph with the faults they look for."""
    fake = {"fcos_lib.model": {"fcos_lib.train"}, "fcos_lib.train": {"fcos_lib.model"}}
    monkeypatch.setattr(sys.modules[__name__], "imported_modules",
                        lambda name: fake.get(name, set()))
    with pytest.raises(AssertionError, match="imports fcos_lib.train"):
        test_no_import_runs_up_a_floor()
    with pytest.raises(AssertionError, match="import cycle"):
        test_the_imports_have_no_cycle()


def imports_argparse(source: str) -> bool:
    """Whether ``source`` imports argparse (``import argparse`` or ``from argparse import``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "argparse":
            return True
    return False


def test_only_commands_parse_arguments():
    assert imports_argparse("from argparse import ArgumentParser")  # both spellings count
    assert imports_argparse("def f():\n    import argparse")
    parsing = [name for name in MODULES if floor_of(name) != len(FLOORS) - 1
               and imports_argparse(MODULES[name].read_text())]
    assert not parsing, f"argument parsing outside fcos_lib.commands: {parsing}"


def test_modules_are_short_or_say_why():
    long = []
    for name, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and LONG not in doc:
            long.append(f"{name}: {lines} lines")
    assert not long, f"over {MAX_LINES} lines without '{LONG}' at the top: {long}"


def public_definitions(tree: ast.Module):
    """Module-level public functions and classes, and the public methods of public classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                        yield f"{node.name}.{item.name}", item


def test_every_public_function_is_documented():
    missing = [f"{name}.{what}" for name, path in MODULES.items()
               for what, node in public_definitions(ast.parse(path.read_text()))
               if not ast.get_docstring(node)]
    missing += [name for name, path in MODULES.items()
                if not ast.get_docstring(ast.parse(path.read_text()))]
    assert not missing, f"no docstring: {missing}"


@pytest.mark.parametrize("name", [n for n in MODULES if "__main__" not in n])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_fcos_script_and_python_m_reach_every_command(capsys):
    """``fcos`` (pyproject's script) and ``python -m fcos_lib`` both run fcos_lib.commands,
    which lists every command module of the package, and each command answers --help."""
    import re
    import subprocess

    from fcos_lib.commands import COMMANDS

    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()  # (tomllib needs 3.11)
    module, _, attr = re.search(r'^fcos = "([^"]+)"', pyproject, re.M).group(1).partition(":")
    script = getattr(importlib.import_module(module), attr)
    assert script(["--help"]) == 0
    listed = capsys.readouterr().out
    files = {p.stem for p in (PACKAGE / "commands").glob("*.py") if not p.stem.startswith("_")}
    assert set(COMMANDS) == files and all(f"  {name} " in listed for name in COMMANDS)
    ran = subprocess.run([sys.executable, "-m", "fcos_lib", "--help"], capture_output=True,
                         text=True, cwd=PACKAGE.parent)
    assert ran.returncode == 0 and ran.stdout.strip() == listed.strip()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            script([name, "--help"])
        assert exit_.value.code == 0 and f"python -m fcos_lib {name}" in capsys.readouterr().out
