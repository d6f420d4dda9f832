"""End to end through ``curatorch.cli.main`` on a tiny built-in world."""

from __future__ import annotations

from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import interrupt_after, last_json, records


def test_train_writes_metrics_checkpoints_and_summary(
    tiny_cfg_file: Path, tmp_path: Path, capsys
) -> None:
    run = tmp_path / "run"
    assert main(["train", str(tiny_cfg_file), "--out", str(run), "--no-progress"]) == 0
    summary = last_json(capsys.readouterr().out)
    recs = records(run)
    assert [r["step"] for r in recs] == [0, 3, 6]
    required = {
        "step",
        "examples_seen",
        "flops",
        "zeroshot_acc",
        "zeroshot_chance",
        "fewshot_acc",
        "i2t_r1",
        "t2i_r1",
        "mean_score",
    }
    for r in recs:
        assert required <= set(r)
        assert r["mean_score"] == pytest.approx(
            (r["zeroshot_acc"] + r["fewshot_acc"] + r["i2t_r1"] + r["t2i_r1"]) / 4
        )
    assert recs[-1]["examples_seen"] == 6 * 32
    assert recs[2]["flops"] == 2 * recs[1]["flops"] > 0
    assert summary["step"] == 6 and summary["mean_score"] == recs[-1]["mean_score"]
    assert (run / "checkpoints" / "step_00000006" / "model.safetensors").is_file()
    assert (run / "summary.json").is_file()


def test_same_seed_same_result(tiny_cfg_file: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert (
            main(["train", str(tiny_cfg_file), "--out", str(tmp_path / name), "--no-progress"]) == 0
        )
    assert records(tmp_path / "a") == records(tmp_path / "b")


def test_resume_matches_uninterrupted(tiny_cfg_file: Path, tmp_path: Path, monkeypatch) -> None:
    full = tmp_path / "full"
    assert main(["train", str(tiny_cfg_file), "--out", str(full), "--no-progress"]) == 0

    # interrupt right after the step-3 evaluation: the last checkpoint is step 2
    part = tmp_path / "part"
    interrupt_after(monkeypatch, 3)
    assert main(["train", str(tiny_cfg_file), "--out", str(part), "--no-progress"]) == 130
    monkeypatch.undo()
    assert [r["step"] for r in records(part)] == [0, 3]
    assert main(["train", str(tiny_cfg_file), "--out", str(part), "--resume", "--no-progress"]) == 0
    assert records(part) == records(full)


def test_resume_on_missing_dir_starts_fresh(tiny_cfg_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "new"
    assert main(["train", str(tiny_cfg_file), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert records(run)[-1]["step"] == 6


def test_existing_run_is_refused_and_kept(tiny_cfg_file: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(tiny_cfg_file), "--out", str(run), "--no-progress"]) == 0
    before = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(["train", str(tiny_cfg_file), "--out", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert (run / "metrics.jsonl").read_bytes() == before
    # a resume with another config is refused too, naming the key
    assert (
        main(
            [
                "train",
                str(tiny_cfg_file),
                "--out",
                str(run),
                "--resume",
                "--no-progress",
                "--set",
                "optim.lr=0.1",
            ]
        )
        == 2
    )
    assert "optim.lr" in capsys.readouterr().err
    assert (run / "metrics.jsonl").read_bytes() == before


def test_foreign_folder_is_refused(tiny_cfg_file: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "notes"
    run.mkdir()
    (run / "mine.txt").write_text("keep me")
    assert (
        main(["train", str(tiny_cfg_file), "--out", str(run), "--overwrite", "--no-progress"]) == 2
    )
    assert (run / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.steps=-1", "train.steps"),
        ("data.misaligned=2.0", "misaligned"),
        ("train.stepz=1", "train.stepz"),
        ("model.size=huge", "huge"),
    ],
)
def test_bad_config_exits_2_naming_the_key(
    tiny_cfg_file: Path, tmp_path: Path, capsys, override, named
) -> None:
    code = main(
        [
            "train",
            str(tiny_cfg_file),
            "--out",
            str(tmp_path / "r"),
            "--set",
            override,
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert named in err and err.startswith("curatorch: error:")
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_eval_checkpoint_and_bad_checkpoint(tiny_cfg_file: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["train", str(tiny_cfg_file), "--out", str(run), "--no-progress"]) == 0
    last = records(run)[-1]
    capsys.readouterr()
    assert main(["eval", str(run)]) == 0
    scores = last_json(capsys.readouterr().out)
    assert scores["step"] == 6
    for key in ("zeroshot_acc", "fewshot_acc", "i2t_r1", "t2i_r1", "mean_score"):
        assert scores[key] == pytest.approx(last[key], abs=1e-6)
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    ckpt = run / "checkpoints" / "step_00000006"
    (ckpt / "model.safetensors").write_bytes(b"\x00" * 10)
    assert main(["eval", str(ckpt)]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_data_preview_writes_png(tiny_cfg_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["data", "preview", str(tiny_cfg_file), "--out", str(out), "-n", "8"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
