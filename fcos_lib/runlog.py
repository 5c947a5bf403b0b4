"""A run's metrics log, ``<out>/metrics.jsonl``: one JSON object per line.

A training run appends a line per logged step (the mean losses since the last line, the
learning rate, speed and time) and per evaluation (``map50``); every line has ``step``. A
resumed run first cuts the log back to the step of its checkpoint, so that the steps it trains
again are not logged twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["LOG_NAME", "append_record", "read_metrics", "truncate_metrics"]

LOG_NAME = "metrics.jsonl"


def append_record(out: str | Path, record: dict[str, Any]) -> None:
    """Append ``record`` (plain JSON types, with ``step``) as one line of ``<out>/metrics.jsonl``."""
    with open(Path(out) / LOG_NAME, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    """The records of ``<out>/metrics.jsonl``, in order (loss lines and ``map50`` lines)."""
    path = Path(out) / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(out: str | Path, step: int) -> None:
    """Drop the records after ``step`` from ``<out>/metrics.jsonl`` (atomically), if it exists."""
    path = Path(out) / LOG_NAME
    if not path.exists():
        return
    lines = [json.dumps(r) for r in read_metrics(out) if r["step"] <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    tmp.replace(path)
