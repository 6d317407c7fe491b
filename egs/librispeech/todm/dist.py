"""torch.distributed for training: torchrun environment, gloo on CPU, nccl on GPU.

Why not DistributedDataParallel's reducer: a sandwich step runs several forward/backward
passes, each over a different subset of the weights (a 2-layer subnet never touches layer 5).
DDP's bucketed reducer expects one backward per forward and step; with ``no_sync`` plus
``find_unused_parameters`` it works but is fragile and hard to read. Instead every rank
accumulates its gradients locally and we all-reduce them once before the optimizer step,
together with a "was this weight used at all" flag so that a weight no subnet touched keeps
``grad = None`` on every rank, exactly as in single-process training.
"""

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_dist() -> DistInfo:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return DistInfo(rank, local_rank, world_size)


def cleanup_dist(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()


def broadcast_parameters(model: nn.Module, info: DistInfo) -> None:
    """Make every rank start from rank 0's weights and buffers."""
    if info.world_size == 1:
        return
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def all_reduce_gradients(model: nn.Module, info: DistInfo) -> None:
    """Average gradients over ranks in one flat buffer; unused-everywhere weights keep grad None."""
    if info.world_size == 1:
        return
    params = list(model.parameters())
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                      for p in params])
    dist.all_reduce(used)
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for p, u in zip(params, used.tolist()):
        n = p.numel()
        p.grad = flat[offset: offset + n].view_as(p).to(p.dtype) if u > 0 else None
        offset += n


def all_reduce_sum(value: float, info: DistInfo, device: torch.device) -> float:
    if info.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def parameter_digest(model: nn.Module) -> str:
    """sha1 of every parameter's bytes: equal on all ranks iff the replicas are in sync."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
