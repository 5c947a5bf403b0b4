"""Decode once, train many times: a cache of decoded, resized images.

A dataset of this library splits a sample in two: ``load(i)`` reads, decodes, resizes and
crops image ``i`` into a uint8 tensor (3, H, W) with its target (the slow part: JPEG decoding),
and ``finish(image, target)`` turns that into the float, normalized sample (the fast part).
:class:`DecodedCache` runs ``load`` once for every image, in parallel worker processes, keeps
the uint8 pixels in one flat buffer (a quarter of the memory of float32), and afterwards only
runs ``finish``. With ``directory`` the buffer also goes to disk (written atomically, then read
back as a memory map), so the next run, or the next Colab session with a Drive folder, skips
decoding too. A cache on disk remembers the size and modification time of every file it was
made from (the dataset's ``sources()``): when one changes (an annotation corrected, an image
replaced), or the cache is found half written, it is decoded again, and says so.

One flat buffer rather than a list of tensors: the DataLoader's worker processes share it
without copying when they are forked (Linux's default): they inherit the shared memory, or
the page cache of the memory map. Spawned workers (the default on macOS and Windows) receive
the in-memory buffer as a handle to the same shared memory, but torch copies a memory-mapped
buffer whole into shared memory first, so a cache on disk then costs its size in RAM once.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fcos_lib.files import atomic_file, remove_leftovers


class TwoStageDataset(Protocol):
    """What :class:`DecodedCache` needs from a dataset."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """The slow, deterministic stage: uint8 (3, H, W) pixels at their final size."""

    def finish(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """The fast stage: random flip on training splits, normalization."""

    # Optional: ``sources() -> list[Path]``, the files ``load`` reads (see :func:`fingerprint`).


class _Loads(Dataset):
    """``dataset.load`` as a map-style dataset, so that a DataLoader can run it in workers."""

    def __init__(self, dataset: TwoStageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        return self.dataset.load(index)


def cache_key(dataset: TwoStageDataset, key: str | None = None) -> str:
    """A file-name-safe name for a dataset's decoded images on disk.

    Args:
        dataset: the dataset; its ``cache_key`` attribute is used when ``key`` is None. It
            must name everything that changes the pixels (source, split, image size).
        key: overrides ``dataset.cache_key``.
    """
    key = key if key is not None else getattr(dataset, "cache_key", None)
    if key is None:
        raise ValueError(f"{type(dataset).__name__} has no cache_key attribute: pass key=... "
                         "(a name for its split and image size) to cache it on disk")
    digest = hashlib.sha1(str(key).encode()).hexdigest()[:12]
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(key))[:48]
    return f"{readable}-{digest}"


def fingerprint(dataset: TwoStageDataset) -> str | None:
    """A digest of the size and modification time of every file of ``dataset.sources()``
    (None for a dataset without files, whose ``cache_key`` names all it is made from)."""
    sources = getattr(dataset, "sources", None)
    if sources is None:
        return None
    digest = hashlib.sha1()
    for path in sources():
        try:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())
    return digest.hexdigest()


class DecodedCache(Dataset):
    """A dataset that serves ``finish(load(i))`` with ``load`` paid once per image.

    Args:
        dataset: has ``load(i) -> (uint8 (3, H, W), target)`` and
            ``finish(uint8 (3, H, W), target) -> (float32 (3, H, W), target)``.
        directory: None to keep the cache in memory only; else a folder where it is stored
            (``<key>.u8`` pixels, ``<key>.pt`` shapes and targets) and reused by later runs.
        num_workers: processes that decode while filling (default: every core, up to 8).
        progress: show a progress bar while filling.
        key: the cache's name on disk (default: ``dataset.cache_key``).

    Every attribute the wrapped dataset has (``class_names``, ...) reads through.
    """

    def __init__(self, dataset: TwoStageDataset, directory: str | os.PathLike | None = None,
                 num_workers: int | None = None, progress: bool = True, key: str | None = None):
        self.dataset = dataset
        self.path = None if directory is None else Path(directory) / cache_key(dataset, key)
        made_from = fingerprint(dataset) if self.path is not None else None
        found = _reuse(self.path, made_from) if self.path is not None else None
        if found is not None:
            pixels, meta = found
        else:
            pixels, meta = _fill(dataset, num_workers, progress)
            if self.path is not None:
                _write(self.path, pixels, {**meta, "fingerprint": made_from})
                pixels, meta = _read(self.path)  # serve from the map: no second copy in RAM
        self.pixels = pixels                                   # (total,) uint8
        self.shapes: Tensor = meta["shapes"]                   # (N, 3) int64
        self.offsets: Tensor = meta["offsets"]                 # (N,) int64
        self.targets: list[dict[str, Any]] = meta["targets"]

    def __len__(self) -> int:
        return len(self.targets)

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet: avoid recursing while unpickling
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def load(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """The cached ``dataset.load(index)``: uint8 (3, H, W) and its target."""
        c, h, w = self.shapes[index].tolist()
        start = int(self.offsets[index])
        image = self.pixels[start:start + c * h * w].view(c, h, w)
        target = {k: v.clone() if isinstance(v, Tensor) else v
                  for k, v in self.targets[index].items()}
        return image, target

    def finish(self, image: Tensor, target: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """The wrapped dataset's own ``finish`` (flip, normalize): not cached, it is random."""
        return self.dataset.finish(image, target)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        return self.finish(*self.load(index))


