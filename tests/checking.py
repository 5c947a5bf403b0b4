"""What the tests of the checks ask of every failing report: shared by test_checks and
test_new_checks."""
from __future__ import annotations

from fcos_lib import checks


def failed(check, fn, capsys, lines: int = 12) -> str:
    """The report of a check that must fail; it must also be short (the whole-piece checks
    show more inputs: ``lines``) and free of tracebacks."""
    assert check(fn) is False
    out = capsys.readouterr().out
    assert " FAILED on " in out or "not done yet" in out, out
    assert "Traceback" not in out
    assert len(out.splitlines()) <= lines and max(map(len, out.splitlines())) <= 400, out
    return out


def type_named_before_maths(name: str, wrong, words: str, capsys, lines: int = 12) -> None:
    """Check ``name`` fails ``wrong`` naming the broken promise (``words`` and the check's
    ``returns``), and no hint about the maths."""
    out = failed(getattr(checks, name), wrong, capsys, lines)
    assert words in out, out
    spec = checks.SPECS[name]()
    assert "the result must be " + spec.returns in out
    maths = {c.hint for c in spec.cases if c.hint} | {spec.hint} | {m.hint for m in spec.mistakes}
    assert not any(h in out for h in maths), out
