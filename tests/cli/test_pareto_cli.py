"""``curatorch pareto train`` / ``compare`` end to end on a tiny config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from curatorch.cli import main
from tests.helpers import last_json


def test_train_is_deterministic_and_resumes(pareto_cfg_file: Path, tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["pareto", "train", str(pareto_cfg_file), "--out", str(a), "--no-progress"]) == 0
    sa = last_json(capsys.readouterr().out)
    assert (a / "diagnostics.jsonl").exists() and (a / "checkpoints").is_dir()
    assert "cos/gray" in json.loads((a / "diagnostics.jsonl").read_text().splitlines()[0])
    # a run interrupted after its step-8 checkpoint, resumed, gives the same result
    args = ["pareto", "train", str(pareto_cfg_file), "--out", str(b), "--no-progress"]
    keep = ["--set", "train.keep_checkpoints=2"]
    assert main([*args, *keep]) == 0
    shutil.rmtree(b / "checkpoints" / "step_00000012")
    (b / "checkpoints" / "latest").write_text("step_00000008\n")
    capsys.readouterr()
    assert main([*args, *keep, "--resume"]) == 0
    sb = last_json(capsys.readouterr().out)
    for key in ("test_acc", "test_acc/gray", "test_acc/colour"):
        assert sa[key] == sb[key]
    # the folder holds a run: refused without --resume/--overwrite (exit 2)
    assert main(args) == 2
    assert main([*args, "--set", "pareto.method=nash"]) == 2


def test_compare_writes_report_plot_and_json(pareto_cfg_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cmp"
    assert (
        main(["pareto", "compare", str(pareto_cfg_file), "--out", str(out), "--no-progress"]) == 0
    )
    res = last_json(capsys.readouterr().out)
    assert {"uniform/test_acc", "mmpareto/test_acc", "alone/gray"} <= set(res)
    assert (out / "report.md").read_text().startswith("# MMPareto comparison")
    assert (out / "cos.png").stat().st_size > 1000
