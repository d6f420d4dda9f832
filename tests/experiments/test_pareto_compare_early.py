"""``curatorch pareto compare`` on the early-fusion model (shipped ``pareto_early``): the
trunk's conflict rate in the report and its panel in the plot, OGM-GE refused before
anything is trained."""

from __future__ import annotations

from pathlib import Path

from curatorch.cli import main
from tests.experiments.test_pareto_compare3 import SHORT
from tests.helpers import last_json

EARLY = [*SHORT[:-4], "--set", "model.embed_dim=8", "--set", "model.num_heads=2"]
EARLY += ["--set", "model.hidden=16", "--set", "model.depth=1"]


def test_compare_on_early_fusion_reports_the_trunk(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    methods = ["--set", 'compare.methods=["uniform", "mmpareto"]', "--set", "compare.alone=[]"]
    args = ["pareto", "compare", "pareto_early", "--out", "cmp", "--no-progress", *EARLY]
    assert main([*args, *methods]) == 0
    res = last_json(capsys.readouterr().out)
    assert 0.0 <= res["mmpareto/test_acc"] <= 1.0
    report = (tmp_path / "cmp" / "report.md").read_text()
    assert "model: early fusion (patch 4, depth 1" in report
    header = next(line for line in report.splitlines() if line.startswith("| method"))
    assert "conflict rate trunk" in header and "conflict rate gray" in header
    rows = [line for line in report.splitlines() if line.startswith("| mmpareto |")]
    assert len(rows) == 1 and rows[0].count("|") == header.count("|") and " - |" not in rows[0]
    assert (tmp_path / "cmp" / "cos.png").stat().st_size > 0


def test_ogm_ge_on_early_fusion_is_refused_before_training(tmp_path: Path, capsys) -> None:
    methods = ["--set", 'compare.methods=["uniform", "ogm_ge"]']
    out = tmp_path / "cmp"
    args = ["pareto", "compare", "pareto_early", "--out", str(out), "--no-progress", *EARLY]
    assert main([*args, *methods]) == 2
    assert "compare.methods ['ogm_ge'] not available" in capsys.readouterr().err
    assert not out.exists()
