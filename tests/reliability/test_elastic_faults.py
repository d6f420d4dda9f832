"""Faults under torchrun (``scripts/elastic_faults.py``): a killed rank, a killed and
re-launched "node" (two agents on this machine), a stopped rank; each job resumes to the
uninterrupted run's metrics and weights, and the stopped rank is named within the timeout.

The default test is the short CI version (one fault of each kind on a 200-step run);
``-m slow`` runs the acceptance version (11 rank kills, 3 node kills, 2 hangs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import run_script


def _elastic(tmp_path: Path, *args: str, timeout: float) -> dict:
    return run_script("elastic_faults.py", tmp_path, *args, timeout=timeout)


def _check(summary: dict, faults: dict[str, int]) -> None:
    assert {k: j["faults_planned"] for k, j in summary["jobs"].items()} == faults
    for name, job in summary["jobs"].items():
        assert job["problems"] == [], (name, job["problems"], job["events"])
        assert job["exit_codes"] and set(job["exit_codes"]) == {0}, name
        assert job["compare"]["identical"] and job["compare"]["weights_identical"], name
        for event in job["events"]:
            if event["event"] == "hang":
                assert event["named_rank"] == event["stopped_rank"] == 1
                assert event["stopped_after_s"] <= event["timeout_s"] + 5
                assert f"rank 1 of 2 did not answer at step {event['step']}" in event["line"]
    assert summary["ok"]


def test_elastic_faults_short(tmp_path: Path) -> None:
    """A rank kill and a stopped rank (standalone), a node kill and re-launch (two
    agents)."""
    summary = _elastic(
        tmp_path,
        *("--rank-kills", "1", "--agent-rank-kills", "0", "--node-kills", "1"),
        *("--hangs", "1", "--resume-stopped", "--collective-timeout", "5"),
        *("--steps", "200", "--checkpoint-every", "10", "--max-delay", "4", "--seed", "1"),
        timeout=600,
    )
    _check(summary, {"standalone": 2, "two-agents": 1})


@pytest.mark.slow
def test_elastic_faults_full(tmp_path: Path) -> None:
    """The acceptance run of docs/reliability.md."""
    summary = _elastic(
        tmp_path,
        *("--rank-kills", "7", "--agent-rank-kills", "4", "--node-kills", "3"),
        *("--hangs", "2", "--steps", "1000", "--seed", "0"),
        timeout=2400,
    )
    _check(summary, {"standalone": 9, "two-agents": 7})
