"""``curatorch plan`` end to end through ``main``: a tiny pool's score table with a given
parameter file, short runs and the validation on a tiny world; bad input exits 2 with
one line naming the culprit and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curatorch.cli import main
from curatorch.curation.plan import FILTER_RATIO_FIELD
from curatorch.curation.table import SCORE_TABLE_FORMAT, make_score_table, write_parquet
from curatorch.scaling import PoolParams, write_params
from tests.curation.fixtures import DATA_TOML, save_model, tiny_world
from tests.helpers import last_json

NAMES = ("top0to25p", "top25to50p", "top50to75p", "top75to100p")


def _table(path: Path, n: int = 400) -> Path:
    scores = np.linspace(0.9, 0.1, n).astype(np.float32)
    columns = {
        "__key__": [f"{i:012d}" for i in range(n)],
        "shard": ["raw"] * n,
        "id": np.arange(n),
        "clean": np.arange(n) < n // 3,
        "noise": ["clean"] * n,
        "cosine": scores,
        "ref_loss": 1.0 - scores,
    }
    meta = {"format": SCORE_TABLE_FORMAT, "source": {"kind": "pool", "pool": "raw", "size": n}}
    return write_parquet(path, make_score_table(columns, scores=["cosine", "ref_loss"], meta=meta))


def _params(path: Path) -> Path:
    recs = [
        PoolParams(
            id=f"f{f}",
            names=NAMES,
            a=(100.0,) * 4,
            b=b,
            tau=tau,
            d=0.05,
            extra={FILTER_RATIO_FIELD: f},
        )
        for f, b, tau in (
            (0.0, (-0.3, -0.2, -0.12, -0.05), (4.0, 3.0, 2.0, 1.5)),
            (0.5, (-0.33, -0.2, -0.1, -0.04), (1.0, 1.0, 1.0, 1.0)),  # faster, forgets sooner
        )
    ]
    write_params(path, recs)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plan_cli")
    return {
        "root": root,
        "table": _table(root / "scores.parquet"),
        "params": _params(root / "params.jsonl"),
    }


def _run(capsys, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_from_a_parameter_file(setup: dict[str, Path], capsys) -> None:
    out = setup["root"] / "plan"
    code, stdout, err = _run(
        capsys, "plan", setup["table"], "--by", "cosine", "--budgets", "10K,100K,10M",
        "--params", setup["params"], "--pool-size", "200K", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    assert last_json(stdout)["files"] == ["plan.json", "plan.md", "plan.png"]
    rec = json.loads((out / "plan.json").read_text())
    assert rec["filter_ratios"] == [0.0, 0.5] and rec["buckets"] == list(NAMES)
    assert rec["bucket_size"] == 100 and rec["params_source"] == str(setup["params"])
    choices = [b["recommendation"] for b in rec["budgets"]]
    assert [c["budget"] for c in rec["budgets"]] == ["10K", "100K", "10M"]
    # JEST and the top quarter while compute is small; IID on the top half at 10M
    assert [c["strategy"] for c in choices] == ["jest", "jest", "iid"]
    assert [c["offline_fraction"] for c in choices] == [0.25, 0.25, 0.5]
    assert choices[0]["score_cut"] == pytest.approx(rec["bucket_cuts"][0])
    assert "Recommendation: keep **" in (out / "plan.md").read_text()
    assert (out / "plan.png").read_bytes()[:4] == b"\x89PNG"


def _refused(capsys, setup: dict[str, Path], *args: object, match: str) -> None:
    before = sorted(p.name for p in setup["root"].rglob("*"))
    code, out, err = _run(capsys, "plan", *args)
    assert code == 2, (out, err)
    assert err.startswith("curatorch: error: ") and len(err.strip().splitlines()) == 1, err
    assert match in err, err
    assert sorted(p.name for p in setup["root"].rglob("*")) == before


def test_bad_plan_input_exits_2_and_names_it(setup: dict[str, Path], capsys) -> None:
    root, table, params = setup["root"], setup["table"], setup["params"]
    new = root / "new"
    base = [table, "--by", "cosine", "--budgets", "10K", "--out", new]
    _refused(capsys, setup, *base, match="plan needs --params FILE or --config")
    _refused(capsys, setup, *base, "--params", root / "none.jsonl", match="none.jsonl")
    _refused(capsys, setup, *base, "--params", params, "--run-samples", "1K", match="not both")
    _refused(capsys, setup, *base, "--params", params, "--workers", "0", match="--workers must")
    _refused(capsys, setup, *base, "--params", params, "--ratios", "0.5", match="--ratios applies")
    _refused(capsys, setup, *base, "--run-samples", "1K", match="need --config CONFIG")
    _refused(capsys, setup, *base, "--params", params, "--buckets", "0", match="--buckets must")
    _refused(capsys, setup, *base, "--params", params, "--buckets", "3", match="'top0to33.33p'")
    _refused(capsys, setup, *base, "--params", params, "--key", "nope", match="key 'nope'")
    _refused(capsys, setup, *base, "--params", params, "--by", "learnability", match="by must be")
    bad = [table, "--by", "cosine", "--out", new, "--params", params]
    _refused(capsys, setup, *bad, "--budgets", "10K,-1", match="--budgets must be")
    _refused(capsys, setup, root / "x.parquet", *bad[1:], "--budgets", "1K", match="x.parquet")
    bad_out = [table, "--by", "cosine", "--budgets", "1K", "--params", params]
    _refused(capsys, setup, *bad_out, "--out", params, match="is not a folder")
    twice = root / "twice.jsonl"
    twice.write_text(params.read_text().replace('"filter_ratio": 0.5', '"filter_ratio": 0.0'))
    _refused(capsys, setup, *base, "--params", twice, match="both for filter_ratio = 0.0")
    twice.unlink()


_TRAIN_TOML = """
[model]
size = "tiny"
[optim]
warmup_steps = 1
[train]
batch_size = 8
threads = 1
[eval]
source = "world"
"""


def test_short_runs_and_validation_on_a_tiny_world(tmp_path: Path, capsys) -> None:
    world = tiny_world()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(DATA_TOML + _TRAIN_TOML)
    ref = save_model(world, tmp_path / "ref", seed=1)
    scores = tmp_path / "scores.parquet"
    code, _, err = _run(capsys, "score", ref, "--config", cfg, "--out", scores, "--no-progress")
    assert code == 0, err
    out = tmp_path / "plan"
    args = ["plan", scores, "--by", "cosine", "--buckets", "2", "--config", cfg, "--out", out]
    code, _stdout, err = _run(
        capsys, *args, "--budgets", "16,32", "--run-samples", "16,32", "--ratios", "0",
        "--validate-seeds", "0",
    )  # fmt: skip
    assert code == 0, err
    rec = json.loads((out / "plan.json").read_text())
    assert rec["bucket_size"] == 56 and rec["params_source"] == "short runs"
    assert set(rec["run_points"]["0.0"]) == {"top0to50p", "top50to100p"}
    assert (out / "params.jsonl").is_file() and (out / "runs" / "iid.csv").is_file()
    rows = rec["validation"]["budgets"]
    assert [r["budget"] for r in rows] == ["16", "32"]
    assert all(len(r["trained"]) == 2 and r["gap"] >= 0 for r in rows)
    assert "## Validation" in (out / "plan.md").read_text()
    # two worker processes train the same runs: the same points and validation errors
    par = tmp_path / "plan-workers"
    code, _, err = _run(
        capsys, *args[:-1], par, "--budgets", "16,32", "--run-samples", "16,32", "--ratios", "0",
        "--validate-seeds", "0", "--workers", "2",
    )  # fmt: skip
    assert code == 0, err
    rec2 = json.loads((par / "plan.json").read_text())
    assert rec2["run_points"] == rec["run_points"]
    assert rec2["validation"]["budgets"] == rec["validation"]["budgets"]
    # the same table against another pool, and JEST without a reference, are refused
    other = tmp_path / "other.toml"
    other.write_text(DATA_TOML.replace("raw_size = 120", "raw_size = 100") + _TRAIN_TOML)
    code, _, err = _run(capsys, *args[:-4], "--config", other, "--out", tmp_path / "o",
                        "--budgets", "16", "--run-samples", "16")  # fmt: skip
    assert code == 2 and "scores another pool" in err, err
    no_ref = ["--ratios", "0.5", "--reference", tmp_path / "no"]
    code, _, err = _run(capsys, *args[:-2], "--out", tmp_path / "o", "--budgets", "16",
                        "--run-samples", "16", *no_ref)  # fmt: skip
    assert code == 2 and "--reference" in err and "does not exist" in err, err


def test_published_parameters_give_plan_filters_choice(tmp_path: Path, capsys) -> None:
    from curatorch.scaling import find_params, plan_filters, resolve_scaling_file

    table = _table(tmp_path / "scores.parquet", n=1000)
    out = tmp_path / "plan"
    key = "tmars_imagenet1k_utility"
    code, _, err = _run(
        capsys, "plan", table, "--by", "cosine", "--buckets", "10", "--params", "published",
        "--key", key, "--pool-size", "128M", "--budgets", "32M,128M,640M", "--out", out,
    )  # fmt: skip
    assert code == 0, err
    rec = json.loads((out / "plan.json").read_text())
    published = find_params(resolve_scaling_file("published", kind="params"), key)
    ref = plan_filters(published, bucket_size=12.8e6, budgets=[32e6, 128e6, 640e6])
    for j, entry in enumerate(rec["budgets"]):
        (ratio,) = entry["ratios"]  # the record is IID's (no filter_ratio field)
        assert ratio["best"] == ref.labels[int(ref.best[j])]  # top10, top20, top20
        errors = [c["predicted_error"] for c in ratio["candidates"]]
        assert errors == pytest.approx(ref.errors[:, j].tolist())
    assert [e["recommendation"]["label"] for e in rec["budgets"]] == ["top10", "top20", "top20"]
