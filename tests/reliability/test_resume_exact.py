"""A run interrupted between checkpoints and resumed writes exactly the metrics of an
uninterrupted run, for both trainers, when the evaluation and checkpoint cadences do not
align (the resumed run must carry the training-loss sums of a partial window). Both tasks
run in the one loop, so the interruption is injected there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import PARETO_TINY, TINY, interrupt_after

# evaluations every 3 steps, checkpoints every 2: a checkpoint at step 4 falls inside the
# window of the step-6 evaluation
CADENCE = [
    "--set",
    "train.eval_every=3",
    "--set",
    "train.checkpoint_every=2",
    "--set",
    "train.keep_checkpoints=3",
]


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("trainer", ["two-tower", "pareto"])
def test_interrupted_and_resumed_metrics_are_identical(tmp_path: Path, monkeypatch, trainer):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY if trainer == "two-tower" else PARETO_TINY)
    prefix = ["train"] if trainer == "two-tower" else ["pareto", "train"]
    steps = ["--set", "train.steps=9"]

    def args(out: Path, *extra: str) -> list[str]:
        return [*prefix, str(cfg), "--out", str(out), "--no-progress", *CADENCE, *steps, *extra]

    assert main(args(tmp_path / "full")) == 0
    # interrupted right after the step-6 evaluation, before its checkpoint: the resume
    # starts from step 4, inside the window of the step-6 evaluation (steps 4-6)
    part = tmp_path / "part"
    interrupt_after(monkeypatch, 6)
    assert main(args(part)) == 130
    monkeypatch.undo()
    assert (part / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    assert main(args(part, "--resume")) == 0
    full, resumed = _lines(tmp_path / "full" / "metrics.jsonl"), _lines(part / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [r["step"] for r in full]
    assert resumed == full
