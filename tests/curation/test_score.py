"""Score tables: the scores against slow twins, pool and shards alike, resuming, refusals."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from curatorch.curation import (
    fault_summary,
    load_score_table,
    pair_scores,
    parts_folder,
    score_pool,
    score_shards,
)
from curatorch.curation import score as score_module
from curatorch.data import NOISE_KINDS, World
from curatorch.losses import sigmoid_pair_losses
from curatorch.models import TwoTowerAdapter
from curatorch.selection import ModelEmbeddings


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def test_pair_scores_are_the_diagonal_of_the_sigmoid_pair_losses() -> None:
    ref = ModelEmbeddings(_unit(9, 8, 0), _unit(9, 8, 1), 10.0, -5.0)
    learner = ModelEmbeddings(_unit(9, 8, 2), _unit(9, 8, 3), 3.0, 1.0)
    got = pair_scores(reference=ref, learner=learner)
    ref_pairs = sigmoid_pair_losses(ref.image, ref.text, logit_scale=10.0, logit_bias=-5.0)
    learner_pairs = sigmoid_pair_losses(
        learner.image, learner.text, logit_scale=3.0, logit_bias=1.0
    )
    cosine = torch.stack([torch.dot(ref.image[i], ref.text[i]) for i in range(9)])
    torch.testing.assert_close(got["cosine"], cosine)
    torch.testing.assert_close(got["ref_loss"], ref_pairs.diagonal())
    torch.testing.assert_close(got["learner_loss"], learner_pairs.diagonal())
    torch.testing.assert_close(got["learnability"], (learner_pairs - ref_pairs).diagonal())
    assert set(pair_scores(reference=ref)) == {"cosine", "ref_loss"}
    with pytest.raises(ValueError, match="same pairs, got 3 and 9"):
        pair_scores(reference=ref, learner=ModelEmbeddings(_unit(3, 8, 4), _unit(3, 8, 5), 1, 0))


def _slow_twin(folder: Path, world: World, rows: list[int]) -> dict[str, torch.Tensor]:
    """Scores of ``rows`` of the raw pool straight from the model's towers."""
    adapter = TwoTowerAdapter.load(folder)
    model, patch = adapter.module, adapter.default_patch_size
    with torch.no_grad():
        img = model.encode_image(world.raw.image_batch(torch.tensor(rows)), patch)
        txt = model.encode_text(world.raw.tokens[rows])
    t, b = float(model.logit_scale.detach()), float(model.logit_bias.detach())
    pairs = sigmoid_pair_losses(img, txt, logit_scale=t, logit_bias=b)  # [n, n]
    return {"cosine": F.cosine_similarity(img, txt, dim=1), "ref_loss": pairs.diagonal()}


def test_pool_table_equals_a_slow_twin(world: World, models: dict, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    summary = score_pool(
        models["reference"],
        pool=world.raw,
        out=out,
        learner=models["learner"],
        batch_size=32,
        progress=False,
    )
    table = load_score_table(out)
    assert summary["rows"] == len(table) == len(world.raw) and not parts_folder(out).exists()
    assert table.scores == ["cosine", "ref_loss", "learner_loss", "learnability"]
    assert table.table.column_names[:5] == ["__key__", "shard", "id", "clean", "noise"]
    ids = world.raw.ids.numpy()
    assert table.column("__key__").tolist() == [f"{i:012d}" for i in ids]
    assert (table.column("id") == ids).all() and set(table.column("shard")) == {"raw"}
    assert (table.column("clean") == (world.raw.noise == 0).numpy()).all()
    assert table.column("noise").tolist() == [NOISE_KINDS[c] for c in world.raw.noise.tolist()]
    rows = [0, 7, 50, 119]
    ref, learner = (_slow_twin(models[k], world, rows) for k in ("reference", "learner"))
    for name, want in (
        ("cosine", ref["cosine"]),
        ("ref_loss", ref["ref_loss"]),
        ("learner_loss", learner["ref_loss"]),
        ("learnability", learner["ref_loss"] - ref["ref_loss"]),
    ):
        got = torch.from_numpy(table.column(name)[rows])
        torch.testing.assert_close(got, want.float(), atol=2e-5, rtol=1e-5)
    fingerprint = TwoTowerAdapter.load(models["reference"]).fingerprint()
    meta = pq.read_schema(out).metadata
    assert meta[b"reference_fingerprint"].decode() == fingerprint
    assert table.meta["reference"]["fingerprint"] == fingerprint
    assert table.meta["learner"]["fingerprint"] == summary["learner_fingerprint"] != fingerprint


def test_shard_table_agrees_with_the_pool_table(
    world: World, models: dict, shards: list[str], tmp_path: Path
) -> None:
    pool_out, shard_out = tmp_path / "pool.parquet", tmp_path / "shards.parquet"
    score_pool(models["reference"], pool=world.raw, out=pool_out, progress=False)
    summary = score_shards(
        models["reference"],
        urls=shards,
        tokenizer=world.tokenizer,
        image_size=16,
        out=shard_out,
        batch_size=16,
        progress=False,
    )
    pool, table = load_score_table(pool_out), load_score_table(shard_out)
    assert summary["shards"] == 3 and summary["counts"]["samples_ok"] == 120
    assert not table.is_pool and table.scores == ["cosine", "ref_loss"]
    assert table.column("__key__").tolist() == pool.column("__key__").tolist()
    assert table.column("shard").tolist() == [f"{i // 40:06d}" for i in range(120)]
    assert [s["rows"] for s in table.shards] == [40, 40, 40]
    assert [s["url"] for s in table.shards] == shards
    for name in ("cosine", "ref_loss"):
        np.testing.assert_allclose(table.column(name), pool.column(name), atol=2e-5)


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, call: int) -> list[str]:
    """Ctrl-C when the ``call``-th unit starts scoring; returns the units scored."""
    real, seen = score_module._score_unit, []

    def score_unit(unit, *args, **kwargs):
        seen.append(unit.name)
        if len(seen) == call:
            raise KeyboardInterrupt
        return real(unit, *args, **kwargs)

    monkeypatch.setattr(score_module, "_score_unit", score_unit)
    return seen


