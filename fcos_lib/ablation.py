"""What matters in FCOS: the paper's ablations re-run on our data, each over several seeds.

:func:`compare` trains the baseline and each *switch* (a few settings changed) once per seed,
into ``<out>/<switch>/seed<k>/``, and measures each run on the validation split: mAP@0.5 (VOC,
exact area) and the COCO mAP (IoU 0.50:0.95). A switch that changes only how the detector is
evaluated (its ``"eval"`` options: thresholds, the centerness in the score) trains nothing: it
re-evaluates the baseline's models, seed by seed.

One seed's number says little: two seeds of the same settings differ too. So each switch
gets its mean over the seeds, its spread (min, max and the sample standard deviation), the
difference of its mean from the baseline's, and a verdict by one rule of thumb (not a
significance test): the difference is *beyond noise* when it is larger than twice the larger
of the two standard deviations. For n seeds each, the standard error of a difference of means
is at most ``s * sqrt(2 / n)``, so with 3 seeds the rule asks for at least 2.4 of them.
An evaluation-only switch compares the same models, so for it the rule is cautious.

Every run writes ``result.json`` whole (:func:`fcos_lib.files.write_atomic`) when measured; a
run that has one is not trained again, and a run cut short resumes from its checkpoint, so a
lost session loses at most the run in progress.
"""
from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fcos_lib.config import FCOSConfig, TrainConfig, config_with, model_config
from fcos_lib.env import pick_device
from fcos_lib.evaluate import mean_average_precision
from fcos_lib.files import write_atomic
from fcos_lib.inference import detect, predict_dataset
from fcos_lib.model import FCOS
from fcos_lib.train import build_datasets, train
from fcos_lib.validate import whole

__all__ = ["compare", "summarize", "verdict", "Comparison", "BASELINE", "EVAL_OPTIONS",
           "METRICS"]

BASELINE = "baseline"
METRICS = ("map50", "map_coco")
# The options of model.predict, and those of detect that predict does not pass on.
PREDICT_OPTIONS = ("score_thresh", "nms_thresh", "topk_candidates", "detections_per_img",
                   "centerness_in_score")
EVAL_OPTIONS = PREDICT_OPTIONS + ("centerness_from", "sqrt_score")
SET_BY_COMPARE = ("out", "seed", "steps")
MODEL_FIELDS = tuple(f.name for f in fields(FCOSConfig) if f.name != "num_classes") + ("preset",)


def verdict(difference: float, noise: float | None) -> str:
    """``"beyond noise"`` when ``|difference| > noise``, else ``"within noise"``;
    ``noise`` None (one seed: no spread to measure) gives ``"one seed: no noise estimate"``.

    Args:
        difference: a switch's mean minus the baseline's (mAP, in [-1, 1]).
        noise: 2 x the larger of the two seed standard deviations (see :func:`summarize`).

    >>> verdict(0.05, 0.04), verdict(-0.03, 0.04), verdict(0.04, 0.04)
    ('beyond noise', 'within noise', 'within noise')
    """
    if noise is None:
        return "one seed: no noise estimate"
    return "beyond noise" if abs(difference) > noise else "within noise"


def summarize(values: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """One switch's numbers against the baseline's, one value per seed each.

    Args:
        values: the switch's mAP, one per seed; baseline: the baseline's, one per seed.

    Returns:
        ``mean``, ``min``, ``max``, ``std`` (sample standard deviation; None for one seed),
        ``difference`` (mean minus the baseline's mean), ``noise`` (2 x the larger standard
        deviation of the two; None for one seed) and the :func:`verdict`.

    >>> row = summarize([0.50, 0.54], [0.40, 0.42])
    >>> round(row["difference"], 3), round(row["noise"], 3), row["verdict"]
    (0.11, 0.057, 'beyond noise')
    """
    std = statistics.stdev(values) if len(values) > 1 else None
    base_std = statistics.stdev(baseline) if len(baseline) > 1 else None
    noise = None if std is None or base_std is None else 2 * max(std, base_std)
    difference = statistics.fmean(values) - statistics.fmean(baseline)
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "std": std, "difference": difference, "noise": noise,
            "verdict": verdict(difference, noise)}


