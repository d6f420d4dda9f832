"""Per-shard reference-embedding cache and the shard reference served from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from curatorch.data import (
    ShardBatch,
    ShardEmbeddingCache,
    is_shard_cache,
    save_embedding_cache,
    save_shard_embeddings,
    write_shard_cache_meta,
)
from curatorch.train.shard_reference import ShardCachedReference, load_shard_reference

SHA = "ab" * 32
D = 8


def _emb(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, D, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.normalize(x, dim=1)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    """Shards "a" (3 keys), "b" (2 keys) and "empty" (0 keys)."""
    out = tmp_path / "cache"
    for seed, (shard, keys) in enumerate(
        (("a", ["k0", "k1", "k2"]), ("b", ["x", "k0"]), ("empty", []))
    ):
        save_shard_embeddings(
            out,
            shard=shard,
            keys=keys,
            image=_emb(len(keys), seed),
            text=_emb(len(keys), seed + 10),
            meta={"model_fingerprint": SHA, "url": f"/data/{shard}.tar"},
        )
    write_shard_cache_meta(
        out,
        logit_scale=10.0,
        logit_bias=-5.0,
        model_fingerprint=SHA,
        model_kind="hf-siglip",
        meta={"dim": D},
    )
    return out


def test_round_trip(cache_dir: Path) -> None:
    assert is_shard_cache(cache_dir)
    assert not [p for p in cache_dir.rglob("*") if p.name.startswith(".")]  # no temp files
    cache = ShardEmbeddingCache(cache_dir)
    assert (cache.logit_scale, cache.logit_bias, cache.fingerprint) == (10.0, -5.0, SHA)
    assert cache.kind == "hf-siglip" and cache.checkpoint_sha256 is None
    assert cache.meta["dim"] == D
    image, text = cache.lookup(["b", "a", "a", "b", "a"], ["k0", "k2", "k0", "x", "k0"])
    assert image.dtype == text.dtype == torch.float16 and tuple(image.shape) == (5, D)
    a_img, b_img = _emb(3, 0).half(), _emb(2, 1).half()
    assert torch.equal(image, torch.stack([b_img[1], a_img[2], a_img[0], b_img[0], a_img[0]]))
    assert torch.equal(text[1], _emb(3, 10).half()[2])
    empty_img, _ = cache.lookup([], [])
    assert tuple(empty_img.shape) == (0, D)
    cache.check_covers(["a", "b", "empty"])
    # a one-shard LRU gives the same answers
    small = ShardEmbeddingCache(cache_dir, max_cached_shards=1)
    for _ in range(2):
        again, _ = small.lookup(["b", "a", "a", "b", "a"], ["k0", "k2", "k0", "x", "k0"])
        assert torch.equal(again, image)


def test_missing_shard_or_key_is_an_error(cache_dir: Path) -> None:
    cache = ShardEmbeddingCache(cache_dir)
    with pytest.raises(ValueError, match=r"shard 'c'.*curatorch embed"):
        cache.lookup(["a", "c"], ["k0", "k0"])
    with pytest.raises(ValueError, match=r"key 'nope' of shard 'a'.*curatorch embed"):
        cache.lookup(["a", "a"], ["k0", "nope"])
    with pytest.raises(ValueError, match=r"shard 'c'"):
        cache.check_covers(["a", "c", "d"])
    with pytest.raises(ValueError, match="same length"):
        cache.lookup(["a"], ["k0", "k1"])


def test_stale_shard_file_is_an_error(cache_dir: Path) -> None:
    save_shard_embeddings(
        cache_dir,
        shard="b",
        keys=["x"],
        image=_emb(1, 3),
        text=_emb(1, 4),
        meta={"model_fingerprint": "cd" * 32},
    )
    cache = ShardEmbeddingCache(cache_dir)
    cache.lookup(["a"], ["k1"])
    with pytest.raises(ValueError, match=r"stale.*cdcdcdcdcdcd.*abababababab"):
        cache.lookup(["b"], ["x"])
    with pytest.raises(ValueError, match=r"b\.safetensors is stale"):
        cache.check_covers(["a", "b"])


def test_cache_of_another_model_is_refused_naming_both(cache_dir: Path) -> None:
    cache = ShardEmbeddingCache(cache_dir)
    cache.check_model(fingerprint=SHA, kind="hf-siglip")
    for fingerprint, kind in (("ef" * 32, "hf-siglip"), (SHA, "hf-clip")):
        with pytest.raises(ValueError, match="another model") as err:
            cache.check_model(fingerprint=fingerprint, kind=kind, fix="do this")
        line = str(err.value)
        assert "\n" not in line and str(cache_dir) in line and line.endswith("; do this")
        assert f"hf-siglip {SHA[:12]}..., not {kind} {fingerprint[:12]}..." in line


def test_cache_without_a_fingerprint_is_refused(cache_dir: Path) -> None:
    meta = json.loads((cache_dir / "meta.json").read_text())
    del meta["model_fingerprint"], meta["model_kind"]
    (cache_dir / "meta.json").write_text(json.dumps({**meta, "checkpoint_sha256": SHA}))
    with pytest.raises(ValueError, match="before caches recorded the model's fingerprint"):
        ShardEmbeddingCache(cache_dir)


def test_not_a_cache_and_bad_arguments(cache_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path / 'nothing'}.*no meta.json"):
        ShardEmbeddingCache(tmp_path / "nothing")
    assert not is_shard_cache(tmp_path / "nothing")
    (cache_dir / "meta.json").write_text(json.dumps({"logit_scale": 1.0}))
    with pytest.raises(ValueError, match="not the meta file"):
        ShardEmbeddingCache(cache_dir)
    ok = {"shard": "s", "keys": ["a"], "image": _emb(1, 0), "text": _emb(1, 1)}
    with pytest.raises(ValueError, match="model_fingerprint"):
        save_shard_embeddings(tmp_path, **ok, meta={"checkpoint_sha256": SHA})
    with pytest.raises(ValueError, match="shard must be"):
        save_shard_embeddings(tmp_path, **{**ok, "shard": "../s"}, meta={"model_fingerprint": SHA})
    with pytest.raises(ValueError, match="unique"):
        bad = {**ok, "keys": ["a", "a"], "image": _emb(2, 0), "text": _emb(2, 1)}
        save_shard_embeddings(tmp_path, **bad, meta={"model_fingerprint": SHA})
    with pytest.raises(ValueError, match=r"\[n=1, D\]"):
        save_shard_embeddings(
            tmp_path, **{**ok, "text": _emb(2, 1)}, meta={"model_fingerprint": SHA}
        )


def test_shard_reference_serves_batches(cache_dir: Path) -> None:
    write_shard_cache_meta(
        cache_dir,
        logit_scale=10.0,
        logit_bias=-5.0,
        model_fingerprint=SHA,
        model_kind="hf-siglip",
        meta={"dim": D, "embed_flops": 1234},
    )
    ref = load_shard_reference(cache_dir, urls=["/somewhere/a.tar", "/else/b.tar"])
    assert isinstance(ref, ShardCachedReference) and ref.setup_flops == 1234
    batch = ShardBatch(
        images=torch.zeros(2, 3, 16, 16, dtype=torch.uint8),
        tokens=torch.zeros(2, 4, dtype=torch.int64),
        keys=["k1", "x"],
        shards=["a", "b"],
    )
    emb = ref.embeddings_for(batch, torch.device("cpu"))
    assert emb.image.dtype == torch.float32 and tuple(emb.image.shape) == (2, D)
    assert torch.equal(emb.image[1], _emb(2, 1).half()[0].float())
    assert (emb.logit_scale, emb.logit_bias) == (10.0, -5.0)
    assert ref.flops(512) == 0
    with pytest.raises(ValueError, match="shard and key"):
        ref.embeddings_for(object(), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"shard 'c'"):
        load_shard_reference(cache_dir, urls=["/x/a.tar", "/x/c.tar"])


def test_shard_reference_refuses_other_folders(tmp_path: Path) -> None:
    pool_cache = save_embedding_cache(
        tmp_path / "pool",
        ids=torch.arange(3),
        image=_emb(3, 0),
        text=_emb(3, 1),
        logit_scale=1.0,
        logit_bias=0.0,
    )
    with pytest.raises(ValueError, match=r"strategy\.reference.*id-keyed pool cache"):
        load_shard_reference(pool_cache, urls=["a.tar"])
    with pytest.raises(ValueError, match=r"strategy\.reference.*does not exist"):
        load_shard_reference(tmp_path / "missing", urls=["a.tar"])
