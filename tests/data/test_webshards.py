"""Web-like shards: the exact img2dataset layout, determinism, exact noise fractions."""

from __future__ import annotations

import json
import re
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from curatorch.data import iter_captions, iter_shard, web_class_names, web_pairs, write_web_shards
from curatorch.data._webcaptions import WEB_BOILERPLATE
from curatorch.data.shards import ShardSample, ShardStream, fault_counts, iter_shard_batches

JSON_FIELDS = ["caption", "url", "key", "status", "error_message", "width", "height",
               "original_width", "original_height", "exif", "sha256"]  # fmt: skip


def _members(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf]


def _read(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf}  # type: ignore[union-attr]


def test_layout_matches_img2dataset(tmp_path: Path) -> None:
    out = tmp_path / "web"
    meta = write_web_shards(
        out, pairs=25, shard_size=10, seed=3, image_size=32, failed=0.2, labelled=True
    )
    names = sorted(p.name for p in out.iterdir())
    shards = ["00000", "00001", "00002"]
    expected = [f"{s}{x}" for s in shards for x in (".parquet", ".tar", "_stats.json")]
    assert names == sorted([*expected, "classes.txt", "web_shards.json"])
    assert meta["pattern"] == str(out / "{00000..00002}.tar")
    for shard_id, s in enumerate(shards):
        table = pq.read_table(out / f"{s}.parquet")
        assert table.column_names == ["label", *JSON_FIELDS]
        rows = table.to_pylist()
        # keys: shard * 10**ceil(log10(10)) + index, 5 + 1 digits (img2dataset compute_key)
        assert [r["key"] for r in rows] == [f"{shard_id * 10 + j:06d}" for j in range(len(rows))]
        ok = [r for r in rows if r["status"] == "success"]
        failed = [r for r in rows if r["status"] == "failed_to_download"]
        assert len(ok) + len(failed) == len(rows)
        members = _members(out / f"{s}.tar")
        assert members == [f"{r['key']}.{e}" for r in ok for e in ("jpg", "json", "txt")]
        data = _read(out / f"{s}.tar")
        for r in ok:
            info = json.loads(data[f"{r['key']}.json"])
            assert list(info) == ["label", *JSON_FIELDS] and info == r
            assert data[f"{r['key']}.txt"].decode() == r["caption"]
            assert (info["width"], info["height"]) == (32, 32)
            assert info["original_width"] >= 72 and info["exif"] == "{}"
            assert re.fullmatch(r"[0-9a-f]{64}", info["sha256"])
            assert info["label"] in web_class_names()
        for r in failed:
            assert r["error_message"] and r["width"] is None and r["sha256"] is None
        stats = json.loads((out / f"{s}_stats.json").read_text())
        assert list(stats) == ["count", "successes", "failed_to_download", "failed_to_resize",
                               "duration", "start_time", "end_time", "status_dict"]  # fmt: skip
        assert (stats["count"], stats["successes"]) == (len(rows), len(ok))
        assert stats["failed_to_download"] == len(failed)
        assert sum(stats["status_dict"].values()) == len(rows)
    assert meta["noise_counts"]["failed"] == 5 and meta["successes"] == 20
    assert (out / "classes.txt").read_text().splitlines() == web_class_names()
    assert set(meta["classes"]) <= set(web_class_names()) and meta["classes"]
    samples = [x for s in shards for x in iter_shard(out / f"{s}.tar", image_size=16)]
    assert len(samples) == 20 and all(isinstance(x, ShardSample) for x in samples)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    kw = {"pairs": 12, "shard_size": 6, "image_size": 16, "failed": 0.1}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        write_web_shards(tmp_path / name, seed=seed, **kw)
    for f in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a/00000.tar").read_bytes() != (tmp_path / "c/00000.tar").read_bytes()


def test_noise_fractions_are_exact() -> None:
    kw = {"seed": 5, "misaligned": 0.25, "boilerplate": 0.1, "degraded": 0.15, "failed": 0.05}
    pairs = list(web_pairs(400, **kw))
    counts = Counter(p.noise for p in pairs)
    assert counts == {"clean": 180, "misaligned": 100, "boilerplate": 40, "degraded": 60,
                      "failed": 20}  # fmt: skip
    clean = {p.caption for p in web_pairs(400, seed=5, misaligned=0, boilerplate=0, degraded=0)}
    for p in pairs:
        if p.noise == "boilerplate":
            shapes = {
                re.sub(r"#", r"\\d", re.escape(t).replace(r"\#", "#")) for t in WEB_BOILERPLATE
            }
            assert any(re.fullmatch(s, p.caption) for s in shapes), p.caption
        elif p.noise == "misaligned":  # the clean caption of another sample
            assert p.caption in clean
        assert (p.degradation != "") == (p.noise == "degraded")
    # captions are free-form: many sentence shapes and lengths
    lengths = Counter(len(p.caption.split()) for p in pairs if p.noise == "clean")
    assert len(lengths) >= 8


