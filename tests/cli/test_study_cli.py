"""``curatorch study reference``: a tiny study end to end (two seeds), its printed verdicts
and last JSON line, reuse on a second call, and bad input as exit 2 writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curatorch.cli import main
from tests.helpers import STUDY_TINY


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_study_reference_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "study.toml"
    cfg.write_text(STUDY_TINY)
    out = tmp_path / "out"
    assert main(["study", "reference", str(cfg), "--out", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    last = json.loads(lines[-1])
    assert set(last) == {"findings", "wall_s"}
    assert set(last["findings"]) == {"curation", "training", "filter"}
    for part in ("curation", "training", "filter"):
        assert f"{part}: {last['findings'][part]['verdict']}" in lines
    assert f"report: {out / 'study.md'} (comparison: {out / 'report.md'})" in lines
    study = json.loads((out / "study.json").read_text())
    assert study["seeds"] == [0, 1]
    assert all(r["gain_se"] > 0 for r in study["curation"])  # two seeds: an error estimate
    assert study["command"].startswith("curatorch study reference")
    # a second call reuses every run: the same findings
    assert main(["study", "reference", str(cfg), "--out", str(out), "--no-progress"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["findings"] == last["findings"]


@pytest.mark.parametrize(
    ("text", "override", "needle"),
    [
        (STUDY_TINY.split("[study]")[0], [], "needs a [study] table"),
        (STUDY_TINY, ["--set", "study.bogus=1"], "unknown config key study.bogus"),
        (
            STUDY_TINY.replace('"jest-weak", "jest"]', '"jest-weak", "nope"]'),
            [],
            "unknown strategy",
        ),
    ],
)
def test_bad_study_config_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, override: list, needle: str
) -> None:
    cfg = tmp_path / "study.toml"
    cfg.write_text(text)
    out = tmp_path / "out"
    assert main(["study", "reference", str(cfg), "--out", str(out), *override]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_compare_on_a_study_config_points_to_the_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "study.toml"
    cfg.write_text(STUDY_TINY)
    assert main(["compare", str(cfg), "--out", str(tmp_path / "out")]) == 2
    assert "run `curatorch study reference CONFIG`" in capsys.readouterr().err
