"""End to end: `torchrun --nproc_per_node=2 -m curatorch train` (gloo on CPU), and resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = """
[data]
world = "shapes"
raw_size = 1500
eval_size = 240
retrieval_size = 120
probe_shots = 2
seed = 0

[model]
size = "tiny"

[optim]
lr = 2e-3
warmup_steps = 2

[train]
steps = 6
batch_size = 32
eval_every = 2
checkpoint_every = 2
keep_checkpoints = 3
seed = 0

[strategy]
name = "jest"
chunks = 4
reference = "curated"
reference_steps = 4
"""

VOLATILE = {"wall_s", "run"}


def _torchrun(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "curatorch",
        "train",
        str(cfg),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in VOLATILE} for x in lines]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    cfg = tmp / "jest.toml"
    cfg.write_text(CONFIG)
    run = tmp / "run"
    proc = _torchrun(cfg, run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, run, proc


def test_two_process_jest_trains_and_rank0_writes(two_process_run):
    _cfg, run, proc = two_process_run
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["step"] == 6
    assert len(proc.stdout.strip().splitlines()) == 1  # only rank 0 prints the summary
    records = _records(run)
    assert [r["step"] for r in records] == [0, 2, 4, 6]
    assert records[-1]["examples_seen"] == 6 * 32  # the global batch
    assert records[-1]["flops_learner_scoring"] > 0
    assert (run / "reference-cache" / "meta.json").is_file()
    state = json.loads((run / "checkpoints" / "step_00000006" / "state.json").read_text())
    assert state["world_size"] == 2


def test_two_process_resume_equals_uninterrupted(two_process_run, tmp_path):
    cfg, run, _ = two_process_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    # go back to the step-2 checkpoint, as if the job had been killed after it
    for step in (4, 6):
        shutil.rmtree(copy / "checkpoints" / f"step_{step:08d}")
    (copy / "checkpoints" / "latest").unlink(missing_ok=True)
    proc = _torchrun(cfg, copy, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _records(copy) == _records(run)


def test_resume_with_other_process_count_is_refused(two_process_run, tmp_path):
    from curatorch.cli import main

    cfg, run, _ = two_process_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    code = main(["train", str(cfg), "--out", str(copy), "--resume", "--no-progress"])
    assert code == 2
