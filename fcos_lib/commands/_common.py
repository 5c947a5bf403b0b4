"""What the commands share: printing an error, and argument types that check their values."""
from __future__ import annotations

import argparse
import sys

__all__ = ["error", "positive_int"]


def error(message: object, status: int = 2) -> int:
    """Print ``error: message`` on stderr; return ``status`` for the command to exit with."""
    print(f"error: {message}", file=sys.stderr)
    return status


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return value