def test_clean_subset_has_only_aligned_undegraded_pairs(tmp_path: Path) -> None:
    meta = write_web_shards(
        tmp_path / "c", pairs=20, shard_size=20, misaligned=0, boilerplate=0, degraded=0
    )
    assert meta["noise_counts"] == {"clean": 20, "misaligned": 0, "boilerplate": 0,
                                    "degraded": 0, "failed": 0}  # fmt: skip
    assert len(list(iter_captions([tmp_path / "c/00000.tar"]))) == 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pairs": 0}, "pairs must be an int >= 1, got 0"),
        ({"pairs": 5, "shard_size": 0}, "shard_size must be an int >= 1"),
        ({"pairs": 5, "misaligned": 1.5}, r"misaligned must be a number in \[0, 1\], got 1.5"),
        ({"pairs": 5, "misaligned": 0.6, "degraded": 0.6}, "must sum to <= 1"),
        ({"pairs": 5, "image_size": 4}, "image_size must be an int >= 8"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as exc:
        write_web_shards(tmp_path / "x", **kwargs)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_a_folder_with_other_files_is_refused_and_overwrite_replaces(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty: it is not web shards"):
        write_web_shards(tmp_path / "other", pairs=4)
    write_web_shards(tmp_path / "w", pairs=8, shard_size=4)
    with pytest.raises(ValueError, match="overwrite"):
        write_web_shards(tmp_path / "w", pairs=4, shard_size=4)
    write_web_shards(tmp_path / "w", pairs=4, shard_size=4, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "w").glob("*.tar")) == ["00000.tar"]


class _ZeroTokenizer:
    def encode(self, captions: list[str]) -> torch.Tensor:
        return torch.zeros(len(captions), 4, dtype=torch.int64)


def _count(urls: list[str]) -> dict[str, int]:
    counts = fault_counts()
    for url in urls:
        for _ in iter_shard_batches(url, image_size=16, batch_size=4, counts=counts):
            pass
    return counts


def test_failed_samples_in_the_tar_are_counted_as_failed_download(tmp_path: Path) -> None:
    kw = {"pairs": 20, "shard_size": 10, "image_size": 16, "failed": 0.25}
    meta = write_web_shards(tmp_path / "w", failed_in_tar=True, **kw)
    assert meta["failed_in_tar"] and meta["noise_counts"]["failed"] == 5
    urls = [str(tmp_path / "w" / f"{n}.tar") for n in meta["shards"]]
    keys = Counter(m.split(".")[0] for m in _members(Path(urls[0])))
    stats = json.loads((tmp_path / "w" / "00000_stats.json").read_text())
    data = _read(Path(urls[0]))
    failed = [k for k in keys if f"{k}.jpg" not in data]  # a .txt and a .json, no image
    assert len(failed) == stats["failed_to_download"] > 0 and all(keys[k] == 2 for k in failed)
    assert json.loads(data[f"{failed[0]}.json"])["status"] == "failed_to_download"
    counts = _count(urls)
    assert counts["samples_ok"] == 15
    assert (counts["skipped_failed_download"], counts["samples_skipped"]) == (5, 5)
    fault = next(f for f in iter_shard(urls[0], image_size=16) if not isinstance(f, ShardSample))
    assert fault.reason == "failed_download" and "failed_to_download" in fault.detail
    assert len(list(iter_captions(urls))) == 15  # failed samples have no usable caption
    # the training stream counts them under the same reason
    stream = ShardStream(urls, image_size=16, tokenizer=_ZeroTokenizer(), max_corrupt_ratio=1.0)
    stream.next_batch(16)  # all of the first epoch (shard order is seeded)
    got = stream.counts()
    assert got["skipped_failed_download"] == got["samples_skipped"] >= 5
    # by default (img2dataset's webdataset output) failed samples are not in the tar at all
    write_web_shards(tmp_path / "d", **kw)
    counts = _count([str(tmp_path / "d" / Path(u).name) for u in urls])
    assert (counts["samples_ok"], counts["samples_skipped"]) == (15, 0)
