"""``python -m fcos_lib evaluate --checkpoint PATH --dataset shapes|voc2007-tiny``: the mAP
of a checkpoint on a dataset split, as a per-class table (and JSON with ``--out``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fcos_lib.checkpoint import CheckpointError
from fcos_lib.commands._common import (
    add_model_arguments,
    add_overwrite_argument,
    check_outputs,
    error,
    load_trained,
    os_error,
    positive_int,
)
from fcos_lib.data import build_dataset
from fcos_lib.evaluate import METHODS, evaluate_model, format_table
from fcos_lib.files import write_atomic


def _iou_argument(text: str) -> float | str:
    """``--iou``: 'coco' or a threshold strictly between 0 and 1."""
    if text == "coco":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number: give e.g. 0.5, or coco"
                                         ) from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not strictly between 0 and 1")
    return value


def _ours(path: Path) -> bool:
    """Whether ``path`` is a table this command wrote (in an earlier run): it replaces those,
    and no other file without ``--overwrite``."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(found, dict) and {"checkpoint", "dataset", "map", "per_class"} <= set(found)


def main(argv: list[str] | None = None) -> int:
    """``python -m fcos_lib evaluate --checkpoint PATH --dataset shapes|voc2007-tiny``."""
    parser = argparse.ArgumentParser(prog="python -m fcos_lib evaluate",
                                     description="mAP of a checkpoint on a dataset split.")
    add_model_arguments(parser)
    parser.add_argument("--dataset", required=True, choices=["shapes", "voc2007-tiny"])
    parser.add_argument("--split", default="val")
    parser.add_argument("--iou", default=0.5, type=_iou_argument,
                        help="IoU threshold, or 'coco' (0.50:0.95)")
    parser.add_argument("--method", default="area", choices=METHODS)
    parser.add_argument("--max-images", type=positive_int, help="only the first N images")
    parser.add_argument("--root", default="data", help="where VOC lives (voc2007-tiny)")
    parser.add_argument("--out", help="write the table as JSON here")
    add_overwrite_argument(parser)
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        return error(f"no checkpoint at {args.checkpoint}; train one with "
                     "`python -m fcos_lib train` or `make demo`")
    try:
        if args.out:     # refused now, not after the evaluation
            check_outputs([args.out], [args.checkpoint], args.overwrite, _ours)
        return _evaluate(args)
    except (CheckpointError, ValueError) as err:
        return error(err)
    except OSError as err:       # our own "not downloaded" message, or the system's refusal
        return os_error(err) if err.errno else error(err)


def _evaluate(args: argparse.Namespace) -> int:
    """The evaluate command after its arguments are parsed; bad input raises."""
    model, config = load_trained(args)
    extra = {"root": args.root} if args.dataset == "voc2007-tiny" else {}
    dataset = build_dataset(args.dataset, args.split, image_size=config["train"]["image_size"],
                            **extra)
    if not len(dataset):
        files = dataset.sources()[:1] if hasattr(dataset, "sources") else []
        where = f"{files[0]} lists no image ids; put them in it, one a line, or " if files else ""
        raise ValueError(f"--dataset {args.dataset} --split {args.split} has no images: "
                         f"{where}choose another --split")
    if list(dataset.class_names) != list(config["class_names"]):
        raise ValueError(f"the checkpoint knows the classes {list(config['class_names'])}, "
                         f"{args.dataset} has {list(dataset.class_names)}: evaluate on the "
                         "dataset it was trained on")
    if args.out and hasattr(dataset, "sources"):      # a JSON written over an annotation...
        check_outputs([args.out], dataset.sources(), overwrite=True)
    result = evaluate_model(model, dataset, max_images=args.max_images,
                            iou_threshold=args.iou, method=args.method)
    names = list(dataset.class_names)
    print(format_table(result, names))
    if args.out:
        report = {"checkpoint": str(args.checkpoint), "dataset": args.dataset,
                  "split": args.split, "images": result["images"], "method": args.method,
                  "iou_thresholds": result["iou_thresholds"], "map": result["map"],
                  "per_class": {names[c]: {"ap": result["per_class"].get(c),
                                           "num_gt": result["num_gt"][c],
                                           "num_detections": result["num_detections"][c]}
                                for c in result["num_gt"]}}
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}")
    return 0
