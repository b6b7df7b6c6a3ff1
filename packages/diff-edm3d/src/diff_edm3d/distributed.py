"""Data-parallel training helpers: torchrun environment, process group, DDP wrapping.

Launch: ``torchrun --standalone --nproc-per-node=2 -m diff_edm3d train ...``. The backend is gloo
on CPU and nccl on CUDA. The model code itself makes no distributed calls: DDP all-reduces
(averages) the gradients, every rank then applies the same clipping threshold, optimizer step and
EMA update, so parameters and EMA stay bitwise identical across ranks. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistributedContext",
    "any_rank",
    "barrier",
    "broadcast_object",
    "init_distributed",
    "is_main_process",
    "unwrap",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | torch.device = "cpu") -> DistributedContext:
    """Initialise the default process group from torchrun's variables (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a single process without them.

    The backend is nccl when `device` is CUDA, else gloo. Re-entrant: an initialised group is
    reused.
    """
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", dist.get_rank())),
            dist.get_backend(),
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistributedContext(rank, world, local_rank, backend)


def wrap_ddp(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Wrap in `DistributedDataParallel` when a process group is initialised (else unchanged)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return model
    device = torch.device(device)
    ids = [device.index if device.index is not None else 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: object, src: int = 0) -> object:
    """Broadcast a picklable object from `src` (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(flag: bool, device: str | torch.device = "cpu") -> bool:
    """True on every rank when `flag` is true on any rank (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return bool(flag)
    t = torch.tensor([int(bool(flag))], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
