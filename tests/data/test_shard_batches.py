"""Reading one shard in batches with counted faults, and its raw members:
``iter_shard_batches``, ``iter_shard_members``, ``fault_counts``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from PIL import Image

from curatorch.data import (
    FAULT_REASONS,
    fault_counts,
    iter_shard,
    iter_shard_batches,
    iter_shard_members,
)


def _png(value: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (value, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def shard(tmp_path: Path) -> Path:
    """Seven samples: five usable, one corrupt image, one empty caption; then sample 'a'
    again (a duplicate key)."""
    from webdataset import TarWriter

    path = tmp_path / "000000.tar"
    with open(path, "wb") as fh, TarWriter(fh, encoder=False) as writer:
        for i, key in enumerate("abcdefg"):
            image = b"not a png" if key == "c" else _png(10 * i)
            caption = b"  " if key == "e" else f"caption {key}".encode()
            writer.write({"__key__": key, "png": image, "txt": caption})
        writer.write({"__key__": "a", "png": _png(99), "txt": b"again"})
    return path


def test_fault_counts_are_zero_for_every_reason() -> None:
    counts = fault_counts()
    assert counts == {
        "samples_ok": 0,
        "samples_skipped": 0,
        **{f"skipped_{r}": 0 for r in FAULT_REASONS},
    }
    counts["samples_ok"] += 1
    assert fault_counts()["samples_ok"] == 0  # a new dict each time


def test_batches_hold_the_usable_samples_in_order_and_count_faults(shard: Path) -> None:
    counts = fault_counts()
    batches = list(iter_shard_batches(shard, image_size=4, batch_size=2, counts=counts))
    assert [keys for keys, _, _ in batches] == [["a", "b"], ["d", "f"], ["g"]]
    assert [images.shape for _, images, _ in batches] == [
        (2, 3, 4, 4),
        (2, 3, 4, 4),
        (1, 3, 4, 4),
    ]
    assert all(images.dtype == torch.uint8 for _, images, _ in batches)
    assert [c for _, _, caps in batches for c in caps] == [f"caption {k}" for k in "abdfg"]
    assert counts["samples_ok"] == 5 and counts["samples_skipped"] == 3
    assert counts["skipped_corrupt_image"] == 1
    assert counts["skipped_empty_caption"] == 1
    assert counts["skipped_duplicate_key"] == 1
    # the same images as the sample-by-sample reader
    one = [s.image for s in iter_shard(shard, image_size=4) if hasattr(s, "image")]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.stack(one))


def test_batches_validate_batch_size(shard: Path) -> None:
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        next(iter_shard_batches(shard, image_size=4, batch_size=0))


def test_members_are_the_raw_bytes_without_duplicates(shard: Path) -> None:
    samples = list(iter_shard_members(shard))
    assert [key for key, _ in samples] == list("abcdefg")  # faulty ones too, not the repeat
    assert samples[2][0] == "c"
    members = samples[2][1]
    assert members == {"png": b"not a png", "txt": b"caption c"}
    assert samples[0][1]["txt"] == b"caption a"


def test_members_stop_at_damage(shard: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar"
    data = shard.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    keys = [key for key, _ in iter_shard_members(cut)]
    assert keys and keys == list("abcdefg")[: len(keys)] and len(keys) < 7
