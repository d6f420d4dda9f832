"""``curatorch score`` and ``curatorch filter`` end to end through ``main``; bad input
exits 2 with one line naming the culprit and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from curatorch.curation import load_score_table
from curatorch.data import iter_shard
from tests.curation.fixtures import DATA_TOML, export, save_model, tiny_world
from tests.helpers import last_json


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("curation_cli")
    world = tiny_world()
    cfg = root / "data.toml"
    cfg.write_text(DATA_TOML + '[eval]\nsource = "world"\n')
    shards = export(world, root / "shards")
    return {
        "root": root,
        "cfg": cfg,
        "ref": save_model(world, root / "ref", seed=1),
        "other": save_model(world, root / "other", seed=2),
        "pattern": Path(shards[0]).parent / "{000000..000002}.tar",
    }


def _run(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_score_then_filter_a_pool(setup: dict[str, Path], capsys) -> None:
    root, cfg, ref = setup["root"], setup["cfg"], setup["ref"]
    scores = root / "pool.parquet"
    code, out, err = _run(capsys, "score", ref, "--config", cfg, "--out", scores, "--no-progress")
    assert code == 0, err
    summary = last_json(out)
    assert summary["rows"] == 120 and summary["scores"] == ["cosine", "ref_loss"]
    assert "faults: 0 of 120 samples skipped" in err
    keys = root / "kept.txt"
    code, out, err = _run(
        capsys, "filter", scores, "--by", "cosine", "--top-fraction", "0.3", "--keys-out", keys
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "raw: kept 36 / 120"
    assert lines[1].startswith("clean fraction: kept ") and lines[1].endswith(", pool 0.300")
    report = json.loads((root / "kept.report.json").read_text())
    assert report["kept"] == 36 and last_json(out)["keys_out"] == str(keys)
    assert len(keys.read_text().splitlines()) == 36
    code, out, err = _run(capsys, "filter", scores, "--sweep", "0.1", "0.5", "--by", "cosine")
    assert code == 0, err
    assert out.splitlines()[0] == "| kept fraction | kept | clean (cosine) |"
    assert last_json(out)["kept"] == [12, 60]


def test_score_then_filter_shards(setup: dict[str, Path], capsys) -> None:
    root, cfg = setup["root"], setup["cfg"]
    scores = root / "shards.parquet"
    shards = f"data.shards={json.dumps(str(setup['pattern']))}"
    args = ["score", setup["ref"], "--config", cfg, "--set", shards, "--out", scores]
    code, out, err = _run(capsys, *args, "--learner", setup["other"], "--no-progress")
    assert code == 0, err
    assert last_json(out)["shards"] == 3 and load_score_table(scores).scores[-1] == "learnability"
    kept = root / "kept"
    code, out, err = _run(
        capsys,
        "filter",
        scores,
        "--by",
        "learnability",
        "--top-fraction",
        "0.5",
        "--out",
        kept,
        "--no-progress",
    )
    assert code == 0, err
    assert [ln.split(":")[0] for ln in out.splitlines()[:3]] == ["000000", "000001", "000002"]
    assert last_json(out)["kept"] == 60
    assert sum(len(list(iter_shard(p, image_size=16))) for p in kept.glob("*.tar")) == 60
    assert json.loads((kept / "filter_report.json").read_text())["kept"] == 60


def _refused(capsys, setup: dict[str, Path], *args: object, match: str) -> None:
    before = sorted(p.name for p in setup["root"].iterdir())
    code, out, err = _run(capsys, *args)
    assert code == 2, (out, err)
    assert err.startswith("curatorch: error: ") and len(err.strip().splitlines()) == 1
    assert match in err, err
    assert sorted(p.name for p in setup["root"].iterdir()) == before


def test_bad_score_input_exits_2_and_names_it(setup: dict[str, Path], capsys) -> None:
    root, cfg, ref = setup["root"], setup["cfg"], setup["ref"]
    out, missing, table = root / "bad.parquet", root / "missing", root / "pool.parquet"
    base = ["score", ref, "--config", cfg, "--no-progress"]
    shards = f"data.shards={json.dumps(str(setup['pattern']))}"
    if not table.exists():
        assert main([*map(str, base), "--out", str(table)]) == 0
    cases = [
        (["score", missing, "--config", cfg, "--out", out], f"model {missing} is not a folder"),
        ([*base, "--out", out, "--learner", missing], f"--learner {missing} is not a folder"),
        ([*base, "--out", out, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        ([*base, "--out", root], f"--out {root} is a folder"),
        ([*base, "--out", out, "--set", shards, "--pool", "raw"], "--pool does not apply"),
        (
            ["score", setup["other"], "--config", cfg, "--out", table],
            f"score table {table} was scored with another reference model",
        ),
    ]
    for args, match in cases:
        _refused(capsys, setup, *args, match=match)


def test_bad_filter_input_exits_2_and_names_it(setup: dict[str, Path], capsys) -> None:
    root, cfg = setup["root"], setup["cfg"]
    table, missing = root / "pool.parquet", root / "none.parquet"
    if not table.exists():
        assert main(["score", str(setup["ref"]), "--config", str(cfg), "--out", str(table)]) == 0
    top = ["--by", "cosine", "--top-fraction", "0.3"]
    keys = ["--keys-out", root / "k.txt"]
    cases = [
        ([missing, *top, *keys], f"score table {missing} does not exist"),
        ([cfg, *top, *keys], f"{cfg} is not a curatorch score table"),
        ([table, "--by", "clip", "--top-fraction", "0.3", *keys], "by must be a score of"),
        ([table, "--by", "cosine", "--top-fraction", "1.5"], "--top-fraction must be in (0, 1]"),
        ([table, "--by", "cosine", *keys], "needs --top-fraction F, --threshold X or --sweep"),
        ([table, "--top-fraction", "0.3", *keys], "filter needs --by SCORE"),
        ([table, "--sweep", "--out", root / "o"], "--sweep writes no samples: drop --out"),
        ([table, *top, "--shards", setup["pattern"], *keys], "--shards applies with --out"),
        ([table, *top, "--out", root / "o"], "scores a built-in pool, not shards"),
    ]
    for args, match in cases:
        _refused(capsys, setup, "filter", *args, match=match)
