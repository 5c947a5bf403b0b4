"""Download PASCAL VOC 2007 safely: mirrors, resume, MD5, atomic rename, safe extraction.

``download_voc2007("data")`` leaves the images in ``data/VOCdevkit/VOC2007``. What can go
wrong, and what happens then:

- a mirror is down: the next one is tried; when all fail, the error lists why and says which
  file to place in which folder by hand;
- a mirror takes the connection and never answers: each try says which mirror it waits on
  and for how long (``TIMEOUT``, 15 s), and a mirror that stays silent is not asked again;
- the connection drops: the bytes so far stay in ``<archive>.part`` and the next call resumes
  them with an HTTP Range request (while a download runs they are in ``<archive>.<pid>.part``,
  its own; a killed download's is taken up by the next) (a server that ignores Range sends the whole file again,
  and the part file restarts from zero);
- the archive is corrupt: its MD5 differs from the published one, the part file is deleted;
- the archive is hostile (absolute paths, ``..``, links out of the folder): it is refused,
  and nothing reaches the data folder.

Two downloads into one folder never mix their bytes: the folder is locked
(:func:`fcos_lib.files.folder_lock`), and the second one stops, naming the first.
Nothing ever sits half-written under a final name: the archive is renamed from ``.part`` only
after its MD5 matches, and it is extracted into a temporary folder next to the destination,
moved into place only when complete. Command line: :mod:`fcos_lib.commands.download`.

Why this module is longer than 300 lines: each of the failures above is handled here, next to
the step it guards, so that one file shows everything a download can do to a data folder.
"""
from __future__ import annotations

import errno
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from fcos_lib.files import FolderBusyError, folder_lock, process_alive, remove_leftovers

CHUNK = 1 << 20  # bytes per read while downloading and hashing
ATTEMPTS_PER_MIRROR = 3   # for a connection that drops (each try resumes); a silent mirror: one
TIMEOUT = 15.0   # seconds to wait for a connection, an answer, or the next bytes


@dataclass(frozen=True)
class Archive:
    """A published archive: its file name, MD5 and the URLs it can be fetched from."""

    filename: str
    md5: str
    urls: tuple[str, ...]
    size_text: str


# MD5s as published with VOC 2007 (and listed in torchvision.datasets.VOCDetection).
VOC2007_TRAINVAL = Archive(
    "VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64",
    ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
     "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
     "https://pjreddie.com/media/files/VOCtrainval_06-Nov-2007.tar"),
    "460 MB")
VOC2007_TEST = Archive(
    "VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f",
    ("http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
     "https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
     "https://pjreddie.com/media/files/VOCtest_06-Nov-2007.tar"),
    "451 MB")
TREE = PurePosixPath("VOCdevkit", "VOC2007")  # where the archives put the images


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; the message says what to do."""


class _RefusedError(DownloadError):
    """The server answered with an HTTP error: asking it again will not help."""


def download_voc2007(root: str | os.PathLike = "data", *, test: bool = False,
                     url: str | None = None, md5: str | None = None,
                     progress: bool = True, timeout: float = TIMEOUT) -> Path:
    """Fetch, verify and extract VOC 2007 trainval (and test with ``test=True``) into ``root``.

    Already extracted archives are skipped; an archive already in ``root`` (placed by hand,
    or from an earlier run) is verified and extracted without downloading.

    Args:
        root: the data folder; the images end in ``<root>/VOCdevkit/VOC2007``.
        test: also fetch the test archive.
        url: try only this URL (a mirror of your own, or a test server) for the trainval
            archive instead of the built-in mirrors.
        md5: expected MD5 of that archive (default: the published one).
        progress: show a tqdm bar.
        timeout: seconds to wait for a connection, an answer or the next bytes before a
            mirror counts as silent (it is not asked again) or the connection as dropped.

    Returns:
        ``<root>/VOCdevkit/VOC2007``.

    Raises:
        DownloadError: with what went wrong and what to do, also for a ``url`` that is not
            http(s) or an ``md5`` that is not 32 hex digits (checked before any download).
    """
    if url is not None and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"url {url!r} is not an http:// or https:// address: give the "
                            "full address of the archive, e.g. https://host/VOCtrainval.tar")
    if not (isinstance(timeout, (int, float)) and 0 < timeout < float("inf")):
        raise DownloadError(f"timeout {timeout!r}: give a number of seconds above 0, e.g. 15")
    if md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", md5):
        raise DownloadError(f"md5 {md5!r} is not an MD5 checksum: give its 32 hex digits, "
                            "or leave it out to check the published one")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    trainval = VOC2007_TRAINVAL
    if url is not None or md5 is not None:
        trainval = Archive(trainval.filename, (md5 or trainval.md5).lower(),
                           (url,) if url else trainval.urls, trainval.size_text)
    try:
        with folder_lock(root):
            for archive in (trainval, VOC2007_TEST) if test else (trainval,):
                if marker(root, archive).is_file():
                    continue
                path = fetch(archive, root, progress=progress, timeout=timeout)
                extract(path, root, archive)
    except FolderBusyError as err:
        raise DownloadError(f"{err} (another download into the same --root)") from None
    return root / TREE


def marker(root: str | os.PathLike, archive: Archive) -> Path:
    """An empty file written after an archive's tree is complete."""
    return Path(root) / TREE / f".extracted-{archive.filename}"


