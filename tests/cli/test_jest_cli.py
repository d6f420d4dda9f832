"""JEST end to end: reference on the curated pool, embedding cache, selecting training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curatorch.cli import main
from tests.helpers import TINY, interrupt_after, last_json, records


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
    part = tmp_path / "part"
    interrupt_after(monkeypatch, 3)
    assert main(["train", str(cfg), "--out", str(part), *args]) == 130
    monkeypatch.undo()
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
                "strategy.chunks=0",
            ]
        )
        == 2
    )
    assert "strategy.chunks" in capsys.readouterr().err
    # a batch that is not a multiple of the chunks trains (chunk sizes differ by one)
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "e"),
                "--set",
                f"strategy.reference={cache}",
                "--set",
                "strategy.chunks=5",
            ]
        )
        == 0
    )


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


# ---------------------------------------------------------------------------------------------
# the one way to get a reference: obtain_reference (used by train, compare, jest analyze and
# the scaling experiment)


def _cfg_world(cfg_path: Path, *overrides: str):
    from curatorch.data import build_world
    from curatorch.train import load_config

    cfg = load_config(cfg_path, list(overrides))
    return cfg, build_world(cfg.data)


def test_obtain_reference_uses_a_given_cache_or_embeds_a_checkpoint_once(reference, tmp_path):
    import torch

    from curatorch.data import load_embedding_cache
    from curatorch.train.reference import load_reference, obtain_reference

    cfg_path, ref, cache = reference
    cfg, world = _cfg_world(cfg_path)
    kw = {"data": cfg.data, "world": world, "progress": False}
    got = obtain_reference(tmp_path / "a", given=cache, **kw)
    assert got.cache == cache and got.checkpoint is None and got.info["given"]
    assert not (tmp_path / "a").exists()  # nothing written for a given cache
    got = obtain_reference(tmp_path / "b", given=ref, **kw)
    assert got.cache == tmp_path / "b" / "reference-cache" and "embed_s" in got.info
    # the same cache as `curatorch embed` writes
    mine, theirs = load_embedding_cache(got.cache), load_embedding_cache(cache)
    assert torch.equal(mine.image, theirs.image) and torch.equal(mine.ids, theirs.ids)
    assert mine.meta["checkpoint_sha256"] == theirs.meta["checkpoint_sha256"]
    load_reference(got.cache, data=cfg.data, pool_name="raw", pool=world.raw)
    stamp = (got.cache / "meta.json").stat().st_mtime_ns
    again = obtain_reference(tmp_path / "b", given=ref, **kw)
    assert "embed_s" not in again.info  # current: reused
    assert (got.cache / "meta.json").stat().st_mtime_ns == stamp
    # settings that leave the pool as it is keep the cache; other data re-embeds it
    same, world2 = _cfg_world(cfg_path, "data.eval_size=200")
    kw2 = {"data": same.data, "world": world2, "progress": False}
    assert "embed_s" not in obtain_reference(tmp_path / "b", given=ref, **kw2).info
    other, world3 = _cfg_world(cfg_path, "data.seed=1")
    kw3 = {"data": other.data, "world": world3, "progress": False}
    assert "embed_s" in obtain_reference(tmp_path / "b", given=ref, **kw3).info
    load_reference(got.cache, data=other.data, pool_name="raw", pool=world3.raw)
    with pytest.raises(ValueError, match=r"compare\.reference .*nothing does not exist"):
        obtain_reference(tmp_path / "c", given=tmp_path / "nothing", key="compare.reference", **kw)
    with pytest.raises(ValueError, match="exactly one of"):
        obtain_reference(tmp_path / "c", **kw)


def test_obtain_reference_trains_once_and_leaves_the_rng(reference, tmp_path):
    import dataclasses

    import torch

    from curatorch.data import is_embedding_cache
    from curatorch.train import OutputDirError
    from curatorch.train.reference import curated_reference_config, obtain_reference

    cfg_path, _ref, _cache = reference
    cfg, world = _cfg_world(
        cfg_path, "strategy.name=jest", "strategy.reference=curated", "strategy.reference_steps=2"
    )
    recipe = curated_reference_config(cfg)
    assert recipe.train.steps == 2 and recipe.data.pool == "curated"
    assert recipe.strategy.name == "iid" and recipe.model == cfg.model
    out = tmp_path / "run"
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    kw = {"data": cfg.data, "world": world, "progress": False}
    got = obtain_reference(out, recipe=recipe, **kw)
    assert torch.equal(torch.get_rng_state(), rng)
    assert got.cache == out / "reference-cache" and is_embedding_cache(got.cache)
    assert got.checkpoint == out / "reference" / "checkpoints" / "step_00000002"
    assert got.info["steps"] == 2 and got.info["curated_size"] == len(world.curated)
    meta = json.loads((got.cache / "meta.json").read_text())
    assert meta["pool"] == "raw"  # the cache covers the training data, not the curated pool
    run_cfg = json.loads((out / "reference" / "config.json").read_text())
    assert run_cfg["data"]["pool"] == "curated"
    stamp = (got.cache / "meta.json").stat().st_mtime_ns
    again = obtain_reference(out, recipe=dataclasses.replace(recipe), **kw)
    assert again.info.get("reused") and "embed_s" not in again.info
    assert (got.cache / "meta.json").stat().st_mtime_ns == stamp
    # a resumed run whose budget grew (reference_steps = 0) keeps its reference
    longer = dataclasses.replace(recipe, train=dataclasses.replace(recipe.train, steps=4))
    kept = obtain_reference(out, recipe=longer, **kw)
    assert kept.info.get("reused") and kept.info["steps"] == 2
    assert kept.checkpoint == got.checkpoint
    # another recipe is refused, never silently replaced
    other = dataclasses.replace(recipe, optim=dataclasses.replace(recipe.optim, lr=1e-2))
    with pytest.raises(OutputDirError, match=r"optim\.lr"):
        obtain_reference(out, recipe=other, **kw)
    # a stale cache (here: removed) is embedded again from the same reference
    import shutil

    shutil.rmtree(got.cache)
    redo = obtain_reference(out, recipe=recipe, **kw)
    assert not redo.info.get("reused") and "embed_s" in redo.info
    assert redo.checkpoint == got.checkpoint  # resumed at its last step: not retrained
    # embed=False: the checkpoint only
    bare = obtain_reference(tmp_path / "bare", recipe=recipe, embed=False, **kw)
    assert bare.cache is None and bare.checkpoint is not None
    assert not (tmp_path / "bare" / "reference-cache").exists()


def test_jest_analyze_trains_the_curated_reference(reference, tmp_path: Path, capsys) -> None:
    cfg, ref, _cache = reference
    out = tmp_path / "analyze"
    sets = ["strategy.reference=curated", "strategy.reference_steps=2", "strategy.chunks=4"]
    sets.append("strategy.filter_ratio=0.5")
    argv = ["jest", "analyze", str(cfg), "--out", str(out), "--learner", str(ref)]
    argv += [x for s in sets for x in ("--set", s)] + ["--seeds", "1", "--no-progress"]
    assert main(argv) == 0
    result = last_json(capsys.readouterr().out)
    assert result["reference"] == str(out / "reference-cache")
    assert (out / "reference" / "summary.json").is_file()


def test_curated_reference_over_shards_is_cached_per_shard_once(reference, tmp_path, capsys):
    """``strategy.reference = "curated"`` with ``data.shards``: the reference trains on the
    curated pool, its embeddings of the shards form a shard cache, reused on resume."""
    from curatorch.data import ShardEmbeddingCache

    cfg, _ref, _cache = reference
    shards = tmp_path / "shards"
    argv = ["data", "export-shards", str(cfg), "--out", str(shards), "--no-progress"]
    assert main([*argv, "--samples-per-shard", "500"]) == 0
    run = tmp_path / "run"
    sets = [
        f"data.shards='{shards}/{{000000..000002}}.tar'",
        "eval.source='world'",
        "strategy.name=jest",
        "strategy.reference=curated",
        "strategy.reference_steps=2",
        "strategy.chunks=4",
    ]
    argv = ["train", str(cfg), "--out", str(run), "--no-progress"]
    argv += [x for s in sets for x in ("--set", s)]
    assert main(argv) == 0
    cache = ShardEmbeddingCache(run / "reference-cache")
    assert cache.meta["count"] == 1500 and len(cache.meta["shards"]) == 3
    stamp = (run / "reference-cache" / "meta.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    assert "reference: training" not in capsys.readouterr().err  # reused as is
    assert (run / "reference-cache" / "meta.json").stat().st_mtime_ns == stamp