def _score(models: dict, world: World, urls: list[str], out: Path, **kw) -> dict:
    return score_shards(
        kw.pop("reference", models["reference"]),
        urls=urls,
        tokenizer=world.tokenizer,
        image_size=16,
        out=out,
        progress=False,
        **kw,
    )


def test_resume_after_interruption_gives_the_same_table(
    world: World, models: dict, shards: list[str], tmp_path: Path, monkeypatch
) -> None:
    whole = tmp_path / "whole.parquet"
    _score(models, world, shards, whole, learner=models["learner"])
    out = tmp_path / "scores.parquet"
    seen = _interrupt_at(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt, match="after 2 of 3 shards; rerun"):
        _score(models, world, shards, out, learner=models["learner"])
    assert not out.exists()
    assert sorted(p.name for p in parts_folder(out).iterdir()) == [
        "000000.parquet",
        "000001.parquet",
    ]
    seen.clear()
    summary = _score(models, world, shards, out, learner=models["learner"])
    assert seen == ["000002"] and summary["resumed_shards"] == 2
    assert pq.read_table(out).equals(pq.read_table(whole), check_metadata=True)
    assert not parts_folder(out).exists()
    seen.clear()  # a finished table: nothing left to do
    assert _score(models, world, shards, out, learner=models["learner"])["resumed_shards"] == 3
    assert seen == []


def test_foreign_partial_output_is_refused(
    world: World, models: dict, shards: list[str], tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "scores.parquet"
    _interrupt_at(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _score(models, world, shards, out)
    monkeypatch.undo()
    part = parts_folder(out) / "000000.parquet"
    before = part.read_bytes()
    with pytest.raises(ValueError, match=f"{part} was scored with another reference model"):
        _score(models, world, shards, out, reference=models["learner"])
    with pytest.raises(ValueError, match="another learner: no learner, not curatorch"):
        _score(models, world, shards, out, learner=models["learner"])
    assert part.read_bytes() == before and not out.exists()
    _score(models, world, shards, out, reference=models["learner"], overwrite=True)
    # a finished table of another model is refused too, and replaced with overwrite
    with pytest.raises(ValueError, match=f"score table {out} was scored with another refer"):
        _score(models, world, shards, out)
    with pytest.raises(ValueError, match="other shards"):
        _score(models, world, shards[:2], out, reference=models["learner"])
    assert _score(models, world, shards, out, overwrite=True)["resumed_shards"] == 0


def _png(value: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (value, 40, 80)).save(buf, format="PNG")
    return buf.getvalue()


def test_faults_are_counted_and_summarised(world: World, models: dict, tmp_path: Path) -> None:
    shard = tmp_path / "bad.tar"
    with tarfile.open(shard, "w") as tf:
        for key, image in (("a", _png(1)), ("b", b"broken"), ("c", _png(2))):
            for name, data in ((f"{key}.png", image), (f"{key}.txt", b"a red circle")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    summary = _score(models, world, [str(shard)], tmp_path / "s.parquet")
    table = load_score_table(tmp_path / "s.parquet")
    assert table.column("__key__").tolist() == ["a", "c"]
    assert summary["counts"]["skipped_corrupt_image"] == 1
    assert table.shards[0]["samples_skipped"] == 1
    assert fault_summary(summary["counts"]) == ("faults: 1 of 3 samples skipped (corrupt_image=1)")


def test_arguments_are_checked(world: World, models: dict, shards: list[str], tmp_path) -> None:
    out = tmp_path / "s.parquet"
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        _score(models, world, shards, out, batch_size=0)
    with pytest.raises(ValueError, match="urls must be a non-empty sequence"):
        _score(models, world, shards[0], out)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="have the same name '000000'"):
        _score(models, world, [shards[0], shards[0]], out)
    out.mkdir()
    with pytest.raises(ValueError, match="exists and is not a file"):
        _score(models, world, shards, out)
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ValueError, match="is not a curatorch score table"):
        _score(models, world, shards, tmp_path / "x.parquet")
