"""Filtering a score table: the rule (ties, rounding, threshold), kept shards written
atomically and readable, key lists, and the clean-fraction sweep."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curatorch.curation import (
    REPORT_FILE,
    ScoreTable,
    clean_fraction_sweep,
    filter_report,
    keep_mask,
    kept_keys,
    load_score_table,
    score_pool,
    score_shards,
    select,
    sweep_markdown,
    write_kept_shards,
    write_key_list,
)
from curatorch.curation.table import make_score_table, write_parquet
from curatorch.data import ShardStream, World, iter_shard, iter_shard_members


@pytest.fixture(scope="module")
def shard_table(world: World, models: dict, shards: list[str], tmp_path_factory) -> ScoreTable:
    out = tmp_path_factory.mktemp("scores") / "shards.parquet"
    score_shards(
        models["reference"],
        urls=shards,
        tokenizer=world.tokenizer,
        image_size=16,
        out=out,
        progress=False,
    )
    return load_score_table(out)


@pytest.fixture(scope="module")
def pool_table(world: World, models: dict, tmp_path_factory) -> ScoreTable:
    out = tmp_path_factory.mktemp("scores") / "pool.parquet"
    score_pool(models["reference"], pool=world.raw, out=out, progress=False)
    return load_score_table(out)


# ------------------------------------------------------------------ the rule


def test_top_fraction_breaks_ties_by_key_whatever_the_row_order() -> None:
    scores = np.array([1.0, 2.0, 2.0, 2.0, 0.0])
    keys = np.array(["e", "d", "b", "c", "a"])
    keep = keep_mask(scores, keys, higher_is_better=True, top_fraction=0.4)
    assert keys[keep].tolist() == ["b", "c"]
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(5)
        again = keep_mask(scores[perm], keys[perm], higher_is_better=True, top_fraction=0.4)
        assert sorted(keys[perm][again]) == ["b", "c"]
    low = keep_mask(scores, keys, higher_is_better=False, top_fraction=0.4)
    assert sorted(keys[low]) == ["a", "e"]
    # the same key in two shards: the shard name decides
    two = keep_mask(
        np.ones(3),
        np.array(["k", "k", "j"]),
        higher_is_better=True,
        top_fraction=0.67,
        shards=np.array(["s2", "s1", "s9"]),
    )
    assert two.tolist() == [False, True, True]


def test_top_fraction_rounds_to_the_nearest_count_and_keeps_at_least_one() -> None:
    keys = np.array([f"{i:02d}" for i in range(10)])
    scores = np.arange(10.0)
    count = {
        f: int(keep_mask(scores, keys, higher_is_better=True, top_fraction=f).sum())
        for f in (0.3, 0.01, 0.25, 0.26, 1.0)
    }
    assert count == {0.3: 3, 0.01: 1, 0.25: 3, 0.26: 3, 1.0: 10}
    top = keep_mask(scores, keys, higher_is_better=True, top_fraction=0.3)
    assert keys[top].tolist() == ["07", "08", "09"]


def test_threshold_is_inclusive_on_the_better_side() -> None:
    scores, keys = np.array([0.1, 0.5, 0.9]), np.array(["a", "b", "c"])
    high = keep_mask(scores, keys, higher_is_better=True, threshold=0.5)
    low = keep_mask(scores, keys, higher_is_better=False, threshold=0.5)
    assert high.tolist() == [False, True, True] and low.tolist() == [True, True, False]
    assert not keep_mask(scores, keys, higher_is_better=True, threshold=2.0).any()


def test_the_rule_is_checked() -> None:
    scores, keys = np.array([0.1, 0.5]), np.array(["a", "b"])
    for kw, match in (
        ({}, "exactly one of top_fraction and threshold"),
        ({"top_fraction": 0.5, "threshold": 1.0}, "exactly one"),
        ({"top_fraction": 0.0}, r"top_fraction must be in \(0, 1\], got 0.0"),
        ({"top_fraction": 1.5}, "top_fraction must be in"),
        ({"threshold": float("nan")}, "threshold must be a finite number, got nan"),
    ):
        with pytest.raises(ValueError, match=match):
            keep_mask(scores, keys, higher_is_better=True, **kw)
    with pytest.raises(ValueError, match="scores must be finite, got 1 not"):
        keep_mask(np.array([0.1, np.nan]), keys, higher_is_better=True, top_fraction=0.5)


def test_select_names_the_scores_of_the_table(shard_table: ScoreTable) -> None:
    with pytest.raises(ValueError, match=r"one of \['cosine', 'ref_loss'\], got 'learnability'"):
        select(shard_table, by="learnability", top_fraction=0.3)
    sel = select(shard_table, by="ref_loss", top_fraction=0.3)
    assert sel.kept == 36 and sel.cut == shard_table.column("ref_loss")[sel.keep].max()
    assert sel.rule == {"top_fraction": 0.3}


# ------------------------------------------------------------------ writing


def test_kept_shards_hold_the_kept_samples_byte_for_byte(
    shard_table: ScoreTable, shards: list[str], world: World, tmp_path: Path
) -> None:
    sel = select(shard_table, by="cosine", top_fraction=0.3)
    out = tmp_path / "kept"
    report = write_kept_shards(shard_table, sel, out=out)
    names = ["000000", "000001", "000002"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.tar" for n in names] + [REPORT_FILE]
    )
    assert json.loads((out / REPORT_FILE).read_text()) == report
    keys, shard_col = shard_table.column("__key__"), shard_table.column("shard")
    for name, url, row in zip(names, shards, report["shards"], strict=True):
        want = keys[sel.keep & (shard_col == name)].tolist()  # in the input's order
        source = dict(iter_shard_members(url))
        written = list(iter_shard_members(out / f"{name}.tar"))
        assert [k for k, _ in written] == want
        assert all(members == source[k] for k, members in written)
        assert [s.key for s in iter_shard(out / f"{name}.tar", image_size=16)] == want
        assert row == {"shard": name, "kept": len(want), "total": 40, "skipped": 0}
    assert report["kept"] == 36 and report["total"] == 120
    assert report["pattern"] == str(out / "{000000..000002}.tar")
    stream = ShardStream(
        [str(out / f"{n}.tar") for n in names], image_size=16, tokenizer=world.tokenizer
    )
    batch = stream.next_batch(36)
    stream.close()
    assert sorted(batch.keys) == sorted(keys[sel.keep].tolist())


def test_the_output_is_atomic_and_refuses_what_it_would_replace(
    shard_table: ScoreTable, shards: list[str], tmp_path: Path
) -> None:
    sel = select(shard_table, by="cosine", threshold=-1.0)  # every sample
    # a shard that lost a sample since it was scored: nothing at all is written
    changed = tmp_path / "changed"
    changed.mkdir()
    for url in shards:
        shutil.copy(url, changed)
    members = list(iter_shard_members(shards[2]))[1:]
    from webdataset import TarWriter

    with open(changed / "000002.tar", "wb") as fh, TarWriter(fh, encoder=False) as w:
        for key, m in members:
            w.write({"__key__": key, **m})
    out = tmp_path / "out"
    urls = sorted(str(p) for p in changed.iterdir())
    with pytest.raises(ValueError, match=r"000002\.tar changed since it was scored: 1 of its 40"):
        write_kept_shards(shard_table, sel, out=out, urls=urls)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["changed"]
    with pytest.raises(ValueError, match=r"it lacks \['000002'\]"):
        write_kept_shards(shard_table, sel, out=out, urls=urls[:2])
    # a non-empty folder is refused; an earlier output is replaced with overwrite
    out.mkdir()
    (out / "x").write_text("mine")
    with pytest.raises(ValueError, match="is not empty; choose a new or empty folder"):
        write_kept_shards(shard_table, sel, out=out)
    (out / "x").unlink()
    write_kept_shards(shard_table, sel, out=out)
    with pytest.raises(ValueError, match="is not empty; pass --overwrite"):
        write_kept_shards(shard_table, sel, out=out)
    assert write_kept_shards(shard_table, sel, out=out, overwrite=True)["kept"] == 120


def test_an_img2dataset_parquet_beside_a_shard_is_filtered(
    shard_table: ScoreTable, shards: list[str], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for url in shards:
        shutil.copy(url, folder)
    keys = shard_table.column("__key__")[:40].tolist()
    pq.write_table(pa.table({"key": keys, "status": ["success"] * 40}), folder / "000000.parquet")
    sel = select(shard_table, by="cosine", top_fraction=0.5)
    urls = [str(folder / Path(u).name) for u in shards]
    write_kept_shards(shard_table, sel, out=tmp_path / "out", urls=urls)
    side = pq.read_table(tmp_path / "out" / "000000.parquet").column("key").to_pylist()
    assert side == [k for k, _ in iter_shard_members(tmp_path / "out" / "000000.tar")]
    assert not (tmp_path / "out" / "000001.parquet").exists()


def test_key_lists(shard_table: ScoreTable, shards: list[str], world, models, tmp_path) -> None:
    sel = select(shard_table, by="cosine", top_fraction=0.25)
    path = write_key_list(shard_table, sel, tmp_path / "keys.txt")
    assert path.read_text().splitlines() == shard_table.column("__key__")[sel.keep].tolist()
    # the same keys in two shards cannot be told apart in a key list
    twin = tmp_path / "twin.tar"
    shutil.copy(shards[0], twin)
    out = tmp_path / "two.parquet"
    score_shards(
        models["reference"],
        urls=[shards[0], str(twin)],
        tokenizer=world.tokenizer,
        image_size=16,
        out=out,
        progress=False,
    )
    both = load_score_table(out)
    with pytest.raises(ValueError, match=r"is kept in shards \['000000', 'twin'\]"):
        kept_keys(both, select(both, by="cosine", top_fraction=1.0))


def test_a_pool_table_writes_keys_not_shards(pool_table: ScoreTable, tmp_path: Path) -> None:
    sel = select(pool_table, by="cosine", top_fraction=0.3)
    with pytest.raises(ValueError, match="scores a built-in pool, not shards"):
        write_kept_shards(pool_table, sel, out=tmp_path / "out")
    report = filter_report(pool_table, sel)
    clean = pool_table.column("clean")
    assert report["clean_fraction"] == {
        "kept": pytest.approx(clean[sel.keep].mean()),
        "pool": pytest.approx(0.3),
    }
    assert report["shards"] == [{"shard": "raw", "kept": 36, "total": 120, "skipped": 0}]


# ------------------------------------------------------------------ the clean-fraction sweep


def test_clean_fraction_sweep_on_an_oracle_and_on_a_model(
    pool_table: ScoreTable, tmp_path: Path
) -> None:
    clean = pool_table.column("clean")
    n = len(clean)
    columns = {name: pool_table.column(name) for name in ("__key__", "shard", "id", "noise")}
    columns |= {"clean": clean, "cosine": clean + np.linspace(0, 0.5, n), "ref_loss": np.zeros(n)}
    write_parquet(
        tmp_path / "oracle.parquet",
        make_score_table(columns, scores=["cosine", "ref_loss"], meta={**pool_table.meta}),
    )
    oracle = clean_fraction_sweep(load_score_table(tmp_path / "oracle.parquet"), scores=["cosine"])
    # 36 clean of 120: the top 10-30% are all clean, the top 40% hold all 36 of them
    assert oracle["clean_fraction"]["cosine"] == pytest.approx([1, 1, 1, 36 / 48, 36 / 60])
    assert oracle["kept"] == [12, 24, 36, 48, 60] and oracle["pool_clean_fraction"] == 0.3
    sweep = clean_fraction_sweep(pool_table)
    assert list(sweep["clean_fraction"]) == ["cosine", "ref_loss"]
    assert all(0 <= v <= 1 for v in sweep["clean_fraction"]["cosine"])
    lines = sweep_markdown(oracle).splitlines()
    assert lines[0] == "| kept fraction | kept | clean (cosine) |"
    assert lines[2] == "| 0.10 | 12 | 1.000 |" and lines[-1] == "| 1.00 (pool) | 120 | 0.300 |"


def test_the_sweep_needs_a_pool(shard_table: ScoreTable) -> None:
    with pytest.raises(ValueError, match="has no clean column"):
        clean_fraction_sweep(shard_table)
