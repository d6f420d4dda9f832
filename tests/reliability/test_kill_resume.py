"""SIGKILL and resume (``scripts/kill_resume.py``): after every kill the latest checkpoint
loads; the resumed run's metrics equal an uninterrupted run's line by line.

The default test is the short CI version (4 kills of JEST on a 30-step run, its reference
and cache built first); ``-m slow`` runs the full one (20 kills each for iid, jest,
flexi-jest and pareto).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import PARETO_TINY, TINY
from tests.reliability.helpers import run_script


def _kill_resume(tmp_path: Path, *args: str, timeout: float) -> dict:
    return run_script("kill_resume.py", tmp_path, *args, timeout=timeout)


def _check(summary: dict, strategies: list[str], kills: int) -> None:
    assert sorted(summary["strategies"]) == sorted(strategies)
    for name, r in summary["strategies"].items():
        assert r["problems"] == [], (name, r["problems"])
        assert r["kills"] >= kills, name
        assert r["all_checkpoints_loadable"], name
        assert r["identical_metrics"], (name, r["differences"])
        assert r["resume_on_missing_dir_fresh"] and r["resume_on_empty_dir_fresh"], name
    assert summary["ok"]


def test_kill_resume_short(tmp_path: Path) -> None:
    """4 kills of JEST (the reference and its cache built first): seed 6 aims the first and
    the third at checkpoint writes, the second and the fourth at random delays. JEST's
    state is IID's (the one epoch sampler draws its super-batches) and more (the reference
    cache, the selection's generator); IID's SIGKILLs run under ``-m slow``, its exact
    resume in ``test_resume_exact`` and ``test_resume_on_a_missing_or_empty_folder``."""
    summary = _kill_resume(
        tmp_path, "--strategies", "jest", "--kills", "4", "--steps", "30", "--seed", "6",
        timeout=300,
    )  # fmt: skip
    _check(summary, ["jest"], 4)


@pytest.mark.slow
def test_kill_resume_full(tmp_path: Path) -> None:
    """At least 20 kills each for every strategy, many during checkpoint writes."""
    strategies = ["iid", "jest", "flexi-jest", "pareto"]
    summary = _kill_resume(
        tmp_path, "--strategies", ",".join(strategies), "--kills", "20", timeout=3000
    )
    _check(summary, strategies, 20)
    for name, r in summary["strategies"].items():
        assert r["kills_during_checkpoint_write"] >= 1, name


# ------------------------------------------------------------- where a run starts from


@pytest.mark.parametrize("trainer", ["two-tower", "pareto"])
@pytest.mark.parametrize("folder", ["missing", "empty"])
def test_resume_on_a_missing_or_empty_folder_starts_fresh(tmp_path, trainer, folder) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY if trainer == "two-tower" else PARETO_TINY)
    prefix = ["train"] if trainer == "two-tower" else ["pareto", "train"]
    out = tmp_path / "run"
    if folder == "empty":
        out.mkdir()
    assert main([*prefix, str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == (6 if trainer == "two-tower" else 12)


@pytest.mark.parametrize("leftover", [".curatorch-write-test", ".config.json.k2j4xq.tmp"])
def test_resume_after_a_kill_during_folder_creation_starts_fresh(tmp_path, leftover) -> None:
    """What a SIGKILL inside ``prepare_run_dir`` leaves (measured by
    ``scripts/kill_resume.py --early-kills``): ``--resume`` should start the run."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / leftover).write_text("o")
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert not (out / leftover).exists()
    assert (out / "config.json").is_file() and (out / "metrics.jsonl").is_file()


def test_leftovers_beside_foreign_files_are_still_refused(tmp_path) -> None:
    """Only a folder holding nothing but start leftovers counts as empty; a user's file
    beside them keeps the folder refused and untouched."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY)
    out = tmp_path / "run"
    out.mkdir()
    (out / ".curatorch-write-test").write_text("o")
    (out / "notes.txt").write_text("mine")
    assert main(["train", str(cfg), "--out", str(out), "--resume", "--no-progress"]) == 2
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / ".curatorch-write-test").exists()
