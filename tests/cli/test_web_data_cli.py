"""``curatorch data make-web-shards`` and ``curatorch data tokenizer``, and training on
web shards: the built-in tokenizer refused with the measured rate, a trained one used."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import TINY


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def web(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Path | str]:
    rc, out, _ = _run(
        ["data", "make-web-shards", "--out", str(tmp_path / "web"), "--pairs", "240",
         "--shard-size", "80", "--seed", "0", "--image-size", "16", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    summary = json.loads(out)
    assert summary["shards"] == 3 and summary["noise_counts"]["misaligned"] == 48
    rc, out, _ = _run(
        ["data", "tokenizer", str(tmp_path / "web"), "--out", str(tmp_path / "tok.json"),
         "--vocab-size", "600"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    tok = json.loads(out)
    assert tok["captions"] == 240 and tok["unk_rate_first_1024"] <= 0.01
    return {"pattern": summary["pattern"], "tok": tmp_path / "tok.json", "dir": tmp_path}


def test_labelled_clean_eval_shards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = _run(
        ["data", "make-web-shards", "--out", str(tmp_path / "eval"), "--pairs", "20",
         "--shard-size", "10", "--seed", "9", "--clean-fraction", "1", "--labelled",
         "--no-progress"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    summary = json.loads(out)
    assert summary["noise_counts"]["clean"] == 20 and summary["classes_file"] == "classes.txt"
    assert (tmp_path / "eval" / "classes.txt").read_text().count("\n") == 36


def test_training_on_web_shards_refuses_the_builtin_tokenizer_then_trains(
    web: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = web["dir"] / "tiny.toml"
    cfg.write_text(TINY)
    rc, out, _ = _run(
        ["data", "make-web-shards", "--out", str(web["dir"] / "heldout"), "--pairs", "40",
         "--shard-size", "40", "--seed", "5", "--image-size", "16", "--clean-fraction", "1",
         "--no-progress"],
        capsys,
    )  # fmt: skip
    assert rc == 0
    held_out = json.loads(out)["pattern"]
    # held-out shards, retrieval only: nothing of the built-in world is used
    shards = f"data.shards='{web['pattern']}'"
    run = web["dir"] / "run"
    rc, _, err = _run(["train", str(cfg), "--out", str(run), "--set", shards,
                       "--set", f"eval.shards='{held_out}'", "--no-progress"],
                      capsys)  # fmt: skip
    assert rc == 2
    line = err.strip()
    assert "\n" not in line and "data.tokenizer = 'builtin'" in line
    assert "curatorch data tokenizer SHARDS --out tok.json" in line
    rate = float(line.split(" maps ")[1].split("%")[0])
    assert rate > 40  # percent of the caption tokens
    tok = f"data.tokenizer='{web['tok']}'"
    rc, out, err = _run(["train", str(cfg), "--out", str(run), "--set", shards, "--set", tok,
                         "--set", f"eval.shards='{held_out}'",
                         "--set", "train.steps=2", "--set", "train.eval_every=2",
                         "--no-progress"], capsys)  # fmt: skip
    assert rc == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 2
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["scores_used"] == ["i2t_r1", "t2i_r1"] and last["eval_samples"] == 40
    assert last["mean_score"] == (last["i2t_r1"] + last["t2i_r1"]) / 2


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--pairs", "0"], "--pairs must be >= 1, got 0"),
        (["--pairs", "5", "--shard-size", "0"], "--shard-size must be >= 1"),
        (["--pairs", "5", "--clean-fraction", "0.5", "--misaligned", "0.1"],
         "--clean-fraction cannot be combined with --misaligned"),
        (["--pairs", "5", "--clean-fraction", "2"], r"--clean-fraction must be in [0, 1]"),
        (["--pairs", "5", "--failed-fraction", "0.8"], "must sum to <= 1"),
    ],
)  # fmt: skip
def test_make_web_shards_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str
) -> None:
    rc, _, err = _run(["data", "make-web-shards", "--out", str(tmp_path / "o"), *argv], capsys)
    assert rc == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_tokenizer_bad_input_exits_2(
    web: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "t.json")
    for argv, match in (
        ([str(tmp_path / "none"), "--out", out], "SHARDS: shard file"),
        ([str(tmp_path), "--out", out], "holds no .tar file"),
        ([web["pattern"], "--out", out, "--vocab-size", "8"], "--vocab-size must be >= 32"),
        ([web["pattern"], "--out", str(tmp_path)], "is a folder"),
    ):
        if argv[0] == str(tmp_path):
            (tmp_path / "empty").mkdir(exist_ok=True)
            argv = [str(tmp_path / "empty"), *argv[1:]]
        rc, _, err = _run(["data", "tokenizer", *argv], capsys)
        assert rc == 2 and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "t.json").exists()


def test_training_on_shards_without_held_out_data_is_refused(
    web: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    """The built-in world's evaluation sets have nothing to do with the user's shards: no
    silent evaluation on them; eval.source = 'world' asks for it on purpose."""
    cfg = web["dir"] / "tiny.toml"
    cfg.write_text(TINY)
    sets = [f"data.shards='{web['pattern']}'", f"data.tokenizer='{web['tok']}'"]
    argv = ["train", str(cfg), "--out", str(web["dir"] / "run"), "--no-progress"]
    argv += [x for s in sets for x in ("--set", s)]
    rc, _, err = _run(argv, capsys)
    assert rc == 2
    assert "no held-out data to evaluate on" in err and "eval.shards" in err
    assert "eval.source = 'world'" in err and not (web["dir"] / "run" / "metrics.jsonl").exists()


def test_the_recipes_shipped_configs_load() -> None:
    """configs/web.toml and web_compare.toml (docs/your_data.md) are valid as shipped."""
    from curatorch.configs import resolve_config
    from curatorch.experiments.jest_compare import load_compare_config
    from curatorch.train import load_config

    cfg = load_config(resolve_config("web"))
    assert cfg.data.shards.startswith("data/web/") and cfg.eval.on_shards()
    cc = load_compare_config(resolve_config("web_compare"))
    assert [s.name for s in cc.compare.strategies] == ["iid", "jest"]
    assert cc.compare.seeds == (0, 1, 2) or list(cc.compare.seeds) == [0, 1, 2]


def test_failed_in_tar_writes_failed_downloads_into_the_tars(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from curatorch.data import fault_counts, iter_shard_batches

    rc, out, _ = _run(
        ["data", "make-web-shards", "--out", str(tmp_path / "w"), "--pairs", "10",
         "--shard-size", "10", "--image-size", "16", "--failed-fraction", "0.3",
         "--failed-in-tar", "--no-progress"],
        capsys,
    )  # fmt: skip
    assert rc == 0 and json.loads(out)["noise_counts"]["failed"] == 3
    counts = fault_counts()
    for _ in iter_shard_batches(tmp_path / "w" / "00000.tar", image_size=16, batch_size=8,
                                counts=counts):  # fmt: skip
        pass
    assert (counts["samples_ok"], counts["skipped_failed_download"]) == (7, 3)
