"""``python -m fcos_lib predict --checkpoint PATH [--out DIR] IMAGE...``: draw a checkpoint's
boxes on image files, one PNG per image."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from fcos_lib.checkpoint import CheckpointError
from fcos_lib.commands._common import add_model_arguments, error, load_trained
from fcos_lib.inference import load_image
from fcos_lib.viz import draw_detections, png_bytes


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fcos_lib predict --checkpoint PATH [--out DIR] IMAGE...``: one PNG per
    image, with the detected boxes, in ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m fcos_lib predict",
                                     description="Draw a checkpoint's boxes on image files.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG or PNG files")
    add_model_arguments(parser)
    parser.add_argument("--out", default="predictions", help="folder for the PNGs")
    parser.add_argument("--score-thresh", type=float, default=0.3,
                        help="draw boxes scoring above this (default 0.3)")
    args = parser.parse_args(argv)
    missing = [p for p in [args.checkpoint, *args.images] if not Path(p).is_file()]
    if missing:
        return error(f"no such file: {', '.join(missing)}")

    try:
        model, config = load_trained(args)
    except CheckpointError as err:
        return error(err)
    size, names = config["train"]["image_size"], list(config["class_names"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        loaded = [load_image(p, size) for p in args.images]
    except ValueError as err:
        return error(err)
    weight = next(model.parameters())
    images = torch.stack([normalized for _, normalized in loaded]).to(weight.device)
    predictions = model.predict(images, score_thresh=args.score_thresh)
    for path, (pixels, _), pred in zip(args.images, loaded, predictions):
        drawn = draw_detections(pixels, {k: v.cpu() for k, v in pred.items()}, class_names=names)
        target = out / f"{Path(path).stem}_boxes.png"
        target.write_bytes(png_bytes(drawn))
        print(f"{path}: {len(pred['boxes'])} boxes -> {target}")
    return 0
