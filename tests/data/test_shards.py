"""WebDataset shards: export, streaming (ranks, workers, resume) and every fault class."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curatorch.data import (
    FAULT_REASONS,
    DataConfig,
    DataFaultError,
    PairDataset,
    ShardFault,
    ShardSample,
    ShardStream,
    World,
    build_world,
    expand_shards,
    export_shards,
    iter_shard,
    shard_name,
)

CFG = DataConfig(raw_size=300, eval_size=50, retrieval_size=50, probe_shots=1)
PER_SHARD = 50  # 6 shards of 50


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(CFG)


@pytest.fixture(scope="module")
def shards(world: World, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("shards")
    export_shards(world.raw, out, samples_per_shard=PER_SHARD)
    return expand_shards(str(out / "{000000..000005}.tar"))


def _stream(world: World, urls: list[str], **kw) -> ShardStream:
    return ShardStream(urls, image_size=CFG.image_size, tokenizer=world.tokenizer, **kw)


def _ids(keys: list[str]) -> list[int]:
    return [int(k) for k in keys]


def _png(image: torch.Tensor | Image.Image) -> bytes:
    pil = (
        image if isinstance(image, Image.Image) else Image.fromarray(image.permute(1, 2, 0).numpy())
    )
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _members(data: PairDataset, i: int) -> list[tuple[str, bytes]]:
    key = f"{int(data.ids[i]):012d}"
    return [(f"{key}.png", _png(data.images[i])), (f"{key}.txt", data.captions([i])[0].encode())]


# ----------------------------------------------------------------------------- export


def test_export_writes_img2dataset_layout(world: World, shards: list[str], tmp_path: Path):
    assert [shard_name(u) for u in shards] == [f"{i:06d}" for i in range(6)]
    with tarfile.open(shards[1]) as tf:
        names = tf.getnames()
        assert len(names) == 3 * PER_SHARD
        i = PER_SHARD  # first example of shard 1
        key = f"{int(world.raw.ids[i]):012d}"
        assert names[:3] == [f"{key}.json", f"{key}.png", f"{key}.txt"]
        info = json.loads(tf.extractfile(names[0]).read())
        caption = tf.extractfile(names[2]).read().decode()
    assert info == {
        "id": int(world.raw.ids[i]),
        "noise": int(world.raw.noise[i]),
        "label": int(world.raw.labels[i]),
        "caption": caption,
    }
    assert caption == world.raw.captions([i])[0]
    # reproducible bytes, numbering from start_shard, no temporary files left behind
    again = export_shards(world.raw.subset(torch.arange(60)), tmp_path, samples_per_shard=50)
    more = export_shards(world.raw.subset(torch.arange(50)), tmp_path, start_shard=2)
    assert [p.name for p in again + more] == ["000000.tar", "000001.tar", "000002.tar"]
    assert again[0].read_bytes() == Path(shards[0]).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000000.tar", "000001.tar", "000002.tar"]


def test_export_validates_arguments(world: World, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="samples_per_shard"):
        export_shards(world.raw, tmp_path, samples_per_shard=0)
    with pytest.raises(ValueError, match="start_shard"):
        export_shards(world.raw, tmp_path, start_shard=-1)
    with pytest.raises(ValueError, match="image_format"):
        export_shards(world.raw, tmp_path, image_format="gif")
    with pytest.raises(ValueError, match="PairDataset"):
        export_shards(world.raw.images, tmp_path)  # type: ignore[arg-type]


def test_jpeg_export_decodes_close_to_the_original(world: World, tmp_path: Path) -> None:
    data = world.raw.subset(torch.arange(20))
    [path] = export_shards(data, tmp_path, image_format="jpg")
    samples = list(iter_shard(path, image_size=CFG.image_size))
    assert [s.key for s in samples] == [f"{i:012d}" for i in range(20)]
    diff = torch.stack([s.image for s in samples]).float() - data.images.float()
    assert diff.abs().mean() < 12


# ----------------------------------------------------------------------------- expand


def test_expand_shards(shards: list[str], tmp_path: Path) -> None:
    folder = Path(shards[0]).parent
    assert expand_shards(str(folder / "{000002..000004}.tar")) == shards[2:5]
    with pytest.raises(ValueError, match=r"data\.shards.*000006\.tar does not exist"):
        expand_shards(str(folder / "{000004..000009}.tar"))
    with pytest.raises(ValueError, match=r"data\.shards"):
        expand_shards("")
    with pytest.raises(ValueError, match=r"data\.shards.*brace"):
        expand_shards(str(folder / "{000000..000002.tar"))
    (tmp_path / "a").mkdir()
    _write_tar(tmp_path / "a" / "000000.tar", [])
    with pytest.raises(ValueError, match="same name '000000'"):
        expand_shards(f"{{{tmp_path / 'a'},{folder}}}/000000.tar")


# ----------------------------------------------------------------------------- stream


def test_stream_round_trip(world: World, shards: list[str]) -> None:
    stream = _stream(world, shards)
    batch = stream.next_batch(300)  # one epoch: every example once
    order = torch.argsort(torch.tensor(_ids(batch.keys)))
    assert sorted(_ids(batch.keys)) == world.raw.ids.tolist()
    assert torch.equal(batch.images[order], world.raw.images)
    assert torch.equal(batch.tokens[order], world.raw.tokens)
    assert batch.images.dtype == torch.uint8 and batch.tokens.dtype == torch.int64
    # the shards are read one after another, each in file order
    assert [batch.shards[i] for i in range(0, 300, PER_SHARD)] == [
        shard_name(shards[int(k) // PER_SHARD]) for k in batch.keys[::PER_SHARD]
    ]
    assert all(int(k) // PER_SHARD == int(s) for k, s in zip(batch.keys, batch.shards, strict=True))
    counts = stream.counts()
    assert counts["samples_ok"] == 300 and counts["samples_skipped"] == 0
    assert set(counts) == {
        "samples_ok",
        "samples_skipped",
        *(f"skipped_{r}" for r in FAULT_REASONS),
    }
    # endless: the next epoch is the same examples in another shard order
    second = stream.next_batch(300)
    assert sorted(_ids(second.keys)) == world.raw.ids.tolist()
    assert second.shards[::PER_SHARD] != batch.shards[::PER_SHARD]
    # same arguments, same batches
    assert _stream(world, shards).next_batch(300).keys == batch.keys


def test_ranks_partition_each_epoch(world: World, shards: list[str]) -> None:
    ranks = [_stream(world, shards, rank=r, world_size=2, seed=3) for r in range(2)]
    for _epoch in range(2):
        parts = [set(s.next_batch(150).keys) for s in ranks]  # 3 shards each
        assert not parts[0] & parts[1]
        assert sorted(_ids(list(parts[0] | parts[1]))) == world.raw.ids.tolist()
    with pytest.raises(ValueError, match="fewer than the 7 processes"):
        _stream(world, shards, rank=0, world_size=7)
    with pytest.raises(ValueError, match="rank"):
        _stream(world, shards, rank=2, world_size=2)
    with pytest.raises(ValueError, match="urls"):
        _stream(world, shards[0])  # type: ignore[arg-type]


def test_workers_give_the_same_batches(world: World, shards: list[str]) -> None:
    sizes = [70, 1, 130, 200, 99]  # crosses shard and epoch boundaries
    plain = _stream(world, shards[:5], seed=1)
    expected = [plain.next_batch(n) for n in sizes]
    with _stream(world, shards[:5], seed=1, num_workers=2) as stream:
        for n, want in zip(sizes, expected, strict=True):
            got = stream.next_batch(n)
            assert got.keys == want.keys and got.shards == want.shards
            assert torch.equal(got.images, want.images) and torch.equal(got.tokens, want.tokens)
        # a position saved without workers resumes with workers
        state = plain.state_dict()
        after = plain.next_batch(40)
        stream.load_state_dict(state)
        assert stream.next_batch(40).keys == after.keys


@pytest.mark.parametrize("first", [30, 50, 299, 310])
def test_state_dict_resumes_exactly(world: World, shards: list[str], first: int) -> None:
    stream = _stream(world, shards, seed=5)
    stream.next_batch(first)
    state = json.loads(json.dumps(stream.state_dict()))  # JSON-able
    expected = [stream.next_batch(n) for n in (64, 200)]
    fresh = _stream(world, shards, seed=5)
    fresh.load_state_dict(state)
    for want in expected:
        got = fresh.next_batch(len(want.keys))
        assert got.keys == want.keys and torch.equal(got.images, want.images)
    assert fresh.counts() == stream.counts()


def test_state_of_another_stream_is_refused(world: World, shards: list[str]) -> None:
    state = _stream(world, shards, seed=5).state_dict()
    with pytest.raises(ValueError, match="seed"):
        _stream(world, shards, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="num_shards"):
        _stream(world, shards[:4], seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="not a ShardStream state"):
        _stream(world, shards).load_state_dict({"epoch": 0})


def test_argument_validation(world: World, shards: list[str]) -> None:
    for kw, name in (
        ({"image_size": 0}, "image_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"max_corrupt_ratio": 1.5}, "max_corrupt_ratio"),
        ({"tokenizer": object()}, "tokenizer"),
    ):
        args = {"image_size": 16, "tokenizer": world.tokenizer, **kw}
        with pytest.raises(ValueError, match=name):
            ShardStream(shards, **args)
    with pytest.raises(ValueError, match="n must be"):
        _stream(world, shards).next_batch(0)


# ----------------------------------------------------------------------------- faults


@pytest.fixture
def faulty(world: World, tmp_path: Path) -> Path:
    """One shard: 10 good samples and one of each per-sample fault, interleaved."""
    raw = world.raw
    members: list[tuple[str, bytes]] = []
    for i in range(10):
        members += _members(raw, i)
    gray = Image.fromarray(raw.images[20, 0].numpy(), "L")  # 16x16 grayscale
    rgba = Image.new("RGBA", (24, 20), (10, 200, 30, 128))  # other size and mode
    members += [
        ("bad_img.png", b"\x89PNG this is not an image"),
        ("bad_img.txt", b"a red circle"),
        ("empty.png", _png(raw.images[11])),
        ("empty.txt", b"   \n"),
        ("latin1.png", _png(raw.images[12])),
        ("latin1.txt", "rouge cercle été".encode("latin-1")),
        ("gray.png", _png(gray)),
        ("gray.txt", b"a gray picture"),
        ("rgba.png", _png(rgba)),
        ("rgba.txt", b"a green box"),
        ("000000000003.png", _png(raw.images[13])),  # duplicate key, not adjacent
        ("000000000003.txt", b"again"),
        ("noimage.txt", b"a caption alone"),
        ("notext.png", _png(raw.images[14])),
        ("cut.png", _png(raw.images[15])[:40]),  # a truncated image file
        ("cut.txt", b"a cut image"),
        ("last.png", _png(raw.images[16])),
        ("last.txt", b"  a big red circle\n"),
    ]
    return _write_tar(tmp_path / "faulty.tar", members)


def test_every_fault_is_skipped_and_counted(world: World, faulty: Path) -> None:
    stream = _stream(world, [str(faulty)], max_corrupt_ratio=1.0)
    batch = stream.next_batch(13)
    assert batch.keys == [f"{i:012d}" for i in range(10)] + ["gray", "rgba", "last"]
    counts = stream.counts()
    assert counts == {
        "samples_ok": 13,
        "samples_skipped": 7,
        "skipped_truncated_tar": 0,
        "skipped_corrupt_image": 2,
        "skipped_bad_image_size": 0,
        "skipped_bad_image_mode": 0,
        "skipped_empty_caption": 1,
        "skipped_bad_text": 1,
        "skipped_duplicate_key": 1,
        "skipped_missing_member": 2,
        "skipped_failed_download": 0,
        "skipped_unreadable_shard": 0,
    }
    # grayscale is converted to RGB, other sizes are resized to image_size
    gray = batch.images[10]
    assert torch.equal(gray[0], world.raw.images[20, 0]) and torch.equal(gray[0], gray[2])
    assert tuple(batch.images.shape) == (13, 3, 16, 16)
    assert batch.images[11].flatten(1).float().mean(1).round().tolist() == [10.0, 200.0, 30.0]
    assert torch.equal(batch.tokens[12:], world.tokenizer.encode(["a big red circle"]))
    # the same faults through iter_shard, with where they are
    faults = [f for f in iter_shard(faulty, image_size=16) if isinstance(f, ShardFault)]
    assert [(f.reason, f.key) for f in faults] == [
        ("corrupt_image", "bad_img"),
        ("empty_caption", "empty"),
        ("bad_text", "latin1"),
        ("duplicate_key", "000000000003"),
        ("missing_member", "noimage"),
        ("missing_member", "notext"),
        ("corrupt_image", "cut"),
    ]


def test_faults_are_counted_once_across_resume_and_workers(world: World, faulty: Path) -> None:
    urls = [str(faulty)]
    stream = _stream(world, urls, max_corrupt_ratio=1.0)
    stream.next_batch(11)  # stops on "gray", past three faults
    state = stream.state_dict()
    assert stream.counts()["samples_skipped"] == 3
    rest = stream.next_batch(15)  # the rest of this epoch and all 13 of the next
    fresh = _stream(world, urls, max_corrupt_ratio=1.0, num_workers=1)
    fresh.load_state_dict(state)
    assert fresh.next_batch(15).keys == rest.keys
    assert fresh.counts() == stream.counts()
    assert stream.counts()["samples_skipped"] == 7 + 7  # each fault once per epoch
    fresh.close()


def test_truncated_tar_keeps_the_samples_before_the_damage(
    world: World, shards: list[str], tmp_path: Path
) -> None:
    data = Path(shards[0]).read_bytes()
    with tarfile.open(shards[0]) as tf:
        infos = tf.getmembers()
    sample_10 = infos[3 * 10]  # .json of sample 10
    cuts = {
        "mid_member": infos[3 * 10 + 1].offset_data + 30,  # inside sample 10's image
        "boundary": sample_10.offset,  # right before sample 10's first header
        "mid_header": sample_10.offset + 100,
    }
    for label, cut in cuts.items():
        path = tmp_path / f"{label}.tar"
        path.write_bytes(data[:cut])
        stream = _stream(world, [str(path), shards[1]], max_corrupt_ratio=1.0)
        batch = stream.next_batch(59)  # continues with the next shard
        got = [k for k, s in zip(batch.keys, batch.shards, strict=True) if s == label]
        # the sample being read when the tar ends is the fault (when a header is cut, the
        # reader cannot know whether sample 9 had more members)
        assert got == [f"{i:012d}" for i in range(len(got))], label
        assert len(got) == (10 if label == "mid_member" else 9), label
        counts = stream.counts()
        assert counts["skipped_truncated_tar"] == 1 and counts["samples_skipped"] == 1, label
    # garbage or empty files are one truncated_tar fault each
    (tmp_path / "garbage.tar").write_bytes(b"not a tar file at all" * 100)
    (tmp_path / "empty.tar").write_bytes(b"")
    faults = [list(iter_shard(tmp_path / n, image_size=16)) for n in ("garbage.tar", "empty.tar")]
    assert [[f.reason for f in fs] for fs in faults] == [["truncated_tar"], ["truncated_tar"]]


def test_wrong_image_mode_and_oversized_images_are_skipped_and_counted(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gray, palette and other-sized images are converted and resized (see the faulty
    fixture); a 16-bit image has no faithful RGB conversion and an image past Pillow's
    decompression-bomb limit is refused: both skipped, counted under their reasons."""
    wide = np.full((4, 4), 40000, dtype=np.uint16)
    members = [
        *_members(world.raw, 0),
        ("deep.png", _png(Image.fromarray(wide))),  # mode I;16
        ("deep.txt", b"a sixteen-bit picture"),
        ("huge.png", _png(Image.new("RGB", (40, 30), (1, 2, 3)))),
        ("huge.txt", b"a picture past the pixel limit"),
        *_members(world.raw, 1),
    ]
    path = _write_tar(tmp_path / "modes.tar", members)
    assert Image.open(io.BytesIO(members[2][1])).mode.startswith("I;16")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 1200 > 2 x 500: a bomb
    stream = _stream(world, [str(path)], max_corrupt_ratio=1.0)
    assert stream.next_batch(2).keys == ["000000000000", "000000000001"]
    counts = stream.counts()
    assert counts["skipped_bad_image_mode"] == 1 and counts["skipped_bad_image_size"] == 1
    assert counts["samples_skipped"] == 2 and counts["samples_ok"] == 2
    faults = {f.key: f for f in iter_shard(path, image_size=16) if isinstance(f, ShardFault)}
    assert faults["deep"].reason == "bad_image_mode" and "I;16" in faults["deep"].detail
    assert faults["huge"].reason == "bad_image_size"


