"""Writing files so that a crash or a full disk never leaves half of one.

Every file the library writes whole (checkpoints, the image cache, figures, JSON) goes
through :func:`atomic_file`: a temporary file beside the target, named with the writer's
process id, renamed into place when complete and removed when the write fails.
:func:`remove_leftovers` removes what a killed writer left (its process is gone).
:func:`folder_lock` keeps a second process out of a folder one is writing (a run, a download).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "write_atomic", "process_alive", "remove_leftovers", "folder_lock",
           "FolderBusyError", "LOCK_NAME"]

try:                     # Linux and macOS; Windows has no flock and gets O_EXCL alone
    import fcntl
except ImportError:      # pragma: no cover (Windows)
    fcntl = None

LOCK_NAME = ".fcos.lock"


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
    if os.name == "nt":   # there os.kill(pid, 0) would end the process: ask Windows instead
        import ctypes
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle = kernel32.OpenProcess(0x1000, False, pid)   # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return ctypes.get_last_error() == 5             # access denied: it exists
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259                            # STILL_ACTIVE
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


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock (:func:`folder_lock`); the message names it."""


_HELD: dict[str, int] = {}     # the locks this process holds (real path -> depth)


def _holder(path: Path) -> dict:
    """What a lock file says of its holder (``pid``, ``host``, ``since``); {} if unreadable,
    or empty because its holder is writing it right now (then a moment later it says)."""
    for _ in range(20):
        try:
            found = json.loads(path.read_text() or "null")
        except (OSError, ValueError):
            found = None
        if isinstance(found, dict) and isinstance(found.get("pid"), int):
            return found
        time.sleep(0.01)
    return {}


def _busy(folder: Path, path: Path, holder: dict, gone: bool = False) -> FolderBusyError:
    """The one-line refusal: whose the folder is, and what to do."""
    who = (f"process {holder['pid']} on {holder.get('host', '?')} (since "
           f"{holder.get('since', '?')})" if holder else "another process")
    if gone:
        return FolderBusyError(f"{folder} is locked by {who}, another machine: if that run "
                               f"has ended, delete {path} and run again")
    return FolderBusyError(f"{folder} is in use by {who}: wait for it to finish, or choose "
                           f"another folder (if no such process runs, delete {path})")


def _claim(folder: Path, path: Path, fd: int, holder: dict) -> None:
    """Write our name into the lock we now hold; say so if we took it from a dead process."""
    if holder:    # (flock was free: a live process of that number is another, or let go)
        print(f"{folder}: took over the lock of process {holder['pid']} on "
              f"{holder.get('host')}, which is no longer "
              f"{'holding it' if process_alive(holder['pid']) else 'running'}")
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
    os.fsync(fd)


def _stale(holder: dict) -> bool | None:
    """Whether the holder is gone: True or False on this machine, None on another one."""
    if holder.get("host") != socket.gethostname():
        return None
    return not process_alive(holder["pid"])


def _lock(folder: Path, path: Path) -> int:
    """Take ``path`` for this process: flock where the system has it (the kernel lets go
    when a process dies), else create it with O_EXCL; returns the open descriptor."""
    use_flock = fcntl is not None
    for _ in range(50):
        if use_flock:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(folder, path, _holder(path)) from None
            except OSError:      # a file system without flock: O_EXCL alone, as on Windows
                empty = not os.fstat(fd).st_size
                os.close(fd)
                if empty:        # (the one just made, not a holder's)
                    path.unlink(missing_ok=True)
                use_flock = False
                continue
            try:                 # the holder before us may have removed it meanwhile
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            holder = _holder(path) if same and os.fstat(fd).st_size else {}
            if not same or (holder and _stale(holder) is None):
                os.close(fd)     # flock may not reach another machine: its word stands
                if not same:
                    continue
                raise _busy(folder, path, holder, gone=True)
            if holder.get("pid") == os.getpid():
                holder = {}
            _claim(folder, path, fd, holder)       # a holder here is gone: flock says so
            return fd
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not holder or not _stale(holder):
                raise _busy(folder, path, holder,
                            gone=bool(holder) and _stale(holder) is None) from None
            aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
            try:                 # one process wins the stale file; the others try again
                os.replace(path, aside)
            except FileNotFoundError:
                continue
            if _holder(aside) != holder:   # a new holder's, not the one judged: put it back
                os.replace(aside, path)
                raise _busy(folder, path, _holder(path)) from None
            aside.unlink(missing_ok=True)
            print(f"{folder}: took over the lock of process {holder['pid']} on "
                  f"{holder.get('host')}, which is no longer running")
            continue
        _claim(folder, path, fd, {})
        return fd
    raise _busy(folder, path, _holder(path))


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` (created if needed) for this process: a second process that asks for
    it gets :class:`FolderBusyError` naming the holder's pid and host, until this one lets
    go or dies. A lock left by a dead process on this machine is taken over, in a printed
    line. The lock is ``<folder>/.fcos.lock``, holding the pid, host and start time; it is
    removed on leaving (and the folder too if this made it and it stayed empty). The same
    process may nest it (a command, then the library).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> with folder_lock(folder) as lock:
    ...     json.loads(lock.read_text())["pid"] == os.getpid()
    True
    >>> list(folder.iterdir())
    []
    """
    folder = Path(folder)
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    fd = _lock(folder, path)
    _HELD[key] = 1
    try:
        yield path
    finally:
        del _HELD[key]
        if fcntl is None:                  # Windows removes no file that is open
            os.close(fd)
        try:
            path.unlink(missing_ok=True)   # while held: a waiter sees a new file, retries
        finally:
            if fcntl is not None:
                os.close(fd)
        if made and not any(folder.iterdir()):     # made for nothing (a run refused at once)
            folder.rmdir()
