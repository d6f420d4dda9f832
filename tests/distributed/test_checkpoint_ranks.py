"""Resuming a two-process run (gloo on CPU): every rank restores the checkpoint rank 0
found, even where another rank's listing of the folder is stale (network storage), and a
rank that cannot load it stops every rank with its message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.distributed.helpers import run_ranks
from tests.helpers import TINY


def _ranks(rank: int, world_size: int, root: Path) -> dict[str, Any]:
    from curatorch.train import CheckpointError, ContrastiveTask, Trainer, load_config, train_task
    from curatorch.train import checkpoint as ckpt_module
    from curatorch.train import loop as loop_module
    from curatorch.train.distributed import DistContext

    dist = DistContext(rank=rank, world_size=world_size)
    cfg = root / "tiny.toml"
    train_task(ContrastiveTask(load_config(cfg)), root / "run", progress=False, dist=dist)
    stale = root / "run" / "checkpoints" / "step_00000004"
    if rank == 1:  # this rank's view of the folder lags: it sees step 4 as the latest
        for module in (ckpt_module, loop_module):
            module.latest_checkpoint = lambda run_dir: stale  # type: ignore[assignment]
    task = ContrastiveTask(load_config(cfg, ["train.steps=8"]))
    trainer = Trainer.start(task, root / "run", resume=True, progress=False, dist=dist)
    weights = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    out: dict[str, Any] = {"step": trainer.prog.step, "weights": weights}
    trainer.close()
    task.close()
    # a checkpoint file that only rank 1 cannot read: both ranks stop, naming rank 1
    if rank == 1:
        real = ckpt_module.load_checkpoint

        def unreadable(path: Any) -> Any:
            raise CheckpointError(f"checkpoint file {path}/model.safetensors is unreadable")

        ckpt_module.load_checkpoint = unreadable  # type: ignore[assignment]
    task = ContrastiveTask(load_config(cfg, ["train.steps=8"]))
    try:
        Trainer.start(task, root / "run", resume=True, progress=False, dist=dist)
        out["error"] = None
    except CheckpointError as exc:
        out["error"] = str(exc)
    finally:
        task.close()
        if rank == 1:
            ckpt_module.load_checkpoint = real
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ckpt-ranks")
    (root / "tiny.toml").write_text(TINY)
    return run_ranks(_ranks, 2, root, root)


def test_every_rank_restores_the_step_rank0_found(ranks):
    assert [r["step"] for r in ranks] == [6, 6]  # rank 1 alone would have taken step 4
    assert torch.equal(ranks[0]["weights"], ranks[1]["weights"])


def test_a_rank_that_cannot_load_the_checkpoint_stops_every_rank(ranks):
    errors = [r["error"] for r in ranks]
    assert errors[0] == errors[1], errors
    assert errors[0].startswith("rank 1 of 2: checkpoint file "), errors[0]
    assert "step_00000006/model.safetensors is unreadable" in errors[0]
