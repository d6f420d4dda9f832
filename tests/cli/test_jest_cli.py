"""JEST end to end: reference on the curated pool, embedding cache, selecting training."""

from __future__ import annotations

from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import TINY, last_json, records


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("jest")
    cfg = root / "tiny.toml"
    cfg.write_text(TINY)
    ref = root / "ref"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--out",
                str(ref),
                "--no-progress",
                "--set",
                "data.pool=curated",
                "--set",
                "train.steps=4",
            ]
        )
        == 0
    )
    cache = root / "cache"
    assert (
        main(["embed", str(ref), "--config", str(cfg), "--out", str(cache), "--no-progress"]) == 0
    )
    return cfg, ref, cache


@pytest.mark.parametrize("strategy", ["jest", "flexi-jest", "independent"])
def test_selecting_strategies_train_from_the_cache(reference, tmp_path: Path, strategy: str):
    cfg, _ref, cache = reference
    run = tmp_path / strategy
    code = main(
        [
            "train",
            str(cfg),
            "--out",
            str(run),
            "--no-progress",
            "--set",
            f"strategy.name={strategy}",
            "--set",
            f"strategy.reference={cache}",
            "--set",
            "strategy.chunks=4",
            "--set",
            "strategy.filter_ratio=0.5",
        ]
    )
    assert code == 0
    last = records(run)[-1]
    assert last["examples_seen"] == 6 * 32
    assert last["flops_learner_scoring"] > 0
    # from the cache: the reference costs its one-time embedding of the pool only
    assert last["flops_reference_scoring"] == records(run)[0]["flops_reference_scoring"] > 0
    assert last["flops_total"] == (
        last["flops_train"] + last["flops_learner_scoring"] + last["flops_reference_scoring"]
    )


def test_online_reference_and_hard_learner(reference, tmp_path: Path) -> None:
    cfg, ref, _cache = reference
    run = tmp_path / "online"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--out",
                str(run),
                "--no-progress",
                "--set",
                "strategy.name=jest",
                "--set",
                f"strategy.reference={ref}",
                "--set",
                "strategy.chunks=4",
            ]
        )
        == 0
    )
    recs = records(run)
    assert recs[-1]["flops_reference_scoring"] > recs[1]["flops_reference_scoring"] > 0
    run = tmp_path / "hard"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--out",
                str(run),
                "--no-progress",
                "--set",
                "strategy.name=jest",
                "--set",
                "strategy.score=hard-learner",
                "--set",
                "strategy.chunks=4",
            ]
        )
        == 0
    )
    assert records(run)[-1]["flops_reference_scoring"] == 0


def test_jest_resume_matches_uninterrupted(reference, tmp_path: Path, monkeypatch) -> None:
    cfg, _ref, cache = reference
    args = [
        "--no-progress",
        "--set",
        "strategy.name=flexi-jest",
        "--set",
        f"strategy.reference={cache}",
        "--set",
        "strategy.chunks=4",
    ]
    full = tmp_path / "full"
    assert main(["train", str(cfg), "--out", str(full), *args]) == 0
    from curatorch.train import loop

    real = loop.append_jsonl

    def crash(path, record):
        real(path, record)
        if record["step"] == 3:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    monkeypatch.setattr(loop, "append_jsonl", crash)
    assert main(["train", str(cfg), "--out", str(part), *args]) == 130
    monkeypatch.setattr(loop, "append_jsonl", real)
    assert main(["train", str(cfg), "--out", str(part), "--resume", *args]) == 0
    assert records(part) == records(full)


def test_reference_errors_are_named(reference, tmp_path: Path, capsys) -> None:
    cfg, _ref, cache = reference
    base = ["train", str(cfg), "--no-progress", "--set", "strategy.name=jest"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 2
    assert "strategy.reference" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "b"),
                "--set",
                f"strategy.reference={tmp_path / 'nothing'}",
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    # a cache computed for other data is stale, never silently used
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "c"),
                "--set",
                f"strategy.reference={cache}",
                "--set",
                "data.seed=1",
            ]
        )
        == 2
    )
    assert "stale" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "d"),
                "--set",
                f"strategy.reference={cache}",
                "--set",
                "strategy.chunks=5",
            ]
        )
        == 2
    )
    assert "strategy.chunks" in capsys.readouterr().err


def test_jest_analyze_writes_plots_and_json(reference, tmp_path: Path, capsys) -> None:
    cfg, ref, cache = reference
    out = tmp_path / "analyze"
    code = main(
        [
            "jest",
            "analyze",
            str(cfg),
            "--out",
            str(out),
            "--learner",
            str(ref),
            "--set",
            f"strategy.reference={cache}",
            "--set",
            "strategy.chunks=4",
            "--set",
            "strategy.filter_ratio=0.5",
            "--seeds",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    result = last_json(capsys.readouterr().out)
    assert result["super_batch"] == 64 and result["batch_size"] == 32
    assert result["vs_chunks"]["chunks"] == [1, 2, 4, 8, 16, 32]
    for name in (
        "learnability_matrix.png",
        "learnability_vs_chunks.png",
        "learnability_vs_filter_ratio.png",
    ):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
