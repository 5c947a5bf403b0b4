"""bench/bench_demo.py: each lever of the demo's recipe trains and is measured."""
from __future__ import annotations

import pytest
from tinyrun import TINY_RUN

from bench import bench_demo


def test_a_variant_trains_its_recipe_and_reports_both_maps(tmp_path, monkeypatch):
    seen = []
    real_train = bench_demo.train

    def train(cfg, **kw):
        seen.append(cfg)
        return real_train(cfg, **kw)

    monkeypatch.setattr(bench_demo, "train", train)
    small = {**TINY_RUN, "steps": 3, "dataset_kwargs": {"length": 8}}
    preset, overrides, detect = bench_demo.VARIANTS["+ both, 1000, cosine"]
    r = bench_demo.run(preset, {**small, **overrides}, {"score_thresh": 0.01},
                       out=str(tmp_path / "run"))
    assert seen[0].schedule == "cosine" and seen[0].model["center_sampling_radius"] == 1.5
    assert r["steps"] == 3 and 0 <= r["map_coco"] <= r["map50"] <= 1 and r["seconds"] > 0


def test_an_unknown_variant_is_named(capsys):
    assert bench_demo.main(["demo (lr 0.04)", "no such"]) == 2
    assert "no variant ['no such']" in capsys.readouterr().err


@pytest.mark.parametrize("name", list(bench_demo.VARIANTS))
def test_every_variant_is_a_valid_config(name):
    preset, overrides, _ = bench_demo.VARIANTS[name]
    bench_demo.get_preset(preset, **overrides)      # raises on a bad setting
