"""fcos_lib.ablation.compare on tiny runs, its verdict rule, and detect's scoring options.

One module-wide comparison (two seeds; a training switch; two evaluation-only switches) is
checked against the runs' own checkpoints evaluated directly, then asked again (nothing is
trained), and a run cut short is finished by resuming it.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict

import pytest
import torch
from tinyrun import assert_same_weights, tiny_config, weights

from fcos_lib import ablation
from fcos_lib.ablation import compare, summarize, verdict
from fcos_lib.checkpoint import load_checkpoint
from fcos_lib.config import config_with
from fcos_lib.data import collate
from fcos_lib.evaluate import evaluate_model, mean_average_precision
from fcos_lib.inference import box_centerness, detect, detect_plain
from fcos_lib.model import FCOS
from fcos_lib.targets import centerness_target
from fcos_lib.train import build_datasets
from fcos_lib.train import train as real_train

STEPS, SEEDS = 6, [0, 1]
SWITCHES = {"giou": {"model": {"box_loss": "giou"}},
            "no-ctr": {"eval": {"centerness_in_score": False}},
            "ctr-from-box": {"eval": {"centerness_from": "regression"}}}


def base_config():
    return tiny_config("unused", eval_images=4)


def counting(monkeypatch):
    """Make compare's ``train`` record (out, resume) of each call, then train."""
    calls = []

    def train(cfg, **kw):
        calls.append((cfg.out, kw.get("resume")))
        return real_train(cfg, **kw)

    monkeypatch.setattr(ablation, "train", train)
    return calls


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablation")
    with pytest.MonkeyPatch.context() as mp:
        calls = counting(mp)
        table = compare(base_config(), SWITCHES, SEEDS, steps=STEPS, out=out, progress=False)
    return out, table, calls


def test_the_table_holds_the_runs_own_numbers(ran):
    out, table, _ = ran
    assert [(r["switch"], r["metric"]) for r in table.rows] == [
        (s, m) for s in ["baseline", *SWITCHES] for m in ("map50", "map_coco")]
    val = build_datasets(base_config(), ("val",), progress=False)[0]
    for switch, options in [("baseline", {}), ("giou", {}),
                            ("no-ctr", {"centerness_in_score": False})]:
        for i, seed in enumerate(SEEDS):
            folder = "giou" if switch == "giou" else "baseline"
            model, _ = FCOS.from_checkpoint(out / folder / f"seed{seed}" / "checkpoint.pt")
            at50 = evaluate_model(model, val, **options)["map"]
            coco = evaluate_model(model, val, iou_threshold="coco", method="coco101",
                                  **options)["map"]
            assert table.row(switch, "map50")["values"][i] == at50
            assert table.row(switch, "map_coco")["values"][i] == coco
    base = table.row("baseline")["values"]              # numbers worth comparing:
    assert min(base) > 0 and base[0] != base[1]         # each seed its own model
    assert table.row("giou")["values"] != base
    for row in table.rows:
        base = table.row("baseline", row["metric"])["values"]
        assert row["mean"] == statistics.fmean(row["values"])
        assert row["std"] == statistics.stdev(row["values"])
        assert (row["min"], row["max"]) == (min(row["values"]), max(row["values"]))
        assert row["difference"] == pytest.approx(row["mean"] - statistics.fmean(base))
        assert row["evaluation_only"] == (row["switch"] in ("no-ctr", "ctr-from-box"))
    assert table.row("baseline")["verdict"] == "baseline"
    assert "giou" in table.format() and "map_coco" in table.format("map_coco")
    for metric in ("map50", "map_coco"):            # each mean ends under its header's end
        head, *rows = table.format(metric).splitlines()
        edge = head.index(metric) + len(metric)
        assert len(rows) == sum(r["metric"] == metric for r in table.rows)
        assert all(row[edge - 1] != " " and row[edge] == " " for row in rows), table.format(metric)


def test_an_evaluation_switch_of_the_library_detect_reaches_the_table(ran):
    # centerness_from is not an option of model.predict: detect is called here directly
    out, table, _ = ran
    val = build_datasets(base_config(), ("val",), progress=False)[0]
    images, targets = collate([val[i] for i in range(len(val))])
    for i, seed in enumerate(SEEDS):
        model, _ = FCOS.from_checkpoint(out / "baseline" / f"seed{seed}" / "checkpoint.pt")
        with torch.no_grad():
            found = detect(model(images), tuple(images.shape[-2:]),
                           centerness_from="regression")
        at50 = mean_average_precision(found, targets, 0.5, "area",
                                      num_classes=len(val.class_names))["map"]
        assert table.row("ctr-from-box")["values"][i] == pytest.approx(at50, abs=1e-12)
    assert table.row("ctr-from-box")["values"] != table.row("baseline")["values"]


