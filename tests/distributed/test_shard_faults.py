"""Shards that vanish while two gloo processes train on them: skipped and counted on every
rank, the ranks stay in step, the counts in ``metrics.jsonl`` are the sums over ranks;
and a rank whose stream stops stops every rank at the same step with its message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.distributed.helpers import run_ranks

# the 300-pair shapes world as shards of 25; the runs read 4 of them (2 per rank and
# epoch, 50 samples: about 6 steps of the local batch of 8), 18 steps
SMALL = """
[data]
world = "shapes"
raw_size = 300
eval_size = 50
retrieval_size = 50
probe_shots = 1
seed = 0

[model]
size = "tiny"

[train]
steps = 18
batch_size = 16
eval_every = 6
checkpoint_every = 6
seed = 0

[eval]
source = "world"
"""
NAMES = [f"{i:06d}" for i in range(4)]


def _task(root: Path, folder: str) -> Any:
    from curatorch.train import ContrastiveTask, load_config

    pattern = f"{root / folder}/{{{NAMES[0]}..{NAMES[-1]}}}.tar"
    return ContrastiveTask(load_config(root / "small.toml", [f"data.shards='{pattern}'"]))


def _vanish_during_run(rank: int, world_size: int, root: Path) -> dict[str, Any]:
    """Two of the four shards are deleted at the step-6 evaluation (rank 0)."""
    from curatorch.train import train_task
    from curatorch.train.distributed import DistContext

    def on_eval(record: dict[str, Any]) -> None:
        if record["step"] == 6:
            for name in NAMES[1:3]:
                (root / "vanish" / f"{name}.tar").unlink()

    task = _task(root, "vanish")
    dist = DistContext(rank=rank, world_size=world_size)
    summary = train_task(task, root / "run", progress=False, on_eval=on_eval, dist=dist)
    return {"summary": summary, "counts": task.data_counts()}


def _all_vanish(rank: int, world_size: int, root: Path) -> dict[str, Any]:
    """Every shard is deleted at the step-6 evaluation: both ranks must stop, together."""
    from curatorch.train import TrainingError, train_task
    from curatorch.train.distributed import DistContext

    def on_eval(record: dict[str, Any]) -> None:
        if record["step"] == 6:
            for name in NAMES:
                (root / "gone" / f"{name}.tar").unlink()

    dist = DistContext(rank=rank, world_size=world_size)
    agreed = dist.first_failure("rank 1 failed" if rank == 1 else None)
    try:
        train_task(
            _task(root, "gone"), root / "run-gone", progress=False, on_eval=on_eval, dist=dist
        )
    except TrainingError as exc:
        return {"agreed": agreed, "error": str(exc)}
    return {"agreed": agreed, "error": None}


def _both(rank: int, world_size: int, root: Path) -> dict[str, Any]:
    return {
        "vanish": _vanish_during_run(rank, world_size, root),
        **_all_vanish(rank, world_size, root),
    }


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    import shutil

    from curatorch.data import build_world, export_shards
    from curatorch.train import load_config

    root = tmp_path_factory.mktemp("shard-faults")
    (root / "small.toml").write_text(SMALL)
    world = build_world(load_config(root / "small.toml").data)
    export_shards(world.raw, root / "all", samples_per_shard=25)
    for folder in ("vanish", "gone"):
        (root / folder).mkdir()
        for name in NAMES:
            shutil.copy(root / "all" / f"{name}.tar", root / folder / f"{name}.tar")
    return root, run_ranks(_both, 2, root, root)


def test_vanished_shards_are_skipped_counted_and_summed_over_ranks(ranks):
    root, results = ranks
    runs = [r["vanish"] for r in results]
    assert [r["summary"]["step"] for r in runs[:1]] == [18]  # rank 0's summary
    assert runs[1]["summary"]["rank"] == 1  # rank 1 returns without writing
    per_rank = [r["counts"]["skipped_unreadable_shard"] for r in runs]
    assert all(n >= 1 for n in per_rank), per_rank  # every rank came to a vanished shard
    last = [json.loads(x) for x in (root / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["step"] == 18
    for key in ("samples_ok", "samples_skipped", "skipped_unreadable_shard"):
        assert last[f"data_{key}"] == sum(r["counts"][key] for r in runs), key
    assert last["data_samples_skipped"] == last["data_skipped_unreadable_shard"]
    # every rank drew its 8 samples per step: the ranks took the same 18 steps
    assert sum(r["counts"]["samples_ok"] for r in runs) == 18 * 16


def test_a_rank_whose_stream_stops_stops_every_rank_at_the_same_step(ranks):
    _root, results = ranks
    assert [r["agreed"] for r in results] == [(1, "rank 1 failed")] * 2
    errors = [r["error"] for r in results]
    # the same step and message on both (rank 0 alone knows the last checkpoint's path)
    assert errors[0] is not None and errors[1] is not None, errors
    assert errors[0].split(" (last good")[0] == errors[1].split(" (no checkpoint")[0], errors
    assert errors[0].startswith("step ") and "of 2: no usable sample" in errors[0], errors[0]
    assert "\n" not in errors[0]


@pytest.mark.slow
def test_under_torchrun_vanished_shards_are_counted_on_every_rank_and_summed(ranks, tmp_path):
    """The same with ``torchrun --nproc_per_node=2 -m curatorch train``: the shards are
    deleted from the test process once rank 0 wrote the step-6 record."""
    import shutil
    import threading
    import time

    from tests.distributed.helpers import torchrun

    root, _ = ranks
    shards = tmp_path / "shards"
    shutil.copytree(root / "all", shards)
    run = tmp_path / "run"
    done = threading.Event()

    def delete_at_step_6() -> None:
        while not done.is_set():
            rows = (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists() else ""
            if '"step": 6' in rows:  # one of 4: a rank can meet it at most twice in a row
                (shards / f"{NAMES[1]}.tar").unlink()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=delete_at_step_6)
    thread.start()
    pattern = f"{shards}/{{{NAMES[0]}..{NAMES[-1]}}}.tar"
    try:
        proc = torchrun("train", str(root / "small.toml"), "--out", str(run), "--no-progress",
                        "--set", f"data.shards='{pattern}'", "--set", "train.steps=30")  # fmt: skip
    finally:
        done.set()
        thread.join()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (shards / f"{NAMES[1]}.tar").exists()
    last = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    state = json.loads((run / "checkpoints" / "step_00000030" / "state.json").read_text())
    per_rank = [r["counts"] for r in state["sampler"]["ranks"]]
    assert last["step"] == 30 and last["data_skipped_unreadable_shard"] >= 1
    for key in ("samples_ok", "samples_skipped", "skipped_unreadable_shard"):
        assert last[f"data_{key}"] == sum(c[key] for c in per_rank), key
    assert [c["samples_ok"] for c in per_rank] == [30 * 8, 30 * 8]  # the same steps
    assert "unreadable_shard" in proc.stderr