@dataclass
class Comparison:
    """The table of :func:`compare`: one row per switch (the baseline first) and metric,
    each a dict: ``switch``, ``metric`` (``"map50"`` or ``"map_coco"``),
    ``evaluation_only``, ``seeds``, ``values`` (one per seed), and :func:`summarize`'s keys
    (the baseline's ``difference`` is 0.0 and its ``verdict`` ``"baseline"``)."""

    rows: list[dict[str, Any]]

    def row(self, switch: str, metric: str = "map50") -> dict[str, Any]:
        """The row of ``switch`` and ``metric``; KeyError when there is none."""
        for row in self.rows:
            if row["switch"] == switch and row["metric"] == metric:
                return row
        raise KeyError(f"no row for switch {switch!r} and metric {metric!r}")

    def format(self, metric: str = "map50") -> str:
        """The rows of ``metric`` as a text table (means and spreads in mAP points x 100)."""
        wide = max(7, len(metric))
        lines = [f"{'switch':<22} {metric:>{wide}} {'min-max':>11} {'std':>5} {'diff':>6}  verdict"]
        for r in (r for r in self.rows if r["metric"] == metric):
            std = "-" if r["std"] is None else f"{100 * r['std']:.1f}"
            lines.append(f"{r['switch']:<22} {100 * r['mean']:>{wide}.1f} "
                         f"{100 * r['min']:>5.1f}-{100 * r['max']:<5.1f} {std:>5} "
                         f"{100 * r['difference']:>+6.1f}  {r['verdict']}")
        return "\n".join(lines)


def _check(base: TrainConfig, switches: Mapping[str, Mapping[str, Any]], seeds: Sequence[int],
           steps: int) -> None:
    """A ValueError, before any run, for bad seeds or a bad switch, naming it and the fix."""
    if not isinstance(base, TrainConfig):
        raise ValueError(f"base is a {type(base).__name__}: pass a TrainConfig, e.g. "
                         "fcos_lib.config.get_preset('shapes')")
    whole("steps", steps, minimum=1)
    if isinstance(seeds, (str, int)) or not len(seeds):
        raise ValueError(f"seeds={seeds!r}: give a list of at least one seed, e.g. [0, 1, 2]")
    if len(set(whole("seed", s) for s in seeds)) != len(seeds):
        raise ValueError(f"seeds={list(seeds)} repeat a seed: give each seed once")
    for name, overrides in switches.items():
        where = f"switch {name!r}"
        if name == BASELINE or not re.fullmatch(r"[A-Za-z0-9][\w.-]*", str(name)):
            raise ValueError(f"{where}: name it with letters, digits, '_', '-' or '.', other "
                             f"than {BASELINE!r} (the runs without a switch)")
        if not isinstance(overrides, Mapping) or not all(
                isinstance(overrides.get(k, {}), Mapping) for k in ("model", "eval")):
            raise ValueError(f"{where}: give a dict of settings, with dicts under 'model' and "
                             "'eval', e.g. {'model': {'norm': 'none'}}")
        train_part = {k: v for k, v in overrides.items() if k != "eval"}
        evaluation = overrides.get("eval", {})
        if not train_part and not evaluation:
            raise ValueError(f"{where} changes nothing: give settings, e.g. "
                             "{'model': {'box_loss': 'giou'}} or {'eval': {'nms_thresh': 0.5}}")
        known = {f.name for f in fields(TrainConfig)} - set(SET_BY_COMPARE)
        unknown = [f"{k!r}" for k in train_part if k not in known]
        unknown += [f"model {k!r}" for k in train_part.get("model", {}) if k not in MODEL_FIELDS]
        unknown += [f"eval {k!r}" for k in evaluation if k not in EVAL_OPTIONS]
        if unknown:
            raise ValueError(f"{where}: unknown setting {', '.join(unknown)}; a switch sets "
                             f"TrainConfig fields other than {SET_BY_COMPARE}, FCOSConfig fields "
                             f"under 'model', or {EVAL_OPTIONS} under 'eval'")
        model_config(config_with(asdict(base), **train_part), num_classes=1)  # checks values
        _evaluation_check(evaluation)


def _evaluation_check(options: Mapping[str, Any]) -> None:
    """Run ``detect`` with ``options`` on one made-up location: its own checks, early."""
    one = {"cls_logits": [torch.zeros(1, 1, 1)], "box_deltas": [torch.ones(1, 1, 4)],
           "centerness": [torch.zeros(1, 1)], "locations": [torch.zeros(1, 2)], "strides": [8]}
    detect(one, 32, **options)


def _evaluate(checkpoint: Path, val_set: Dataset, options: Mapping[str, Any], device: str | None,
              eval_images: int | None) -> dict[str, float]:
    """:data:`METRICS` of a checkpoint's model on ``val_set`` with detection ``options``."""
    model, _ = FCOS.from_checkpoint(checkpoint, map_location=pick_device(device))
    extra = {k: v for k, v in options.items() if k not in PREDICT_OPTIONS}
    if extra:                                       # model.predict passes only its own options
        model.use(replace(model.pieces, detect=partial(model.pieces.detect, **extra)))
    predictions, targets = predict_dataset(model, val_set, max_images=eval_images,
                                           **{k: v for k, v in options.items() if k not in extra})
    n = len(val_set.class_names)
    return {"map50": mean_average_precision(predictions, targets, 0.5, "area",
                                            num_classes=n)["map"],
            "map_coco": mean_average_precision(predictions, targets, "coco", "coco101",
                                               num_classes=n, max_detections=100)["map"]}


