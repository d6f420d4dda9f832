"""Process-group helpers for data-parallel training under ``torchrun``.

The training loop takes a :class:`DistContext` argument (``rank``, ``world_size``); the
default is one process and no collectives. :func:`init_from_env` reads the variables
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and initialises the default
process group: NCCL when the run's device is CUDA, gloo otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_from_env", "is_distributed_env"]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel job.

    Attributes:
        rank: this process's index in ``[0, world_size)``.
        world_size: number of processes ``W``.
        local_rank: index on this node (picks the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, checkpoints and progress bars."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, value: float) -> float:
        """Sum of a Python float over ranks (float64)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def all_gather_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenation over ranks, in rank order, of equally shaped tensors (no gradient).

        ``[n, ...]`` on each rank -> ``[W * n, ...]``. Runs on the tensor's device (gloo
        takes CPU tensors, NCCL CUDA tensors).
        """
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def first_failure(self, message: str | None) -> tuple[int, str] | None:
        """Agree on a failure (collective): ``(rank, message)`` of the lowest rank that
        passed a message, on every rank, or ``None`` when none did.

        A rank that stops alone leaves the others waiting in their next collective; each
        rank calls this instead, with its error message or ``None``, and all of them stop
        (or go on) together. One float all-reduce when nothing failed.
        """
        if not self.enabled:
            return None if message is None else (self.rank, message)
        if self.all_reduce_sum(0.0 if message is None else 1.0) == 0.0:
            return None
        messages = self.all_gather_object(message)
        rank = next(r for r, m in enumerate(messages) if m is not None)
        return rank, messages[rank]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def is_distributed_env() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str = "cpu") -> DistContext:
    """The context ``torchrun`` describes; initialises the default process group if needed.

    Args:
        device: the run's ``train.device``; ``cuda`` selects NCCL and binds this process to
            GPU ``LOCAL_RANK``, anything else gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank)
    if ctx.enabled and not dist.is_initialized():
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return ctx