def _fill(dataset: TwoStageDataset, num_workers: int | None,
          progress: bool) -> tuple[Tensor, dict[str, Any]]:
    """Run ``dataset.load`` on every index (in worker processes) into one flat buffer."""
    n = len(dataset)
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if n >= 64 else 0
    # Its own generator: a loader draws a seed when it starts, and from the global RNG that
    # would make a run's initial weights depend on whether its cache was already on disk.
    loader = DataLoader(_Loads(dataset), batch_size=None, num_workers=num_workers,
                        prefetch_factor=8 if num_workers else None,
                        generator=torch.Generator().manual_seed(0))
    chunks, shapes, targets = [], [], []
    bar = tqdm(loader, total=n, desc="decoding images once", unit="img",
               disable=not progress or n == 0, leave=False)
    for image, target in bar:
        if image.dtype != torch.uint8 or image.dim() != 3:
            raise TypeError(f"{type(dataset).__name__}.load must return a uint8 (3, H, W) image, "
                            f"got {image.dtype} {tuple(image.shape)}")
        chunks.append(image.reshape(-1))
        shapes.append(image.shape)
        # Copies in this process's memory: a tensor received from a worker holds a file
        # descriptor for as long as it lives, and thousands of them exhaust the limit.
        targets.append({k: v.clone() if isinstance(v, Tensor) else v for k, v in target.items()})
    sizes = torch.tensor([c.numel() for c in chunks], dtype=torch.int64)
    offsets = torch.cumsum(sizes, 0) - sizes
    pixels = torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.uint8)
    meta = {"shapes": torch.tensor(shapes, dtype=torch.int64).reshape(-1, 3),
            "offsets": offsets, "targets": targets}
    return pixels.share_memory_(), meta


def _complete(path: Path) -> bool:
    return path.with_suffix(".u8").is_file() and path.with_suffix(".pt").is_file()


def _reuse(path: Path, made_from: str | None) -> tuple[Tensor, dict[str, Any]] | None:
    """The cache at ``path`` if it is whole and made from the same files, else None (saying
    why it will be decoded again)."""
    if not _complete(path):
        return None
    try:
        pixels, meta = _read(path)
    except Exception as err:  # noqa: BLE001 - a cache that does not read is rebuilt
        print(f"the image cache {path}.u8 is damaged ({err}): decoding the images again")
        return None
    if meta.get("fingerprint") != made_from:
        print(f"the image cache {path}.u8 was made from files that have changed since (an "
              "image or annotation replaced, added or removed): decoding the images again")
        return None
    return pixels, meta


def _write(path: Path, pixels: Tensor, meta: dict[str, Any]) -> None:
    """Write pixels then metadata, each to a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path.parent, f".{path.name}.*.*.tmp")      # of a killed write
    with atomic_file(path.with_suffix(".u8")) as f:
        f.write(pixels.numpy().tobytes())
    with atomic_file(path.with_suffix(".pt")) as f:
        torch.save(meta, f)


def _read(path: Path) -> tuple[Tensor, dict[str, Any]]:
    meta = torch.load(path.with_suffix(".pt"), weights_only=True)
    total = int((meta["shapes"].prod(dim=1)).sum()) if len(meta["shapes"]) else 0
    if path.with_suffix(".u8").stat().st_size != total:
        raise RuntimeError(f"{path}.u8 does not match its index {path}.pt")
    if not total:
        return torch.empty(0, dtype=torch.uint8), meta
    # Copy-on-write map: writable for torch (no warning), the file itself is never changed.
    return torch.from_numpy(np.memmap(path.with_suffix(".u8"), dtype=np.uint8, mode="c")), meta
