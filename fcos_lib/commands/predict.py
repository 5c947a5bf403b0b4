"""``python -m fcos_lib predict --checkpoint PATH [--out DIR] IMAGE_OR_FOLDER...``: a
checkpoint's boxes on whole photos, in their own pixels.

For each photo, in ``--out``: ``<name>_boxes.png`` (the photo at its own size, the boxes drawn)
and ``<name>_boxes.json`` (the boxes in the photo's pixels, class names and scores:
:func:`fcos_lib.photo.as_record`); with ``--coco-results FILE``, one COCO-style results file
for them all. Two photos of one name (``a/x.jpg``, ``b/x.jpg``, ``x.png``) get ``x``,
``x-2``, ``x-3``; every line printed says which photo went where.

Its pictures carry a PNG text chunk (``Software: fcos_lib predict``) and its JSON the record's
fields, so that a later run knows its own outputs: it replaces them, but refuses to write
over a file of yours of the same name (``cat_boxes.png``) unless given ``--overwrite``, and
never writes over one of its photos or the checkpoint.
"""
from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from fcos_lib.checkpoint import CheckpointError
from fcos_lib.commands._common import (
    add_model_arguments,
    add_overwrite_argument,
    check_outputs,
    error,
    load_trained,
)
from fcos_lib.files import remove_leftovers, write_atomic
from fcos_lib.photo import (
    as_coco_results,
    as_record,
    detect_photo,
    draw_photo,
    read_photo,
    record_json,
)

OUTPUT_SUFFIX = "_boxes"
MARK = "fcos_lib predict"     # the Software text of the pictures it draws
SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def gather(inputs: Sequence[str], out: Path) -> list[Path]:
    """The photos named: files as given, folders' image files in name order (not their
    subfolders, nor the pictures this command drew into ``out``).

    Raises:
        ValueError: a path that does not exist, or a folder without images.
    """
    photos: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUFFIXES
                           and p.is_file() and not _ours(p, out))
            if not found:
                raise ValueError(f"{path}: no images in this folder (looked for "
                                 f"{', '.join(sorted(SUFFIXES))})")
            photos += found
        elif path.is_file():
            photos.append(path)
        else:
            raise ValueError(f"{path}: no such file or folder")
    return photos


def _ours(path: Path, out: Path) -> bool:
    """Whether ``path`` is a picture this command drew into ``out``."""
    return (path.name.endswith(OUTPUT_SUFFIX + ".png") and path.parent.resolve() == out.resolve()
            and is_ours(path))


def is_ours(path: Path) -> bool:
    """Whether ``path`` is an output of this command (of this run or an earlier one): a PNG
    it drew, the JSON record of a photo, or a COCO results file with its ``file_name``s."""
    try:
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return image.info.get("Software") == MARK
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if isinstance(found, dict):
        return {"image", "checkpoint", "detections"} <= set(found)
    return isinstance(found, list) and all(isinstance(r, dict) and {"image_id", "file_name"}
                                           <= set(r) for r in found)