def fetch(archive: Archive, root: Path, progress: bool = True, timeout: float = TIMEOUT
          ) -> Path:
    """``<root>/<archive.filename>``, downloaded if needed, its MD5 verified.

    Raises:
        DownloadError: no mirror gave the right bytes, or a file in place has the wrong MD5.
    """
    final = root / archive.filename
    if final.is_file():
        if md5sum(final, progress) != archive.md5:
            raise DownloadError(
                f"{final} is there but its MD5 is not the published {archive.md5}: it is "
                f"incomplete or a different file. Delete it and run the download again.")
        return final
    kept = final.with_name(final.name + ".part")      # the bytes so far, between runs
    part = _claim_part(final, kept)
    failures = []
    try:
        for url in archive.urls:
            host = urllib.parse.urlsplit(url).netloc
            for attempt in range(1, ATTEMPTS_PER_MIRROR + 1):
                again = f" (try {attempt})" if attempt > 1 else ""
                print(f"{archive.filename}: asking {host}{again}; waiting up to {timeout:g} s "
                      "for an answer", file=sys.stderr, flush=True)
                before = part.stat().st_size if part.is_file() else 0
                try:
                    _download(url, part, progress, timeout)
                except _RefusedError as err:
                    failures.append(f"{url}: {err}")
                    break
                except OSError as err:
                    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS,
                                     errno.EPERM):   # no other mirror helps: the disk is it
                        raise DownloadError(_cannot_write(err, kept, root, archive)) from None
                    now = part.stat().st_size if part.is_file() else 0
                    if _timed_out(err) and now == before:
                        failures.append(f"{url}: no answer within {timeout:g} s")
                        break     # silent: asking it again would only wait as long again
                    failures.append(f"{url}: {err}")
                    continue
                except (http.client.HTTPException, DownloadError) as err:
                    # A dropped connection keeps the part file: the next attempt resumes it.
                    failures.append(f"{url}: {err}")
                    continue
                if md5sum(part, progress) == archive.md5:
                    os.replace(part, final)
                    return final
                part.unlink()
                failures.append(f"{url}: the downloaded file's MD5 is not {archive.md5} "
                                "(the part file was deleted)")
                break  # this mirror sends other bytes: try the next one
    finally:
        if part.is_file():        # kept under the name the next run looks for
            os.replace(part, kept)
    reasons = "\n  ".join(failures)
    kept = (f"\nThe bytes received so far are kept in {kept}; running the download again "
            f"resumes them." if kept.is_file() else "")
    raise DownloadError(
        f"could not download {archive.filename} ({archive.size_text}):\n  {reasons}{kept}\n"
        f"To do it by hand: download {archive.filename} (e.g. from {archive.urls[0]}) with "
        f"a browser, place it in {root.resolve()}/, and run "
        f"`python -m fcos_lib download voc2007 --root {root}` again: it checks the MD5 "
        f"({archive.md5}) and extracts it.")


def _timed_out(err: OSError) -> bool:
    """Whether ``err`` is a wait that ran out (to connect, for an answer, for more bytes)."""
    return isinstance(err, TimeoutError) or isinstance(getattr(err, "reason", None),
                                                       TimeoutError)


def _cannot_write(err: OSError, kept: Path, root: Path, archive: Archive) -> str:
    """The message for a download that the disk refused: why, and the fix for that reason."""
    fix = {errno.ENOSPC: f"free {archive.size_text} in {root.resolve()} (or give another "
                         "--root)",
           errno.EDQUOT: f"free {archive.size_text} of your quota (or give another --root)",
           errno.EROFS: "give a --root on a disk that can be written"}.get(
        err.errno, f"give a --root you can write to, or change {root.resolve()}'s permissions")
    received = [p for p in root.glob(f"{archive.filename}*.part") if p.stat().st_size]
    return (f"cannot write {kept} ({err.strerror}): {fix}, and run the download again"
            + ("; the bytes received so far are kept and resumed" if received else ""))


def _claim_part(final: Path, kept: Path) -> Path:
    """This process's part file, ``<archive>.<pid>.part``, holding the most bytes kept from
    before: those of ``kept`` or of a killed download's own part file (the rest removed)."""
    mine = final.with_name(f"{final.name}.{os.getpid()}.part")
    dead = [p for p in final.parent.glob(f"{final.name}.*.part")
            if p.name.rsplit(".", 2)[-2].isdigit() and not process_alive(
                int(p.name.rsplit(".", 2)[-2]))]
    found = sorted((p for p in [kept, *dead] if p.is_file()), key=lambda p: p.stat().st_size)
    for extra in found[:-1]:
        extra.unlink()
    if found:
        os.replace(found[-1], mine)
    return mine


