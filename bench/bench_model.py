"""The model: parameter counts and CPU forward time per image of every preset, against
torchvision's FCOS (``fcos_resnet50_fpn``, backbone + FPN + head, no transform) as reference.

The ``"torchvision"`` preset is the same network as the reference (the test suite proves equal
outputs), so its ratio should be close to 1; the other presets' ratios say how much cheaper
they are. Times are medians of interleaved runs, eval mode, no gradients, batch 2, one thread, at the
preset's usual input size and at 512 px; plus the tiny model's training step (forward +
backward, batch 16 at 128 px), the cost that ``make demo`` pays 1500 times.

Run: ``python -m bench.bench_model``. Goals: ``"torchvision"`` within 10% of the reference
(ratio 0.9-1.1); ``"tiny"`` at least 20x cheaper per image than the reference at 512 px.
"""
from __future__ import annotations

import torch
from torchvision.models.detection import fcos_resnet50_fpn

from bench import median_ms
from fcos_lib.config import MODEL_PRESETS as PRESETS
from fcos_lib.model import FCOS

BATCH = 2
SIZES = {"tiny": 128, "course": 224, "paper": 512, "torchvision": 512}


def main() -> None:
    # One thread: on a shared machine, two threads wait on each other and times scatter.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    tv = fcos_resnet50_fpn(weights=None, weights_backbone=None, num_classes=20).eval()
    models = {name: FCOS.from_preset(name, 20).eval() for name in PRESETS}

    def reference(x):
        return tv.head(list(tv.backbone(x).values()))

    print(f"{torch.get_num_threads()} threads, batch {BATCH}, eval, no grad; ms per image (median)")
    print(f"{'preset':12s} {'params (M)':>10s} {'size':>5s} {'ms/img':>8s} {'ref ms':>8s} "
          f"{'ratio':>6s} {'ms/img@512':>10s} {'ratio@512':>9s}")
    big = torch.randn(BATCH, 3, 512, 512)
    with torch.no_grad():
        for name, model in models.items():
            size = SIZES[name]
            x = torch.randn(BATCH, 3, size, size)
            t = median_ms({"ours": lambda m=model, x=x: m(x), "ref": lambda x=x: reference(x),
                           "ours512": lambda m=model: m(big), "ref512": lambda: reference(big)},
                          repeats=3)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{name:12s} {params:10.2f} {size:5d} {t['ours'] / BATCH:8.1f} "
                  f"{t['ref'] / BATCH:8.1f} {t['ours'] / t['ref']:6.3f} "
                  f"{t['ours512'] / BATCH:10.1f} {t['ours512'] / t['ref512']:9.3f}")
    tiny = FCOS(num_classes=6).train()
    x = torch.randn(16, 3, 128, 128)
    targets = [{"boxes": torch.tensor([[10.0, 10, 60, 50], [40, 30, 120, 120]]),
                "labels": torch.tensor([1, 2])}] * 16

    def step():
        tiny.zero_grad()
        tiny(x, targets)["total"].backward()

    t = median_ms({"step": step}, repeats=10)
    print(f"tiny training step (forward + backward, 16 x 128 px): {t['step']:.0f} ms")


if __name__ == "__main__":
    main()
