"""``curatorch pareto multitask`` end to end on a few steps of the shipped config (found by
name): the report's tables with every task's column, the plot, summary.json, resume of a
finished comparison, configuration errors before any run, and the report on its own."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.report import multitask_cos_plot, multitask_markdown
from tests.helpers import last_json

# a few steps of the shipped config: enough for every report cell, fast on CPU
SHORT = [
    "--set", "train.steps=6",
    "--set", "train.eval_every=6",
    "--set", "train.checkpoint_every=6",
    "--set", "train.diag_every=2",
    "--set", "train.batch_size=32",
    "--set", "model.hidden=16",
    "--set", "model.embed_dim=8",
    "--set", "compare.seeds=[0]",
    "--set", 'compare.methods=["uniform", "mmpareto"]',
    "--set", 'compare.alone=["ink"]',
]  # fmt: skip
TASKS = ("digit", "parity", "ink")
PAIRS = ("digit~parity", "digit~ink", "parity~ink")


def _table(report: str, first_header: str) -> tuple[str, list[str]]:
    """The header line of the table whose first column is ``first_header``, and its rows."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return lines[start], rows


def test_multitask_by_name_writes_every_table_plot_and_summary(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["pareto", "multitask", "multitask", "--out", "mt", "--no-progress", *SHORT]
    assert main(args) == 0
    res = last_json(capsys.readouterr().out)
    for method in ("uniform", "mmpareto"):
        assert 0.0 <= res[f"{method}/test_acc"] <= 1.0
        assert all(0.0 <= res[f"{method}/test_acc/{t}"] <= 1.0 for t in TASKS)
        assert 0.0 <= res[f"{method}/conflict_rate"] <= 1.0
    assert res["uniform/step_time_ratio"] == 1.0 and res["mmpareto/step_time_ratio"] > 0
    assert "alone/ink" in res and "mmpareto has the best mean acc over tasks" in res["checks"]
    report = (tmp_path / "mt" / "report.md").read_text()
    assert report.startswith("# MMPareto in multi-task learning")
    assert "pixel noise 0.5" in report
    header, rows = _table(report, "method")
    assert header.split(" | ")[1:4] == [f"{t} acc" for t in TASKS] and "mean over tasks" in header
    assert [r.split(" | ")[0] for r in rows] == ["| uniform", "| mmpareto", "| each task alone"]
    assert all(r.count("|") == header.count("|") for r in rows)
    assert "| mmpareto | " in rows[1] and " - " not in rows[1]  # every cell filled
    _, difficulty = _table(report, "task")
    assert [r.split(" | ")[0] for r in difficulty] == [f"| {t}" for t in TASKS]
    assert difficulty[0].endswith("| not run |") and "| ink | 2 |" in difficulty[2]
    conflict_header = next(line for line in report.splitlines() if "conflict rate any" in line)
    assert all(f"conflict rate {p}" in conflict_header for p in PAIRS)
    assert all(f"mean cos {p}" in conflict_header for p in PAIRS)
    assert (tmp_path / "mt" / "cos.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "mt" / "summary.json").read_text())
    assert summary["tasks"] == list(TASKS) and summary["pairs"] == list(PAIRS)
    assert len(summary["methods"]["mmpareto"]["conflict_rate/digit~ink"]) == 1
    # a finished comparison resumed gives the same summary; without a flag it is refused
    assert main([*args, "--resume"]) == 0
    again = last_json(capsys.readouterr().out)
    assert {k: v for k, v in again.items() if "step_time" not in k} == {
        k: v for k, v in res.items() if "step_time" not in k
    }
    assert main(args) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ('data.tasks=["digit", "ink"]', r"compare\.alone names \['parity'\], not among"),
        ("pareto.method=nash", r"pareto\.method must be one of"),
        ("data.pixel_noise=-0.5", r"data\.pixel_noise must be a finite number >= 0"),
        ("compare.bogus=1", r"unknown config key compare\.bogus"),
    ],
)
def test_config_errors_name_the_key_before_any_run(
    tmp_path: Path, capsys, override: str, match: str
) -> None:
    out = tmp_path / "mt"
    args = ["pareto", "multitask", "multitask", "--out", str(out), "--no-progress"]
    assert main([*args, "--set", 'compare.alone=["parity"]', "--set", override]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert not out.exists()


def _result(**change) -> dict:
    """A two-task, one-seed result as ``run_multitask_compare`` stores it."""
    row = {
        "test_acc": [0.75],
        "test_acc/digit": [0.6],
        "test_acc/ink": [0.9],
        "step_time_s": [0.002],
        "step_time_ratio": 1.0,
        "conflict_rate": [0.5],
        "conflict_rate/digit~ink": [0.5],
        "mean_cos/digit~ink": [0.01],
        "runs": [],
    }
    return {
        "data": "noisy_digit_tasks (seed 0)",
        "model": "a shared mlp encoder",
        "seeds": [0],
        "tasks": ["digit", "ink"],
        "pairs": ["digit~ink"],
        "diag_every": 5,
        "task_info": {
            "digit": {"classes": 10, "majority": 0.1},
            "ink": {"classes": 2, "majority": 0.5},
        },
        "methods": {"uniform": row},
        "alone": {},
        "checks": {},
        "cos_plot": None,
        **change,
    }


def test_the_report_on_its_own(tmp_path: Path) -> None:
    text = multitask_markdown(_result())
    assert "one seed, so no spread" in text and "| digit | 10 | 10.00 | not run |" in text
    assert "| uniform | 60.00 | 90.00 | 75.00 | 1.00 |" in text
    assert "| uniform | 0.500 | 0.500 | 0.010 |" in text
    assert "each task alone" not in text and "every 5 steps" in text
    alone = multitask_markdown(_result(alone={"digit": [0.7], "ink": [0.95]}, seeds=[0]))
    assert "| each task alone | 70.00 | 95.00 | 82.50 | - |" in alone
    with pytest.raises(ValueError, match="no task pair"):
        multitask_cos_plot({"uniform": {}}, tmp_path / "cos.png")
    path = multitask_cos_plot(
        {"uniform": {"digit~ink": [(5, 0.2), (10, -0.1)]}}, tmp_path / "c.png"
    )
    assert path.stat().st_size > 1000
