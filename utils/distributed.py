"""Process-group helpers: one process needs no group; torchrun's env vars start NCCL (GPU) or gloo (CPU)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger("lsta.distributed")


@dataclass
class DistInfo:
    """This process's place: rank, world size, local rank and torch device."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that logs and saves."""
        return self.rank == 0


def init_distributed(device: str, device_id: int = 0) -> DistInfo:
    """Join torchrun's process group when WORLD_SIZE > 1; pick this rank's device.

    One process uses GPU `device_id` (or the index in `device`, e.g. cuda:1); torchrun's ranks use
    their LOCAL_RANK. More ranks on a machine than it has GPUs share them round-robin (useful when
    decoding and writing, not the GPU, limit an evaluation); NCCL takes one GPU per rank, so such
    ranks talk over gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    backend = "gloo"
    if use_cuda:
        gpus = torch.cuda.device_count()
        index = local_rank % gpus if world_size > 1 else torch.device(device).index
        index = device_id if index is None else index
        torch.cuda.set_device(index)
        torch_device = torch.device("cuda", index)
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        backend = "gloo" if local_world_size > gpus else "nccl"
        if local_world_size > gpus and world_size > 1 and rank == 0:
            log.warning(f"{local_world_size} processes share this machine's {gpus} GPU(s); "
                        f"they communicate over gloo, as NCCL takes one GPU per process")
    else:
        torch_device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    return DistInfo(rank, world_size, local_rank, torch_device)


def all_true(flag: bool, info: DistInfo) -> bool:
    """True when `flag` holds on every rank (a no-op for one process)."""
    if info.world_size == 1:
        return flag
    t = torch.tensor([1 if flag else 0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def any_true(flag: bool, info: DistInfo) -> bool:
    """True when `flag` holds on some rank."""
    return not all_true(not flag, info)


def gather_objects(obj: object, info: DistInfo) -> list:
    """`obj` of every rank, in rank order (a one-element list for one process)."""
    if info.world_size == 1:
        return [obj]
    gathered = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def ranks_in_sync(model: torch.nn.Module, info: DistInfo) -> bool:
    """Whether every rank holds bitwise the same parameters (compares rank 0's copy on each rank)."""
    if info.world_size == 1:
        return True
    same = True
    for p in model.parameters():
        reference = p.detach().clone()
        dist.broadcast(reference, src=0)
        same &= torch.equal(reference, p.detach())
    return all_true(same, info)


def cleanup() -> None:
    """Leave the process group, if any."""
    if dist.is_initialized():
        dist.destroy_process_group()
