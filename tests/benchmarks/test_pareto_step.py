"""``benchmarks/pareto_step.py`` times every requested method on the multimodal and the
multi-task configs (tiny sizes; the figures themselves are the benchmark's business)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("config", "parts"),
    [("multitask", ["digit", "parity", "ink"]), ("pareto_early", ["gray", "colour"])],
)
def test_times_each_method_of_each_task_kind(tmp_path: Path, config: str, parts) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    small = ["--set", "train.batch_size=8"]
    if config == "pareto_early":
        small += ["--set", "model.depth=1", "--set", "model.embed_dim=8"]
        small += ["--set", "model.num_heads=2", "--set", "model.hidden=8"]
    args = ["--config", config, "--blocks", "1", "--steps", "2", "--warmup", "1", "--json"]
    args += ["--methods", "uniform,pcgrad,mmpareto", *small]
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pareto_step.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["ratios"]) == {"uniform", "pcgrad", "mmpareto"}
    assert result["ratios"]["uniform"] == 1.0 and result["step_time_ratio"] > 0
    assert result["modalities_or_tasks"] == parts and result["timed_steps"] == 2
