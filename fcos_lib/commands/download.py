"""``python -m fcos_lib download voc2007 --root data/``: fetch, verify and extract VOC 2007.

See :mod:`fcos_lib.data.download` for what happens when a mirror is down, the connection
drops or the archive is corrupt or hostile.
"""
from __future__ import annotations

import argparse

from fcos_lib.commands._common import error, os_error
from fcos_lib.data.download import TIMEOUT, DownloadError, download_voc2007


def _seconds(text: str) -> float:
    """An argparse type: a number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} is not a number of seconds above 0")
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib download voc2007 --root data/ [--test] [--url URL] [--md5 MD5]
    [--timeout SECONDS]``."""
    parser = argparse.ArgumentParser(
        prog="python -m fcos_lib download",
        description="Download, verify (MD5) and extract a dataset into a data folder.")
    parser.add_argument("dataset", choices=["voc2007"], help="the dataset to fetch")
    parser.add_argument("--root", default="data", help="data folder (default: data)")
    parser.add_argument("--test", action="store_true", help="also fetch the VOC 2007 test set")
    parser.add_argument("--url", help="fetch the trainval archive from this URL only")
    parser.add_argument("--md5", help="expected MD5 of the archive at --url (default: the "
                                      "published one)")
    parser.add_argument("--timeout", type=_seconds, default=TIMEOUT, metavar="SECONDS",
                        help=f"wait this long for a mirror to connect, answer or send more "
                             f"(default {TIMEOUT:g}); a mirror that stays silent is left")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        folder = download_voc2007(args.root, test=args.test, url=args.url, md5=args.md5,
                                  progress=not args.quiet, timeout=args.timeout)
    except DownloadError as err:
        return error(err)
    except OSError as err:
        return os_error(err)
    print(f"VOC 2007 is ready in {folder}")
    return 0