def test_evaluation_switches_train_nothing(ran):
    out, _, calls = ran
    assert calls == [(str(out / s / f"seed{k}"), True) for k in SEEDS
                     for s in ("baseline", "giou")]
    for switch in ("no-ctr", "ctr-from-box"):
        assert sorted(p.name for p in (out / switch).rglob("*")) == [
            "result.json", "result.json", "seed0", "seed1"]


def test_finished_runs_are_read_back_not_trained(ran, monkeypatch):
    out, table, _ = ran
    calls = counting(monkeypatch)
    again = compare(base_config(), SWITCHES, SEEDS, steps=STEPS, out=out, progress=False)
    assert calls == [] and again.rows == table.rows
    # a result of other settings is refused, not reused
    with pytest.raises(ValueError, match=r"result.json holds a run with other settings \(steps"):
        compare(base_config(), {}, SEEDS, steps=STEPS + 1, out=out, progress=False)
    # another evaluation measures the kept models again, and trains nothing
    fewer = compare(base_config(), SWITCHES, SEEDS, steps=STEPS, out=out, eval_images=5,
                    progress=False)
    val = build_datasets(base_config(), ("val",), progress=False)[0]
    model, _ = FCOS.from_checkpoint(out / "baseline" / "seed1" / "checkpoint.pt")
    assert fewer.row("baseline")["values"][1] == evaluate_model(model, val, max_images=5)["map"]
    assert fewer.row("baseline")["values"] != table.row("baseline")["values"]
    back = compare(base_config(), SWITCHES, SEEDS, steps=STEPS, out=out, progress=False)
    assert calls == [] and back.rows == table.rows


def test_a_run_cut_short_resumes_from_its_checkpoint(ran, tmp_path, monkeypatch):
    out, table, _ = ran
    cfg = config_with(asdict(base_config()), out=str(tmp_path / "baseline" / "seed0"), seed=0,
                      steps=STEPS)

    def cut(record):                 # as a lost session: after step 5 (checkpoint of step 4)
        if record.get("step") == 5 and "lr" in record:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        real_train(cfg, on_log=cut, progress=False)
    assert load_checkpoint(tmp_path / "baseline" / "seed0" / "checkpoint.pt")["step"] == 4
    calls = counting(monkeypatch)
    half = compare(base_config(), {}, [0], steps=STEPS, out=tmp_path, progress=False)
    assert calls == [(cfg.out, True)]
    assert load_checkpoint(tmp_path / "baseline" / "seed0" / "checkpoint.pt")["step"] == STEPS
    assert_same_weights(weights(tmp_path / "baseline" / "seed0" / "checkpoint.pt"),
                        weights(out / "baseline" / "seed0" / "checkpoint.pt"))
    assert half.row("baseline")["values"] == table.row("baseline")["values"][:1]
    saved = json.loads((tmp_path / "baseline" / "seed0" / "result.json").read_text())
    assert saved["map50"] == half.row("baseline")["values"][0]


@pytest.mark.parametrize("switches, seeds, message", [
    ({"x": {"model": {"boxloss": "giou"}}}, [0], r"switch 'x': unknown setting model 'boxloss'"),
    ({"x": {"lrate": 0.1}}, [0], r"switch 'x': unknown setting 'lrate'"),
    ({"x": {"eval": {"nms": 0.5}}}, [0], r"switch 'x': unknown setting eval 'nms'"),
    ({"x": {"seed": 3}}, [0], r"unknown setting 'seed'; a switch sets TrainConfig fields other"),
    ({"x": {"model": {"norm": "layer"}}}, [0], r"norm='layer': choose one of"),
    ({"x": {"eval": {"centerness_from": "box"}}}, [0], r"centerness_from='box': choose one of"),
    ({"x": {"model": "giou"}}, [0], r"switch 'x': give a dict of settings"),
    ({"x": {}}, [0], r"switch 'x' changes nothing"),
    ({"baseline": {"model": {"norm": "none"}}}, [0], r"switch 'baseline': name it"),
    ({"a/b": {"model": {"norm": "none"}}}, [0], r"switch 'a/b': name it"),
    ({}, [], r"seeds=\[\]: give a list of at least one seed"),
    ({}, [0, 0], r"seeds=\[0, 0\] repeat a seed"),
    ({}, [-1], r"seed=-1: must be a whole number >= 0")])
def test_bad_input_is_one_clear_value_error(tmp_path, switches, seeds, message):
    with pytest.raises(ValueError, match=message) as error:
        compare(base_config(), switches, seeds, steps=STEPS, out=tmp_path / "runs")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "runs").exists()            # refused before any run


