"""The prepared GPU suite runs end to end at tiny sizes on CPU (``--dry-run``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_prints_every_section(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--dry-run", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["dry_run"] is True and result["device"] == "cpu"
    for name in ("selection", "throughput", "jest_step", "pareto_step"):
        assert "error" not in result[name], (name, result[name])
    sel = result["selection"]
    assert sel["highest"]["kernel"] == sel["bf16"]["kernel"] == "compiled"
    assert sel["eager_fp32"]["kernel"] == "eager" and sel["compile_failures"] == {}
    for precision in ("highest", "bf16", "eager_fp32"):
        assert sel[precision]["joint_s"] > 0 and sel[precision]["matmul_bound_s"] > 0
        assert sel[precision]["learnability"] > sel["random_learnability"] + 1.0
    # the fused fp32 kernel chooses the eager kernel's batch (same seed, same scores)
    assert sel["highest"]["learnability"] == pytest.approx(sel["eager_fp32"]["learnability"])
    assert result["throughput"]["tiny"]["train_images_per_s"] > 0
    for strategy in ("jest", "flexi-jest"):
        ratios = result["jest_step"][strategy]
        assert ratios["flop_ratio"] > 1 and ratios["wall_ratio"] > 0
    assert result["pareto_step"]["step_time_ratio"] > 0


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--sections", "nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "--sections: unknown ['nope']" in out.stderr
