"""Draw the sample photo that ships with fcos_lib: ``fcos_lib/assets/shapes_photo.jpg``.

Two scenes of the shapes dataset's validation split (seed 0, 240 pixels, scenes 3 and 8) side
by side: a 480 x 240 picture, twice as wide as high, so that a square crop would cut half of
it away. :func:`scenes` gives its objects' true boxes, which the tests use.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcos_lib.data import ShapesDataset  # noqa: E402
from fcos_lib.photo import sample_photo  # noqa: E402

SIZE, SCENES = 240, (3, 8)


def scenes() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The photo's pixels uint8 (3, 240, 480) and its objects: ``boxes`` (N, 4), ``labels``."""
    data = ShapesDataset("val", image_size=SIZE)
    images, boxes, labels = [], [], []
    for k, index in enumerate(SCENES):
        image, target = data.load(index)
        images.append(image)
        boxes.append(target["boxes"] + torch.tensor([k * SIZE, 0, k * SIZE, 0]))
        labels.append(target["labels"])
    return torch.cat(images, dim=2), {"boxes": torch.cat(boxes), "labels": torch.cat(labels)}


def main() -> None:
    from PIL import Image

    pixels, target = scenes()
    path = sample_photo()
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(path, quality=92)
    print(f"{path}: {pixels.shape[2]} x {pixels.shape[1]} pixels, {len(target['labels'])} "
          f"objects, {path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