def test_the_verdict_rule_on_both_sides_of_its_threshold():
    base = [0.40, 0.42, 0.44]                          # std 0.02: noise at least 0.04
    assert summarize([0.45, 0.47, 0.49], base)["verdict"] == "beyond noise"     # +0.05
    assert summarize([0.35, 0.37, 0.39], base)["verdict"] == "beyond noise"     # -0.05
    assert summarize([0.43, 0.45, 0.47], base)["verdict"] == "within noise"     # +0.03
    assert summarize([0.39, 0.39, 0.39], base)["verdict"] == "within noise"     # -0.03
    noisy = summarize([0.30, 0.50, 0.70], base)        # +0.08, but a switch std of 0.2
    assert noisy["noise"] == pytest.approx(0.4) and noisy["verdict"] == "within noise"
    assert verdict(0.04, 0.04) == "within noise" and verdict(0.0401, 0.04) == "beyond noise"
    one = summarize([0.9], [0.1])
    assert one["std"] is None and one["verdict"] == "one seed: no noise estimate"


# ------------------------------------------------------------------ detect's scoring options

def random_outputs(seed=0, batch=2, size=64, classes=3):
    gen = torch.Generator().manual_seed(seed)
    locations = FCOS(classes).grid(size, size)
    counts = [len(p) for p in locations]
    return {"cls_logits": [torch.randn(batch, n, classes, generator=gen) for n in counts],
            "box_deltas": [torch.rand(batch, n, 4, generator=gen) * 3 for n in counts],
            "centerness": [torch.randn(batch, n, generator=gen) for n in counts],
            "locations": locations, "strides": [8, 16, 32]}


def test_detect_by_default_scores_as_before_bit_for_bit():
    # detect_plain (untouched) is the reference of today's ranking: sqrt(cls * ctr)
    outputs = random_outputs()
    for kwargs in ({}, {"centerness_from": "head", "sqrt_score": True}):
        found = detect(outputs, 64, score_thresh=0.2, **kwargs)
        for i, one in enumerate(found):
            plain = detect_plain(*[[t[i] for t in outputs[k]] for k in
                                   ("cls_logits", "box_deltas", "centerness")],
                                 outputs["locations"], outputs["strides"], (64, 64),
                                 score_thresh=0.2)
            assert len(plain[0]) > 20
            for got, want in zip((one["boxes"], one["scores"], one["labels"]), plain):
                assert torch.equal(got, want)


def test_detect_ranks_by_the_centerness_of_the_predicted_box():
    outputs = random_outputs(seed=1)
    found = detect(outputs, 64, score_thresh=0.0, topk_candidates=10_000,
                   detections_per_img=10_000, centerness_from="regression",
                   nms=lambda boxes, scores, groups, iou: torch.argsort(scores, descending=True))
    ctr = torch.cat([box_centerness(d[0]) for d in outputs["box_deltas"]])
    cls = torch.cat([torch.sigmoid(c[0]) for c in outputs["cls_logits"]])
    want = torch.sqrt(cls * ctr[:, None]).flatten().sort(descending=True).values
    torch.testing.assert_close(found[0]["scores"], want)
    default = detect(outputs, 64, score_thresh=0.0, detections_per_img=1000)
    assert not torch.equal(default[0]["scores"], detect(
        outputs, 64, score_thresh=0.0, detections_per_img=1000,
        centerness_from="regression")[0]["scores"])


def test_without_the_root_the_ranking_stays_and_only_the_threshold_bites():
    outputs = random_outputs(seed=2)
    rooted = detect(outputs, 64, score_thresh=0.0)
    product = detect(outputs, 64, score_thresh=0.0, sqrt_score=False)
    for a, b in zip(rooted, product):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["labels"], b["labels"])
        torch.testing.assert_close(b["scores"], a["scores"] ** 2)
    cut = detect(outputs, 64, score_thresh=0.3, detections_per_img=10_000, sqrt_score=False)
    kept = detect(outputs, 64, score_thresh=0.3, detections_per_img=10_000)
    assert sum(len(d["boxes"]) for d in cut) < sum(len(d["boxes"]) for d in kept)


def test_box_centerness_matches_the_training_target_and_survives_empty_boxes():
    ltrb = torch.rand(50, 4) * 10 + 0.1
    torch.testing.assert_close(box_centerness(ltrb), centerness_target(ltrb))
    flat = box_centerness(torch.tensor([[0.0, 0, 0, 0], [0.0, 2, 0, 2], [-1.0, 1, 1, 1]]))
    assert flat.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="centerness_from='learned': choose one of"):
        detect(random_outputs(), 64, centerness_from="learned")