def _download(url: str, part: Path, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (resuming with a Range request).

    Raises:
        DownloadError: the server answered with an error or sent fewer bytes than announced.
        OSError: the connection failed or timed out.
    """
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "fcos_lib-download"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the part file is complete
            return
        raise _RefusedError(f"HTTP {err.code} {err.reason}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range request and sends everything
        elif offset and not response.headers.get("Content-Range", "").startswith(
                f"bytes {offset}-"):
            raise DownloadError(f"the server resumed at the wrong place "
                                f"({response.headers.get('Content-Range')!r}, asked {offset})")
        length = response.headers.get("Content-Length")
        expected = int(length) if length is not None else None
        received = 0
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=None if expected is None else offset + expected, initial=offset,
                unit="B", unit_scale=True, desc=part.name.rsplit(".", 2)[0],
                disable=not progress) as bar:
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as err:  # what is left of a dropped connection
                out.write(err.partial)
                received += len(err.partial)
    if expected is not None and received < expected:
        raise DownloadError(f"the connection closed after {offset + received} of "
                            f"{offset + expected} bytes")


def md5sum(path: Path, progress: bool = False) -> str:
    """The MD5 of a file, as 32 hex digits."""
    digest = hashlib.md5()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                     desc=f"MD5 {path.name}", disable=not progress) as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def check_members(members: list[tarfile.TarInfo], archive: Path, *, links: bool) -> None:
    """Refuse, before anything is extracted, members that could write outside the folder:
    absolute names, names with ``..``, device files and pipes, and, when ``links`` is False,
    every link. VOC's archives have none; where Python has the "data" extraction filter
    (3.10.12+, 3.11.4+), ``extract`` passes ``links=True`` and the filter checks where each
    link points as it extracts.

    Raises:
        DownloadError: naming the first bad member.
    """
    for m in members:
        name = PurePosixPath(m.name)
        problem = None
        if (name.is_absolute() or m.name.startswith(("/", "\\"))
                or (name.parts and ":" in name.parts[0])):
            problem = "an absolute path"
        elif ".." in name.parts:
            problem = "a '..' in its path"
        elif (m.issym() or m.islnk()) and not links:
            problem = (f"a link (to {m.linkname!r}), which this Python cannot check: VOC's "
                       "archives have none")
        elif not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            problem = "a device file or pipe"
        if problem:
            raise DownloadError(refusal(archive, m.name, problem))


def refusal(archive: Path, member: str, problem: str) -> str:
    """The one-line refusal of a hostile archive."""
    return (f"refusing to extract {archive}: member {member!r} has {problem}. The file is not "
            "a genuine VOC archive: delete it and download again.")


def extract(path: Path, root: Path, archive: Archive) -> Path:
    """Extract a verified VOC archive so that its ``VOCdevkit/VOC2007`` lands in ``root``.

    The archive goes into a temporary folder in ``root`` first; its tree is then moved into
    place (renamed whole when the destination is new, file by file into an existing tree,
    e.g. test images next to trainval), and a marker file records completion. On any failure
    the temporary folder is removed.

    Raises:
        DownloadError: the archive is unreadable, unsafe, or has no ``VOCdevkit/VOC2007``.
    """
    destination = root / TREE
    for leftover, size in remove_leftovers(root, f".{archive.filename}.*.*.extract"):
        print(f"removed {leftover} ({size / 2**20:.0f} MB), left by an extraction that "
              "was killed")
    temp = Path(tempfile.mkdtemp(prefix=f".{archive.filename}.",
                                 suffix=f".{os.getpid()}.extract", dir=root))
    try:
        try:
            with tarfile.open(path) as tar:
                members = tar.getmembers()
                has_filter = hasattr(tarfile, "data_filter")
                check_members(members, path, links=has_filter)
                try:
                    tar.extractall(temp, members=members,
                                   **({"filter": "data"} if has_filter else {}))
                except getattr(tarfile, "FilterError", ()) as err:   # a link out, say
                    raise DownloadError(refusal(path, err.tarinfo.name, f"a problem: {err}")
                                        ) from None
        except (tarfile.TarError, EOFError) as err:
            raise DownloadError(f"cannot read {path} as a tar archive ({err}): delete it and "
                                "download again") from None
        tree = temp / TREE
        if not tree.is_dir():
            raise DownloadError(f"{path} has no {TREE}/ folder: it is not a VOC 2007 archive. "
                                "Delete it and download again.")
        if not destination.exists():
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tree, destination)
        else:
            _merge(tree, destination)
        marker(root, archive).touch()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return destination


def _merge(source: Path, destination: Path) -> None:
    """Move every file of ``source`` into the same place under ``destination``."""
    for folder, _, files in os.walk(source):
        target = destination / Path(folder).relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            os.replace(Path(folder) / name, target / name)
