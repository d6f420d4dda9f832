"""``curatorch pareto train`` / ``compare`` end to end on a tiny config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from curatorch.cli import main

TINY = """
[data]
dataset = "coloured_gray_digits"
[model]
hidden = 16
embed_dim = 8
[optim]
lr = 0.05
warmup_steps = 2
[train]
steps = 12
batch_size = 32
eval_every = 6
checkpoint_every = 4
keep_checkpoints = 1
diag_every = 2
threads = 1
[pareto]
method = "mmpareto"
[compare]
methods = ["uniform", "mmpareto"]
seeds = [0, 1]
alone = ["gray"]
"""


@pytest.fixture
def cfg_file(tmp_path: Path) -> Path:
    f = tmp_path / "p.toml"
    f.write_text(TINY)
    return f


def _last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_train_is_deterministic_and_resumes(cfg_file: Path, tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["pareto", "train", str(cfg_file), "--out", str(a), "--no-progress"]) == 0
    sa = _last_json(capsys.readouterr().out)
    assert (a / "diagnostics.jsonl").exists() and (a / "checkpoints").is_dir()
    assert "cos/gray" in json.loads((a / "diagnostics.jsonl").read_text().splitlines()[0])
    # a run interrupted after its step-8 checkpoint, resumed, gives the same result
    args = ["pareto", "train", str(cfg_file), "--out", str(b), "--no-progress"]
    keep = ["--set", "train.keep_checkpoints=2"]
    assert main([*args, *keep]) == 0
    shutil.rmtree(b / "checkpoints" / "step_00000012")
    (b / "checkpoints" / "latest").write_text("step_00000008\n")
    capsys.readouterr()
    assert main([*args, *keep, "--resume"]) == 0
    sb = _last_json(capsys.readouterr().out)
    for key in ("test_acc", "test_acc/gray", "test_acc/colour"):
        assert sa[key] == sb[key]
    # the folder holds a run: refused without --resume/--overwrite (exit 2)
    assert main(args) == 2
    assert main([*args, "--set", "pareto.method=nash"]) == 2


def test_compare_writes_report_plot_and_json(cfg_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    assert main(["pareto", "compare", str(cfg_file), "--out", str(out), "--no-progress"]) == 0
    res = _last_json(capsys.readouterr().out)
    assert {"uniform/test_acc", "mmpareto/test_acc", "alone/gray"} <= set(res)
    assert (out / "report.md").read_text().startswith("# MMPareto comparison")
    assert (out / "cos.png").stat().st_size > 1000
