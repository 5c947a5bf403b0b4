"""Training on several processes (several GPUs) with the engine PyTorch ships, and the sampler.

``torchrun --nproc_per_node=N -m fcos_lib train ...`` starts N copies of the trainer and sets
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` for each.
:func:`init_distributed` reads them and joins the group (NCCL between GPUs, gloo on CPUs);
``DistributedDataParallel`` then averages the gradients after every backward pass, and
:class:`StepBatchSampler` gives every process its own share of each epoch. Only rank 0 logs
and writes checkpoints.

Without those variables (a plain ``python`` run, a notebook) everything here is a no-op:
one process, rank 0 of 1.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Args:
        device_type: ``"cuda"`` (NCCL backend, one GPU per process) or anything else (gloo).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return info


def shutdown_distributed() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one process (every process gets the answer)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    """Wait for every process (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


class StepBatchSampler(Sampler[list[int]]):
    """Endless batches of indices, reshuffled every epoch, that can start at any step.

    Epoch ``e``'s order is a permutation drawn from ``seed`` and ``e`` alone, so the batch of
    step ``s`` is the same whether the run started at 0 or resumed at ``s``: that is what
    makes a resumed run equal an uninterrupted one. Each process takes every
    ``world_size``-th index of the permutation (the same count on every process), then cuts
    it into batches; the last, incomplete batch of an epoch is dropped.

    Args:
        size: the dataset's length.
        batch_size: images per batch on this process.
        seed: the run's seed.
        rank, world_size: this process and how many there are.
        start_step: the number of batches already consumed (when resuming).
    """

    def __init__(self, size: int, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, start_step: int = 0):
        self.per_rank = size // world_size
        if self.per_rank < batch_size:
            raise ValueError(f"{size} images cannot fill a batch of {batch_size} on each of "
                             f"{world_size} processes: use a smaller batch or more images")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.batches_per_epoch = self.per_rank // batch_size

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """Epoch ``epoch``'s batches for this process."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.size, generator=generator)
        mine = order[self.rank::self.world_size][:self.per_rank]
        usable = self.batches_per_epoch * self.batch_size
        return mine[:usable].view(-1, self.batch_size).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = divmod(self.start_step, self.batches_per_epoch)
        while True:
            yield from self.epoch_batches(epoch)[skip:]
            epoch, skip = epoch + 1, 0
