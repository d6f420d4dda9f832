"""The multimodal task under `torchrun --nproc_per_node=2 -m curatorch pareto train` (gloo
on CPU): it trains in the one loop like the contrastive task, rank 0 writes, and a resumed
two-process run equals an uninterrupted one."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.distributed.helpers import torchrun
from tests.helpers import PARETO_TINY


def _torchrun(cfg: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return torchrun("pareto", "train", str(cfg), "--out", str(out), "--no-progress", *extra)


KEEP = ("--set", "train.keep_checkpoints=3")


def _records(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("torchrun-pareto")
    cfg = tmp / "pareto.toml"
    cfg.write_text(PARETO_TINY)
    run = tmp / "run"
    proc = _torchrun(cfg, run, *KEEP)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, run, proc


def test_two_process_pareto_trains_and_rank0_writes(two_process_run):
    _cfg, run, proc = two_process_run
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1  # only rank 0 prints the summary
    summary = json.loads(lines[-1])
    assert summary["world_size"] == 2 and summary["step"] == 12
    assert summary["task"] == "multimodal" and summary["method"] == "mmpareto"
    assert [r["step"] for r in _records(run)] == [6, 12]
    assert summary["test_acc"] > 0.1  # 10 classes: better than chance after 12 steps
    state = json.loads((run / "checkpoints" / "step_00000012" / "state.json").read_text())
    assert state["world_size"] == 2


def test_two_process_pareto_resume_equals_uninterrupted(two_process_run, tmp_path):
    cfg, run, _ = two_process_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    # go back to the step-4 checkpoint, as if the job had been killed after it
    for step in (8, 12):
        shutil.rmtree(copy / "checkpoints" / f"step_{step:08d}")
    (copy / "checkpoints" / "latest").unlink(missing_ok=True)
    proc = _torchrun(cfg, copy, *KEEP, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _records(copy) == _records(run)
    diags = (copy / "diagnostics.jsonl").read_text()
    assert diags == (run / "diagnostics.jsonl").read_text()


def test_pareto_resume_with_other_process_count_is_refused(two_process_run, tmp_path, capsys):
    """The multimodal task's global batch does not depend on W, but its integrated update
    does (each rank integrates its own share): refused like the contrastive task."""
    from curatorch.cli import main

    cfg, run, _ = two_process_run
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(["pareto", "train", str(cfg), "--out", str(copy), *KEEP, "--resume",
                 "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "written by 2 process(es), this run has 1" in err[0], err
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
