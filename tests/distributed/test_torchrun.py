"""End to end: `torchrun --nproc_per_node=2 -m curatorch train` (gloo on CPU), and resume."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.distributed.helpers import torchrun
from tests.helpers import TINY

# tests.helpers.TINY as two-process JEST: evaluations and checkpoints every 2 steps
JEST = [
    "train.eval_every=2",
    "train.keep_checkpoints=3",
    "strategy.name=jest",
    "strategy.chunks=4",
    "strategy.reference=curated",
    "strategy.reference_steps=4",
]
VOLATILE = {"wall_s", "run"}


def _torchrun(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    sets = [x for o in JEST for x in ("--set", o)]
    return torchrun("train", str(cfg), "--out", str(out), "--no-progress", *sets, *extra)


def _records(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in VOLATILE} for x in lines]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun")
    cfg = tmp / "jest.toml"
    cfg.write_text(TINY)
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


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_resume_with_other_process_count_is_refused(two_process_run, tmp_path, capsys):
    from curatorch.cli import main

    cfg, run, _ = two_process_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = _tree(copy)
    sets = [x for o in JEST for x in ("--set", o)]
    sets += ["--set", "train.steps=8"]  # an allowed difference: config.json would be rewritten
    capsys.readouterr()
    code = main(["train", str(cfg), "--out", str(copy), "--resume", "--no-progress", *sets])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [
        f"curatorch: error: cannot resume {copy}: checkpoint step_00000006 was written by 2 "
        f"process(es), this run has 1; resume it with --nproc_per_node=2 (checkpoints are "
        f"not resharded), or start a new --out"
    ]
    assert _tree(copy) == before  # nothing rewritten, nothing truncated


def test_single_process_checkpoint_is_refused_under_torchrun(tmp_path, capsys):
    from curatorch.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress"]) == 0
    before = _tree(run)
    proc = torchrun("train", str(cfg), "--out", str(run), "--resume", "--no-progress")
    line = (
        f"curatorch: error: cannot resume {run}: checkpoint step_00000006 was written by 1 "
        f"process(es), this run has 2; resume it with --nproc_per_node=1"
    )
    # torchrun's own code is 1; the ranks exit with 2 (the agent may SIGTERM the slower
    # one once the first has exited)
    assert proc.returncode == 1
    assert 1 <= proc.stderr.count(line) <= 2, proc.stderr
    assert "exitcode  : 2" in proc.stderr.split("Root Cause")[-1], proc.stderr
    assert _tree(run) == before
