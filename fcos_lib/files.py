"""Writing files so that a crash or a full disk never leaves half of one.

Every file the library writes whole (checkpoints, the image cache, figures, JSON) goes
through :func:`atomic_file`: a temporary file beside the target, named with the writer's
process id, renamed into place when complete and removed when the write fails.
:func:`remove_leftovers` removes what a killed writer left (its process is gone).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "write_atomic", "process_alive", "remove_leftovers"]


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: readers see the old file or the new one,
    never a part. On an error the temporary file is removed and the error raised (an
    ``OSError`` names ``path``, not the temporary file).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with atomic_file(folder / "a.bin") as f:
    ...     _ = f.write(b"hello")
    >>> sorted(p.name for p in folder.iterdir()), (folder / "a.bin").read_bytes()
    (['a.bin'], b'hello')
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno is None:
            raise
        raise type(err)(err.errno, err.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` with :func:`atomic_file`."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (on this machine): whether its temporary files are still
    being written, or are leftovers of a process that was killed.

    >>> process_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:          # it exists, but belongs to someone else
        return True
    return True


def remove_leftovers(folder: str | os.PathLike, pattern: str = ".*.*.tmp"
                     ) -> list[tuple[Path, int]]:
    """Remove the temporary files or folders matching ``pattern`` in ``folder`` whose name
    ends in ``.<pid>.<suffix>`` and whose process is gone (killed mid-write); those of
    running processes stay. Returns each removed path with its size in bytes."""
    removed = []
    for tmp in Path(folder).glob(pattern):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and not process_alive(int(pid)):
            files = [tmp] if tmp.is_file() else [f for f in tmp.rglob("*") if f.is_file()]
            size = sum(f.stat().st_size for f in files)
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            removed.append((tmp, size))
    return removed