def _shards_with_corrupt(world: World, out: Path, corrupt: set[int]) -> list[str]:
    """The raw pool as 6 shards of 50 with the images of ``corrupt`` replaced by garbage."""
    urls = []
    for s in range(6):
        members: list[tuple[str, bytes]] = []
        for i in range(s * PER_SHARD, (s + 1) * PER_SHARD):
            sample = _members(world.raw, i)
            if i in corrupt:
                sample[0] = (sample[0][0], b"garbage")
            members += sample
        urls.append(str(_write_tar(out / f"{s:06d}.tar", members)))
    return urls


def test_five_percent_corrupt_completes(world: World, tmp_path: Path) -> None:
    corrupt = set(range(3, 300, 20))  # 15 of 300
    urls = _shards_with_corrupt(world, tmp_path, corrupt)
    stream = _stream(world, urls, max_corrupt_ratio=0.1)
    for _epoch in range(2):
        batch = stream.next_batch(285)
        assert not set(_ids(batch.keys)) & corrupt
    assert stream.counts()["skipped_corrupt_image"] == 30


def test_too_many_faults_stop_naming_the_shard(world: World, tmp_path: Path) -> None:
    corrupt = set(range(150, 200)) | {3, 60}  # all of shard 3 and two elsewhere
    urls = _shards_with_corrupt(world, tmp_path, corrupt)
    stream = _stream(world, urls, max_corrupt_ratio=0.1)
    with pytest.raises(DataFaultError) as info:
        for _ in range(4):
            stream.next_batch(100)
    message = str(info.value)
    assert "000003.tar" in message and "data.max_corrupt_ratio=0.1" in message
    assert info.value.shard == urls[3] and info.value.ratio > 0.1
    assert "corrupt_image=" in message
    # below min_samples_for_ratio nothing is raised yet
    early = _stream(world, [urls[3], urls[0]], max_corrupt_ratio=0.1, min_samples_for_ratio=1000)
    assert len(early.next_batch(50).keys) == 50


