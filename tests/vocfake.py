"""Test helpers: a small VOC-format tree of real JPEGs and XMLs, its tar, and a local server.

The tree has what real VOC 2007 has and a reader must handle: 1-based inclusive boxes, a
box covering the whole image, boxes on the border, difficult and truncated objects, an image
without objects, a greyscale JPEG, and an empty split file. ``EXPECTED`` gives, by hand, the
boxes the reader must return (0-based pixel edges: ``x1 = xmin - 1``, ``x2 = xmax``).
"""
from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

from PIL import Image

from bench.vocfolder import write_voc_folder

# id -> (width, height, mode, [(name, xmin, ymin, xmax, ymax, difficult, truncated), ...])
IMAGES = {
    "000001": (60, 40, "RGB", [("dog", 11, 5, 30, 20, 0, 0),
                               ("person", 31, 1, 40, 10, 1, 0),      # difficult
                               ("car", 1, 1, 60, 40, 0, 1)]),        # whole image, truncated
    "000002": (50, 80, "RGB", [("cat", 1, 61, 50, 80, 0, 1),        # bottom border, full width
                               ("bird", 5, 5, 5, 9, 0, 0)]),         # one pixel wide
    "000003": (64, 48, "RGB", []),                                   # no objects
    "000004": (40, 40, "L", [("person", 21, 1, 40, 40, 0, 0),       # greyscale JPEG
                             ("chair", 2, 2, 8, 8, 1, 0)]),          # difficult
}
SPLITS = {"train": ["000001", "000003"], "val": ["000002", "000004"],
          "trainval": ["000001", "000002", "000003", "000004"], "empty": []}
# Boxes (x1, y1, x2, y2) the reader must return at the original size, difficult dropped.
EXPECTED = {
    "000001": [("dog", (10, 4, 30, 20)), ("car", (0, 0, 60, 40))],
    "000002": [("cat", (0, 60, 50, 80)), ("bird", (4, 4, 5, 9))],
    "000003": [],
    "000004": [("person", (20, 0, 40, 40))],
}


def make_voc_tree(base: Path) -> Path:
    """Write ``base/VOCdevkit/VOC2007`` and return that folder."""
    images = {}
    for image_id, (w, h, mode, objects) in IMAGES.items():
        # A gradient, so that resizing and cropping have something to move.
        image = Image.linear_gradient("L").resize((w, h))
        if mode == "RGB":
            image = Image.merge("RGB", (image, image.transpose(Image.FLIP_LEFT_RIGHT), image))
        images[image_id] = (image, objects)
    return write_voc_folder(Path(base) / "VOCdevkit" / "VOC2007", images, SPLITS)


def make_voc_tar(base: Path, path: Path, extra: dict[str, bytes] | None = None,
                 symlinks: dict[str, str] | None = None) -> str:
    """Pack ``base/VOCdevkit`` as ``path`` like the official archive; return its MD5.

    Args:
        extra: more members, name -> bytes (e.g. ``"../evil.txt"`` for a hostile archive).
        symlinks: more members, name -> link target.
    """
    with tarfile.open(path, "w") as tar:
        tar.add(Path(base) / "VOCdevkit", arcname="VOCdevkit")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class FileServer:
    """An HTTP server on 127.0.0.1 serving ``files`` (URL path -> bytes) from a thread.

    ``mode``: ``"normal"`` honours Range requests (206), ``"ignore_range"`` always sends the
    whole file (200), ``"drop"`` announces the whole file but closes the connection after half
    of it. ``requests`` logs ``(path, Range header, status)``.
    """

    def __init__(self, files: dict[str, bytes], mode: str = "normal"):
        self.files, self.mode, self.requests = files, mode, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the name http.server calls)
                data = server.files.get(self.path)
                rng = self.headers.get("Range")
                if data is None:
                    server.requests.append((self.path, rng, 404))
                    self.send_error(404)
                    return
                start = 0
                if rng and server.mode == "normal":
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        server.requests.append((self.path, rng, 416))
                        self.send_error(416)
                        return
                status = 206 if start else 200
                server.requests.append((self.path, rng, status))
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                body = data[start:]
                if server.mode == "drop":
                    body = body[: len(body) // 2]
                self.wfile.write(body)
                self.wfile.flush()
                if server.mode == "drop":
                    self.close_connection = True

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
