"""A run's metrics log, ``<out>/metrics.jsonl``: one JSON object per line.

A training run appends a line per logged step (the mean losses since the last line, the
learning rate, speed and time) and per evaluation (``map50``); every line has ``step``. A
resumed run first cuts the log back to the step of its checkpoint, so that the steps it trains
again are not logged twice. A line cut off by a crash or a full disk is skipped when read,
with a word on stderr, and the next record starts on a line of its own.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fcos_lib.files import write_atomic

__all__ = ["LOG_NAME", "append_record", "read_metrics", "truncate_metrics"]

LOG_NAME = "metrics.jsonl"


def append_record(out: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` (plain JSON types, with ``step``) as one line of ``<out>/metrics.jsonl``
    (after a line break, if a crash left the last line without one)."""
    with open(Path(out) / LOG_NAME, "a+b") as f:
        if f.seek(0, 2) and (f.seek(-1, 2), f.read(1))[1] != b"\n":
            f.write(b"\n")
        f.write((json.dumps(record) + "\n").encode())


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``<out>/metrics.jsonl``, in order (loss lines and ``map50`` lines); lines
    that are not a whole record (cut off by a crash) are skipped, and said so on stderr."""
    path = Path(out) / LOG_NAME
    records, broken = [], []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
        else:
            broken.append(number)
    if broken:
        print(f"{path}: skipped {len(broken)} damaged line(s) (line {', '.join(map(str, broken))}"
              "; cut off by a crash or a full disk?)", file=sys.stderr)
    return records


def truncate_metrics(out: str | Path, step: int) -> None:
    """Drop the records after ``step`` from ``<out>/metrics.jsonl`` (atomically), if it exists."""
    path = Path(out) / LOG_NAME
    if not path.exists():
        return
    lines = [json.dumps(r) for r in read_metrics(out) if r["step"] <= step]
    write_atomic(path, "".join(line + "\n" for line in lines))
