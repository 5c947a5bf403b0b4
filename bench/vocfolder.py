"""A VOC-format folder written from a description: the one writer of the tests' hand-made
tree (``tests/vocfake.py``) and of the benchmarks' random ones (``bench_loader``,
``gpu_check``).

An object is ``(name, xmin, ymin, xmax, ymax, difficult, truncated)`` in VOC's own
coordinates (1-based, inclusive), as an annotation file writes them.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

from fcos_lib.data.voc import VOC_CLASSES

# The most common image sizes of VOC 2007 (width, height): 500 pixels on the longer side.
VOC_SIZES = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 332), (500, 400)]
VocObject = tuple[str, int, int, int, int, int, int]


def annotation_xml(image_id: str, width: int, height: int, objects: list[VocObject]) -> str:
    """One ``Annotations/<id>.xml`` as VOC writes it."""
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
             "<segmented>0</segmented>"]
    for name, xmin, ymin, xmax, ymax, difficult, truncated in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose>"
                     f"<truncated>{truncated}</truncated><difficult>{difficult}</difficult>"
                     f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
                     f"<ymax>{ymax}</ymax></bndbox></object>")
    return "\n".join(parts + ["</annotation>"])


def write_voc_folder(folder: Path, images: dict[str, tuple[Image.Image, list[VocObject]]],
                     splits: dict[str, list[str]]) -> Path:
    """Write ``folder`` (a ``VOC2007`` folder): each image as ``JPEGImages/<id>.jpg`` with its
    annotation, and each split's ids in ``ImageSets/Main/<split>.txt``. Returns ``folder``."""
    folder = Path(folder)
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (image, objects) in images.items():
        image.save(folder / "JPEGImages" / f"{image_id}.jpg", quality=90)
        (folder / "Annotations" / f"{image_id}.xml").write_text(
            annotation_xml(image_id, image.width, image.height, objects))
    for split, ids in splits.items():
        (folder / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    return folder


def random_voc_images(count: int, seed: int = 0, sizes: list[tuple[int, int]] = VOC_SIZES
                      ) -> dict[str, tuple[Image.Image, list[VocObject]]]:
    """``count`` images of VOC's sizes, a noisy background (JPEG decoding costs what a photo
    costs) with one to five filled boxes of random VOC classes, ids ``000000`` on."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for i in range(count):
        width, height = sizes[i % len(sizes)]
        noise = torch.randint(0, 256, (height // 4, width // 4, 3), dtype=torch.uint8,
                              generator=gen)
        image = Image.fromarray(noise.numpy()).resize((width, height), Image.BILINEAR)
        draw, objects = ImageDraw.Draw(image), []
        for _ in range(int(torch.randint(1, 6, (1,), generator=gen))):
            w, h = (torch.rand(2, generator=gen) * torch.tensor([width, height]) * 0.6 + 20).int()
            x = int(torch.randint(1, max(2, width - int(w)), (1,), generator=gen))
            y = int(torch.randint(1, max(2, height - int(h)), (1,), generator=gen))
            box = (x, y, min(width, x + int(w)), min(height, y + int(h)))
            draw.rectangle(box, fill=tuple(torch.randint(0, 256, (3,), generator=gen).tolist()))
            name = VOC_CLASSES[int(torch.randint(0, len(VOC_CLASSES), (1,), generator=gen))]
            objects.append((name, *box, 0, 0))
        out[f"{i:06d}"] = (image, objects)
    return out
