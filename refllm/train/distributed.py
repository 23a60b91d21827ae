"""Data parallelism through PyTorch: ``torchrun`` starts the processes, DDP averages gradients.

Nothing here communicates by hand: `setup` reads the variables torchrun sets (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and calls
``torch.distributed.init_process_group`` (gloo on CPU, NCCL on CUDA); `wrap` puts the model in
``torch.nn.parallel.DistributedDataParallel``, whose backward all-reduces (averages) the gradients.
The only other collectives are ``all_reduce`` sums of logged losses and of the validation loss.

Single node, 2 processes::

    torchrun --standalone --nproc_per_node=2 -m refllm train --config run.json

Several nodes (run on every node; the endpoint is one node's address)::

    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d \\
        --rdzv-endpoint=HOST:29500 --rdzv-id=myrun -m refllm train --config run.json
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank r of w (r = 0, w = 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes records and checkpoints; the others only train."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, dist: Dist) -> torch.device:
    """"auto" -> cuda when available; under DDP on CUDA, the process's local GPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but torch.cuda.is_available() is False; "
                             "use device='cpu' or 'auto'")
        return torch.device("cuda", dist.local_rank)
    return torch.device("cpu")


def setup(device: str) -> tuple[Dist, torch.device]:
    """Join the process group when torchrun started us (WORLD_SIZE > 1); else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device, Dist())
    dist = Dist(rank=int(os.environ["RANK"]), world_size=world,
                local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    dev = resolve_device(device, dist)
    if not torch.distributed.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group(backend=backend)
    return dist, dev


def check_divisible(batch_size: int, micro_batch_size: int, dist: Dist) -> int:
    """Micro-batches per process and step: batch_size / (w · micro_batch_size), which must be whole.

    Process r takes rows ``[r b/w, (r+1) b/w)`` of the global batch, ``micro_batch_size`` rows per
    forward pass.
    """
    share = micro_batch_size * dist.world_size
    if batch_size % share:
        raise ValueError(f"batch_size={batch_size} must be a multiple of micro_batch_size="
                         f"{micro_batch_size} x {dist.world_size} process(es) = {share}")
    return batch_size // share


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` when several processes train; else ``model``."""
    if not dist.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(x: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Σ over processes (in place, through torch.distributed); ``x`` itself with one process."""
    if dist.active:
        torch.distributed.all_reduce(x, op=torch.distributed.ReduceOp.SUM)
    return x


def teardown(dist: Dist) -> None:
    if dist.active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
