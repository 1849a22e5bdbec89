"""PyTorch DDP through ``torchrun``: set-up, rank helpers, reductions. No home-made distribution.

``torchrun --nproc_per_node=N -m atrous train ...`` (or ``--nnodes`` for several machines)
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads them and
starts the process group (NCCL on GPUs, gloo on CPU). Without them, everything runs in one
process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when launched by torchrun; one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_enabled():
        dist.barrier()


def all_reduce_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over ranks (used to agree on stopping)."""
    if not is_enabled():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if not is_enabled():
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / dist.get_world_size()


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    DDP keeps parameters identical, but each rank updates its own running statistics
    from its own shard. Before evaluating (and saving), all ranks take rank 0's, so the
    sharded evaluation measures one model: the one that is saved.
    """
    if not is_enabled():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value: T, src: int = 0) -> T:
    """Rank ``src``'s ``value`` on every rank (a picklable object; one decision for all)."""
    if not is_enabled():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src)
    return holder[0]


def all_gather_object(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` without DDP)."""
    if not is_enabled():
        return [value]
    gathered: list[T | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
