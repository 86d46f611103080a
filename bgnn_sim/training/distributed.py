"""Multi-GPU / multi-node training through torchrun and DistributedDataParallel.

`torchrun --nproc_per_node K -m bgnn_cli train ... --distributed` starts K processes with RANK,
WORLD_SIZE and LOCAL_RANK set; each trains on its own windows and DDP averages the gradients.
On CPU (tests, laptops) the gloo backend is used, on GPUs NCCL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from bgnn_sim.device import resolve_device
from bgnn_sim.errors import BgnnError


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank among world_size processes, on `device`."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def start(device: str, distributed: bool) -> Context:
    """Join the torchrun process group when `distributed`; one process otherwise."""
    if not distributed:
        return Context(device=resolve_device(device))
    if "RANK" not in os.environ:
        raise BgnnError("--distributed needs torchrun (e.g. torchrun --nproc_per_node 2 ...)")
    base = resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if base.type == "cuda":
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    dist.init_process_group("nccl" if base.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), base)


def stop(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
