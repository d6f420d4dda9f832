"""``benchmarks/pareto_step.py`` times every requested method on the multimodal and the
multi-task configs (tiny sizes; the figures themselves are the benchmark's business).

Its ``main`` runs in this process (loaded from the file, as ``test_pinned_records`` loads
``scripts/pin_records.py``); ``test_gpu_suite`` runs the benchmarks from a fresh
interpreter."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "pareto_step_bench", ROOT / "benchmarks" / "pareto_step.py"
)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.fixture(autouse=True)
def _restore_threads():
    # the benchmark sets torch's global thread count (--threads, default 1): put it back
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    ("config", "parts"),
    [("multitask", ["digit", "parity", "ink"]), ("pareto_early", ["gray", "colour"])],
)
def test_times_each_method_of_each_task_kind(config: str, parts, capsys) -> None:
    small = ["--set", "train.batch_size=8"]
    if config == "pareto_early":
        small += ["--set", "model.depth=1", "--set", "model.embed_dim=8"]
        small += ["--set", "model.num_heads=2", "--set", "model.hidden=8"]
    args = ["--config", config, "--blocks", "1", "--steps", "2", "--warmup", "1", "--json"]
    args += ["--methods", "uniform,pcgrad,mmpareto", *small]
    assert bench.main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["ratios"]) == {"uniform", "pcgrad", "mmpareto"}
    assert result["ratios"]["uniform"] == 1.0 and result["step_time_ratio"] > 0
    assert result["modalities_or_tasks"] == parts and result["timed_steps"] == 2
