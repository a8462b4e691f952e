"""The same commands on several devices: ``torch.distributed`` under ``torchrun``.

``torchrun --nproc-per-node N -m optodesign train CONFIG --out RUN`` starts N copies of the
command; each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment. This
module is the only place that knows: it joins the process group (NCCL on CUDA, gloo on CPU),
tells each rank its device, splits work by rank and gathers results in a fixed order, so a
single process (no ``torchrun``) is simply world size 1 and nothing else changes. There is no
home-made cluster layer: launching, rendezvous and collectives are torch's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["setup", "world_size", "rank", "is_main", "barrier", "shard", "gather_ordered",
           "all_reduce_sum", "broadcast_object", "shutdown"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _launched() -> bool:
    """Whether torchrun (or another launcher setting the env:// variables) started us."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> str:
    """Join the process group when launched by torchrun, and return this rank's device.

    Args:
        device: ``cpu`` or ``cuda`` (from ``--device``, already resolved).

    Returns:
        ``cpu``, ``cuda`` (single process) or ``cuda:LOCAL_RANK`` (one GPU per rank).
    """
    if not _launched():
        return device
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
        log.info("rank %d of %d joined (%s)", rank(), world_size(), backend)
    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.current_device()}"
    return device


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Rank 0 writes files and prints; the others compute."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def shard(items: Sequence[T]) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item from ``rank`` (round robin,
    so ranks get equal shares of chunked work whatever its order)."""
    return list(items[rank()::world_size()])


def gather_ordered(mine: dict[int, Any]) -> dict[int, Any]:
    """Merge each rank's ``{index: result}`` into one dict on every rank.

    Results are keyed by a global index, so the merge is the same for any world size.
    """
    if world_size() == 1:
        return dict(mine)
    parts: list[dict[int, Any] | None] = [None] * world_size()
    dist.all_gather_object(parts, mine)
    merged: dict[int, Any] = {}
    for part in parts:
        assert part is not None
        merged.update(part)
    return dict(sorted(merged.items()))


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of a small CPU tensor over ranks (running statistics)."""
    if world_size() == 1:
        return values
    t = values.cuda() if dist.get_backend() == "nccl" else values.clone()
    dist.all_reduce(t)
    return t.cpu()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
