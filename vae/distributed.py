"""DistributedDataParallel under torchrun: who this process is, and the few collectives the trainer needs.

Each rank takes a slice of every global batch (the same seeded permutation on every rank),
and the reparameterization noise is drawn for the global batch and sliced the same way, so
N processes take the same steps as one process with the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's rows of a global batch (contiguous, sizes differing by at most one)."""
        return batch.tensor_split(self.world_size)[self.rank] if self.enabled else batch

    def loss_scale(self, global_size: int, local_size: int) -> float:
        """Makes DDP's mean of per-rank gradients equal the gradient of the global batch mean."""
        return local_size * self.world_size / global_size if self.enabled else 1.0

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks (a no-op for one process)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank if it is true on any (so all ranks stop at the same step)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_environment() -> Distributed:
    """The rank and world size torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
    return Distributed(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_process_group(context: Distributed, device: str) -> None:
    """gloo on CPU, nccl on GPU; nothing for one process."""
    if context.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")


def destroy_process_group(context: Distributed) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