def test_shards_without_any_sample_stop_the_stream(world: World, tmp_path: Path) -> None:
    urls = [str(_write_tar(tmp_path / f"{i}.tar", [])) for i in range(2)]
    stream = _stream(world, urls, max_corrupt_ratio=1.0)
    with pytest.raises(DataFaultError, match="no usable sample"):
        stream.next_batch(1)


def test_iter_shard_skip_passes_over_samples(world: World, faulty: Path) -> None:
    items = list(iter_shard(faulty, image_size=16))
    skipped = list(iter_shard(faulty, image_size=16, skip=12))
    assert [i.index for i in skipped] == [i.index for i in items[12:]]
    assert isinstance(items[0], ShardSample) and items[0].caption == world.raw.captions([0])[0]


def test_a_shard_that_vanishes_mid_run_is_skipped_and_counted(
    world: World, shards: list[str], tmp_path: Path
) -> None:
    import shutil

    urls = []
    for url in shards[:3]:
        shutil.copy(url, tmp_path / Path(url).name)
        urls.append(str(tmp_path / Path(url).name))
    stream = _stream(world, urls, max_corrupt_ratio=1.0, min_samples_for_ratio=0)
    first = stream.next_batch(10)  # reading has started
    gone = next(u for u in urls if shard_name(u) not in first.shards)
    Path(gone).unlink()
    batch = stream.next_batch(2 * PER_SHARD + 3 * PER_SHARD)  # into the next epoch
    assert shard_name(gone) not in batch.shards
    counts = stream.counts()
    # one fault for each time the stream came to the missing shard, the rest read on
    assert counts["skipped_unreadable_shard"] == counts["samples_skipped"] >= 1
    assert counts["samples_ok"] == 10 + len(batch)
    fault = next(iter(iter_shard(gone, image_size=16)))
    assert isinstance(fault, ShardFault) and fault.reason == "unreadable_shard"
    assert "FileNotFoundError" in fault.detail