def png_marked(pixels: Tensor) -> bytes:
    """uint8 (3, H, W) as PNG bytes, marked as this command's (:data:`MARK`)."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info, buffer = PngInfo(), io.BytesIO()
    info.add_text("Software", MARK)
    Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy()).save(buffer, format="PNG",
                                                                        pnginfo=info)
    return buffer.getvalue()


def output_names(photos: Sequence[Path]) -> list[str]:
    """One output name per photo, its file name's stem, made unique by ``-2``, ``-3``...

    >>> output_names([Path("a/x.jpg"), Path("b/x.jpg"), Path("x.png"), Path("x-2.jpg")])
    ['x', 'x-3', 'x-4', 'x-2']
    """
    taken = {p.stem for p in photos}
    seen: set[str] = set()
    names = []
    for photo in photos:
        name, k = photo.stem, 1
        while name in seen or (k > 1 and name in taken):
            k += 1
            name = f"{photo.stem}-{k}"
        seen.add(name)
        names.append(name)
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fcos_lib predict --checkpoint PATH [--out DIR] IMAGE_OR_FOLDER...``."""
    from tqdm.auto import tqdm

    parser = argparse.ArgumentParser(
        prog="python -m fcos_lib predict",
        description="Detect objects on whole photos: draws each photo at its own size with "
                    "its boxes, and writes the boxes, in the photo's pixels, as JSON.")
    parser.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help="photos (JPEG, PNG, ...) or folders of them")
    add_model_arguments(parser)
    parser.add_argument("--out", default="predictions", help="folder for the pictures and "
                        "JSON files (default: predictions)")
    parser.add_argument("--score-thresh", type=float, default=0.3,
                        help="keep boxes scoring above this (default 0.3)")
    parser.add_argument("--coco-results", metavar="FILE",
                        help="also write every photo's boxes to FILE as COCO results "
                             "(image_id: the photo's number from 1, category_id: label + 1)")
    add_overwrite_argument(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.score_thresh < 1:
        return error(f"--score-thresh {args.score_thresh}: choose a score from 0 up to 1")
    out = Path(args.out)
    try:
        photos = gather(args.images, out)
    except ValueError as err:
        return error(err)
    names_out = output_names(photos)
    clash = {p.resolve() for p in photos} & {(out / f"{n}{OUTPUT_SUFFIX}{ext}").resolve()
                                            for n in names_out for ext in (".png", ".json")}
    if clash:
        return error(f"{sorted(clash)[0]} is one of the photos and would be overwritten by "
                     "another's picture: choose another --out folder")
    if not Path(args.checkpoint).is_file():
        return error(f"no such checkpoint: {args.checkpoint}")
    outputs = [out / f"{n}{OUTPUT_SUFFIX}{ext}" for n in names_out for ext in (".png", ".json")]
    if args.coco_results and Path(args.coco_results).resolve() in {p.resolve() for p in outputs}:
        return error(f"--coco-results {args.coco_results} is also one of the pictures' JSON "
                     "files: name another file")
    try:
        check_outputs(outputs + ([Path(args.coco_results)] if args.coco_results else []),
                      [*photos, Path(args.checkpoint)], args.overwrite, is_ours)
    except ValueError as err:
        return error(err)
    try:
        model, config = load_trained(args)
    except (CheckpointError, ValueError) as err:       # a broken file, a device not here
        return error(err)
    size, names = config["train"]["image_size"], list(config["class_names"])
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)                       # of a run killed while writing
    results, failed, unnamed = [], [], []
    bar = tqdm(photos, desc="photos", unit="photo", disable=len(photos) < 2, file=sys.stderr)
    for number, (photo, name) in enumerate(zip(bar, names_out), 1):
        try:
            pixels = read_photo(photo)
        except ValueError as err:
            failed.append(photo)
            tqdm.write(f"error: {err}", file=sys.stderr)
            continue
        found = detect_photo(model, pixels, size, score_thresh=args.score_thresh)
        height, width = pixels.shape[-2:]
        record = as_record(found, names, image=str(photo), width=width, height=height,
                           checkpoint=str(args.checkpoint), score_thresh=args.score_thresh,
                           shorter_side=size)
        drawn = draw_photo(pixels, found, names)
        try:     # the JSON's name is the longer: one too long is met before a file is written
            write_atomic(out / f"{name}{OUTPUT_SUFFIX}.json", record_json(record))
            picture = write_atomic(out / f"{name}{OUTPUT_SUFFIX}.png", png_marked(drawn))
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:
                raise               # a full disk, a folder not writable: every photo would fail
            unnamed.append(photo)
            tqdm.write(f"error: {photo}: the name of its outputs, {name}{OUTPUT_SUFFIX}.json, "
                       f"is too long for a file name in {out}; give the photo a shorter name",
                       file=sys.stderr)
            continue
        results += as_coco_results(record, number)
        tqdm.write(f"{photo}: {len(found['boxes'])} boxes -> {picture} (and .json)")
    if args.coco_results:
        target = write_atomic(args.coco_results, json.dumps(results))
        print(f"COCO results of {len(photos) - len(failed) - len(unnamed)} photos -> {target}")
    said = ([f"{len(failed)} of {len(photos)} files could not be read"] if failed else []) + (
        [f"{len(unnamed)} of {len(photos)} photos' outputs could not be named"] if unnamed else [])
    if said:
        return error(f"{' and '.join(said)} (see above)")
    return 0
