"""Data-parallel training across processes (``torchrun --nproc_per_node N``), and the 1-process case.

Every rank draws and masks the same global batch (same seeds) and keeps its own slice, so a run
on N processes trains on exactly the batches a 1-process run does; gradients are averaged by
PyTorch DDP. gloo on CPU, NCCL on GPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: its rank among ``world_size`` processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            torch_dist.barrier()

    def slice_of(self, count: int) -> slice:
        """This rank's part of ``count`` items (the global batch); ``count`` must divide evenly."""
        if count % self.world_size:
            raise ValueError(f"batch size {count} does not split over {self.world_size} processes; "
                             f"use a multiple of {self.world_size}")
        share = count // self.world_size
        return slice(self.rank * share, (self.rank + 1) * share)


def setup_distributed() -> Distributed:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1); else one process.

    Returns the rank, world size and the device this rank trains on.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available()
    if world_size <= 1:
        return Distributed(device=torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return Distributed(rank=torch_dist.get_rank(), world_size=world_size, local_rank=local_rank, device=device)


def teardown_distributed(dist: Distributed) -> None:
    if dist.enabled and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
