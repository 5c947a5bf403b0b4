"""Images per second that the ``voc2007-tiny`` data pipeline delivers, with and without the
decoded cache.

The folder: 400 generated 500x375 JPEGs (VOC's typical size) with 1-6 boxes each, in VOC format,
read by :class:`fcos_lib.data.VOCDataset` with the preset's transform (shorter side to 224, center
crop, random flip, normalize), batched by ``collate`` in a ``DataLoader`` of 16 images.

- *uncached*: every batch decodes its JPEGs again (PIL), in 0 and in 2 worker processes;
- *cached*: :class:`fcos_lib.data.cache.DecodedCache` decoded them once (timed separately), and
  a batch only flips and normalizes its ``uint8`` pixels.

Run: ``python -m bench.bench_loader``. Goal, a ratio so that it means the same on any machine:
the cache delivers at least 5x the images/s of the best uncached loader in the same run (about
11x measured on an idle 2-core machine: ~2945 against ~270 images/s; run it on an idle machine,
since other processes slow the one-process cached loader more than the 2-worker one). Uncached
loading is about as fast as a Colab GPU trains this model (200-400 images/s), so without the
cache the GPU would wait for data.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.vocfolder import random_voc_images, write_voc_folder
from fcos_lib.data import VOCDataset, collate
from fcos_lib.data.cache import DecodedCache

IMAGES, WIDTH, HEIGHT, BATCH = 400, 500, 375, 16
GOAL_RATIO = 5.0  # cached images/s over the best uncached loader's


def make_folder(root: Path, count: int = IMAGES, seed: int = 0) -> Path:
    """A VOC-format folder of ``count`` noisy JPEGs of 500x375 px with random boxes."""
    images = random_voc_images(count, seed, sizes=[(WIDTH, HEIGHT)])
    return write_voc_folder(root, images, {"train": list(images)})


def images_per_second(dataset, num_workers: int, epochs: int = 2) -> float:
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate,
                        num_workers=num_workers, persistent_workers=num_workers > 0)
    next(iter(loader))  # start the workers before timing
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _ in loader:
            seen += len(images)
    return seen / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = make_folder(Path(tmp))
        data = VOCDataset(root, "train", image_size=224, train=True)
        rates = {f"uncached, {w} workers": images_per_second(data, w) for w in (0, 2)}
        start = time.perf_counter()
        cached = DecodedCache(data, num_workers=2, progress=False)
        fill = time.perf_counter() - start
        rates["cached, 0 workers"] = images_per_second(cached, 0, epochs=5)
    print(f"{IMAGES} JPEGs of {WIDTH}x{HEIGHT} px -> 224 px, batches of {BATCH}, "
          f"{torch.get_num_threads()} threads")
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:8.0f} images/s")
    print(f"  filling the cache once: {fill:.1f} s ({IMAGES / fill:.0f} images/s)")
    ratio = rates["cached, 0 workers"] / max(rates["uncached, 0 workers"],
                                             rates["uncached, 2 workers"])
    print(f"cached / best uncached: x{ratio:.1f}; "
          f"goal >= x{GOAL_RATIO:.0f}: {'met' if ratio >= GOAL_RATIO else 'NOT met'}")


if __name__ == "__main__":
    main()