def _one_run(base: TrainConfig, name: str, overrides: Mapping[str, Any], seed: int, steps: int,
             out: Path, eval_images: int | None, val_sets: dict[str, Any]) -> dict[str, Any]:
    """The result of one switch and seed: read back if measured before as asked now, else
    trained (or resumed, or kept when only the evaluation changed) and measured, and written
    whole to ``<out>/<name>/seed<seed>/result.json``."""
    train_part = {k: v for k, v in overrides.items() if k != "eval"}
    options = dict(overrides.get("eval", {}))
    trains = name == BASELINE or bool(train_part)
    model_folder = out / (name if trains else BASELINE) / f"seed{seed}"
    cfg = config_with(asdict(base), **train_part, out=str(model_folder), seed=seed, steps=steps)
    # What the result depends on (``out`` aside: a moved folder keeps its results).
    record = json.loads(json.dumps({"switch": name, "seed": seed, "config": asdict(cfg),
                                    "eval": options, "eval_images": eval_images}))
    del record["config"]["out"]
    path = out / name / f"seed{seed}" / "result.json"
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved is not None:
        differ = [k for k, v in record["config"].items() if saved["config"].get(k) != v]
        if differ:
            raise ValueError(f"{path} holds a run with other settings ({', '.join(differ)}): "
                             f"delete {path.parent} to run it again, or choose another out")
        if all(saved.get(k) == record[k] for k in ("eval", "eval_images")):
            return saved
        # Only the evaluation changed: the finished model is measured again, not trained.
    checkpoint = (train(cfg, resume=True, progress=False) if trains and saved is None
                  else model_folder / "checkpoint.pt")
    key = json.dumps([cfg.dataset, cfg.val_split, cfg.image_size, cfg.dataset_kwargs],
                     sort_keys=True, default=str)
    if key not in val_sets:
        val_sets[key] = build_datasets(cfg, ("val",), progress=False)[0]
    result = {**record, **_evaluate(checkpoint, val_sets[key], options, cfg.device,
                                    eval_images)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, indent=1))
    return result


def compare(base: TrainConfig, switches: Mapping[str, Mapping[str, Any]],
            seeds: Sequence[int], *, steps: int, out: str | Path,
            eval_images: int | None = None, progress: bool = True) -> Comparison:
    """Train and measure the baseline and every switch once per seed; the table of means,
    spreads and verdicts (see the module docstring).

    Args:
        base: the baseline run (e.g. ``get_preset("shapes")``); ``out``, ``seed`` and
            ``steps`` are replaced by the arguments below.
        switches: name -> settings that differ from ``base``: TrainConfig fields (those of
            the model in a ``"model"`` dict, merged into ``base.model``), and detection
            options in an ``"eval"`` dict (:data:`EVAL_OPTIONS`: ``nms_thresh``,
            ``centerness_in_score``, ``centerness_from``, ``sqrt_score``, ...). A switch with
            ``"eval"`` alone re-evaluates the baseline's models and trains nothing, e.g.
            ``{"giou": {"model": {"box_loss": "giou"}}, "nms0.5": {"eval": {"nms_thresh":
            0.5}}}``. Names become folder names.
        seeds: the seeds, each a run of every switch (2 or more give a verdict).
        steps: optimizer steps of every training run.
        out: the folder of the runs: ``<out>/<switch>/seed<k>/`` (checkpoint and
            ``result.json``); ``<out>/baseline/`` for the baseline.
        eval_images: the first this many validation images are measured (None: all).
        progress: one tqdm bar over all runs.

    Returns:
        A :class:`Comparison`: ``2 * (1 + len(switches))`` rows, the baseline's first.

    Raises:
        ValueError: before any run, a bad seed list, a switch named ``"baseline"`` or not
            usable as a folder name, an unknown setting or a bad value; at a run, a
            ``result.json`` or checkpoint made with other training settings (a result
            measured with other evaluation settings is measured again).
    """
    _check(base, switches, seeds, steps)
    if eval_images is not None:
        whole("eval_images", eval_images, minimum=1, hint="or None for the whole split")
    plan = [(BASELINE, {}), *switches.items()]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in plan}
    val_sets: dict[str, Any] = {}
    with tqdm(total=len(plan) * len(seeds), desc="ablation runs", unit="run",
              disable=not progress) as bar:
        for seed in seeds:          # every switch of a seed before the next seed
            for name, overrides in plan:
                bar.set_postfix_str(f"{name}, seed {seed}")
                results[name].append(_one_run(base, name, overrides, seed, steps, Path(out),
                                              eval_images, val_sets))
                bar.update(1)
    rows = []
    for name, overrides in plan:
        for metric in METRICS:
            values = [r[metric] for r in results[name]]
            stats = summarize(values, [r[metric] for r in results[BASELINE]])
            if name == BASELINE:
                stats["verdict"] = "baseline"
            only_eval = set(overrides) == {"eval"}
            rows.append({"switch": name, "metric": metric, "evaluation_only": only_eval,
                         "seeds": list(seeds), "values": values, **stats})
    return Comparison(rows)
