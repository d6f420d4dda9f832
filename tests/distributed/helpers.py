"""Run a function in W gloo processes on CPU (for collective tests), or the command line
under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, fn: Callable[..., Any], world_size: int, init: str, out: str, args: tuple):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        torch.set_num_threads(1)
        result = fn(rank, world_size, *args)
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], world_size: int, tmp_path: Path, *args: Any) -> list[Any]:
    """``fn(rank, world_size, *args)`` in ``world_size`` processes; their return values."""
    init = f"file://{tmp_path / 'pg-init'}"
    mp.spawn(_entry, args=(fn, world_size, init, str(tmp_path), args), nprocs=world_size)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


def torchrun(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m curatorch ARGS`` (gloo on CPU, one
    thread per process), its output captured."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "curatorch",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
