"""WebDataset tar shards: export a pool to shards, stream shards with every fault counted.

A shard is a plain tar file in the img2dataset layout: the members of one sample share a
key (the file name up to its first dot) and are stored next to each other,

```
000000000042.png    image
000000000042.txt    caption (UTF-8)
000000000042.json   {"id": 42, "noise": 0, "label": 7, "caption": "..."}
```

:func:`export_shards` writes a :class:`~curatorch.data.PairDataset` in that layout;
:class:`ShardStream` reads shards back as an endless stream of batches for one process of
a data-parallel job. Web data is dirty, so every sample that cannot be used is skipped
*and counted* under one reason of :data:`FAULT_REASONS`; a run whose fraction of skipped
samples exceeds ``data.max_corrupt_ratio`` stops with :class:`DataFaultError` naming the
shard with the most faults.

The order of samples is a function of ``(urls, seed, rank, world_size)`` only: epoch
``e`` reads the shards in the permutation seeded with ``seed + e``, rank ``r`` takes every
``world_size``-th shard of it starting at ``r``, and reads its shards one after another,
each in file order. Dataloader workers decode this rank's shards in parallel (worker ``k``
of ``K`` takes every ``K``-th), and the main process puts the decoded samples back into
that order, so the batches do not depend on ``num_workers``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from PIL import Image

from curatorch.data.dataset import PairDataset
from curatorch.data.images import pil_to_tensor, tensor_to_pil
from curatorch.fileio import atomic_write

__all__ = [
    "FAULT_REASONS",
    "IMAGE_EXTENSIONS",
    "DataFaultError",
    "ShardBatch",
    "ShardFault",
    "ShardSample",
    "ShardStream",
    "check_shard_urls",
    "expand_shards",
    "export_shards",
    "fault_counts",
    "iter_captions",
    "iter_shard",
    "iter_shard_batches",
    "iter_shard_members",
    "shard_name",
]

# Why a shard sample was skipped; ShardStream.counts() reports each as "skipped_<reason>".
FAULT_REASONS = (
    "truncated_tar",  # the tar ends early or is unreadable: the rest of the shard
    "corrupt_image",  # the image bytes do not decode
    "bad_image_size",  # too large to open (decompression bomb) or empty
    "bad_image_mode",  # no faithful 8-bit RGB conversion (16-bit, float, LAB, ...)
    "empty_caption",  # the caption is empty or whitespace
    "bad_text",  # the caption is not UTF-8
    "duplicate_key",  # a key seen before in the same shard
    "missing_member",  # an image without a caption or a caption without an image
    "failed_download",  # img2dataset marked it failed: its .json status is not "success"
    "unreadable_shard",  # the shard file is gone or cannot be opened: the whole shard
)

# Image member extensions, in the order a sample's image is looked for.
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm", "tif", "tiff", "gif")
_TEXT = "txt"
_EXPORT_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_BLOCK = 512  # tar block size
_CHUNK = 64  # samples per item handed from a decoding worker to the main process


def shard_name(url: str | os.PathLike[str]) -> str:
    """A shard's name: its file name without directory and without ``.tar``.

    ``"data/000003.tar"`` -> ``"000003"``. The name keys the shard in the reference
    embedding cache, so the shards of one run must have distinct names.
    """
    name = os.path.basename(os.fspath(url))
    for suffix in _TAR_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _check_unique_names(urls: Sequence[str], what: str) -> None:
    seen: dict[str, str] = {}
    for url in urls:
        name = shard_name(url)
        if name in seen:
            raise ValueError(
                f"{what}: shards {seen[name]} and {url} have the same name {name!r}; shard "
                f"names (file names without .tar) must be unique"
            )
        seen[name] = url


def check_shard_urls(urls: Any, *, what: str = "urls") -> list[str]:
    """``urls`` as a list of paths, checked: a non-empty sequence (not a single path) of
    shards with distinct names (:func:`shard_name`). Raises ``ValueError`` naming ``what``."""
    if isinstance(urls, (str, os.PathLike)) or not isinstance(urls, Sequence) or not urls:
        raise ValueError(f"{what} must be a non-empty sequence of shard paths, got {urls!r}")
    paths = [os.fspath(u) for u in urls]
    _check_unique_names(paths, what)
    return paths


def expand_shards(pattern: str, *, what: str = "data.shards") -> list[str]:
    """The shard files of a brace pattern, ``"data/{000000..000009}.tar"``, in order.

    Raises ``ValueError`` naming ``what`` (the config key, ``data.shards`` by default) for
    an empty or unbalanced pattern, a pattern that expands to nothing, the first file that
    does not exist, and two files with the same shard name.
    """
    import braceexpand  # imported here: curatorch imports without the shard libraries

    if not isinstance(pattern, str) or not pattern.strip():
        raise ValueError(
            f"{what} must be a brace pattern of tar files such as "
            f"'data/{{000000..000009}}.tar', got {pattern!r}"
        )
    try:
        urls = [os.path.expanduser(u) for u in braceexpand.braceexpand(pattern) if u]
    except ValueError as exc:  # braceexpand.UnbalancedBracesError
        raise ValueError(f"{what} {pattern!r} is not a valid brace pattern: {exc}") from exc
    if not urls:
        raise ValueError(f"{what} {pattern!r} expands to no files")
    missing = [u for u in urls if not os.path.isfile(u)]
    if missing:
        raise ValueError(
            f"{what}: shard file {missing[0]} does not exist ({len(missing)} of "
            f"{len(urls)} files of {pattern!r} are missing)"
        )
    _check_unique_names(urls, what)
    return urls


# ----------------------------------------------------------------------------- export


def _encode_image(image: torch.Tensor, fmt: str) -> bytes:
    """uint8 ``[3, H, W]`` -> encoded bytes."""
    pil = tensor_to_pil(image)
    buf = io.BytesIO()
    if fmt == "PNG":
        pil.save(buf, format="PNG", compress_level=6)
    elif fmt == "JPEG":
        pil.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        pil.save(buf, format=fmt, lossless=True)
    return buf.getvalue()


def export_shards(
    dataset: PairDataset,
    out_dir: str | os.PathLike[str],
    *,
    samples_per_shard: int = 1000,
    start_shard: int = 0,
    image_format: str = "png",
    progress: bool = False,
) -> list[Path]:
    """Write ``dataset`` as WebDataset tar shards in the img2dataset layout.

    Shards are ``out_dir/000000.tar``, ``000001.tar``, ... numbered from ``start_shard``,
    ``samples_per_shard`` examples each (the last one may hold fewer), in dataset order.
    Sample ``i`` has the key ``f"{id:012d}"`` (its example id, so keys are unique and
    stable) and three members: the image (``image_format``: ``png`` lossless, ``jpg`` or
    ``webp``), the caption ``.txt`` and a ``.json`` with ``id``, ``noise``, ``label`` and
    ``caption``. Each tar is written to a temporary file and renamed into place, and the
    bytes depend only on the data (member times are 0). An existing shard of the same
    name is replaced.

    Returns the paths written, in order.
    """
    if not isinstance(dataset, PairDataset):
        raise ValueError(f"dataset must be a PairDataset, got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError("dataset is empty: nothing to export")
    for name, value, lo in (
        ("samples_per_shard", samples_per_shard, 1),
        ("start_shard", start_shard, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    if image_format not in _EXPORT_FORMATS:
        raise ValueError(
            f"image_format must be one of {sorted(_EXPORT_FORMATS)}, got {image_format!r}"
        )
    ids = dataset.ids.tolist()
    if min(ids) < 0:
        raise ValueError(f"dataset ids must be >= 0 to serve as shard keys, got {min(ids)}")
    fmt = _EXPORT_FORMATS[image_format]
    captions = dataset.captions()
    noise, labels = dataset.noise.tolist(), dataset.labels.tolist()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    from tqdm.auto import tqdm

    starts = range(0, len(dataset), samples_per_shard)
    paths: list[Path] = []
    for s, start in enumerate(tqdm(starts, desc="export", unit="shard", disable=not progress)):
        path = out / f"{start_shard + s:06d}.tar"
        rows = range(start, min(start + samples_per_shard, len(dataset)))

        def write(tmp: Path, rows: range = rows) -> None:
            from webdataset import TarWriter

            with open(tmp, "wb") as fh, TarWriter(fh, encoder=False, mtime=0.0) as writer:
                for i in rows:
                    info = {
                        "id": ids[i],
                        "noise": noise[i],
                        "label": labels[i],
                        "caption": captions[i],
                    }
                    writer.write(
                        {
                            "__key__": f"{ids[i]:012d}",
                            image_format: _encode_image(dataset.images[i], fmt),
                            _TEXT: captions[i].encode("utf-8"),
                            "json": json.dumps(info).encode("utf-8"),
                        }
                    )

        atomic_write(path, write)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardSample:
    """A decoded sample of a shard.

    Attributes:
        key: the sample's ``__key__``.
        image: ``[3, image_size, image_size]`` uint8 RGB.
        caption: the caption, stripped.
        index: position of the sample among the shard's samples (faulty ones included).
    """

    key: str
    image: torch.Tensor
    caption: str
    index: int


@dataclass(frozen=True)
class ShardFault:
    """A skipped sample of a shard: why (one of :data:`FAULT_REASONS`) and where."""

    reason: str
    key: str | None
    index: int
    detail: str = ""


class _TruncatedTar(Exception):
    pass


class _UnreadableShard(Exception):
    pass


class _Group(NamedTuple):
    index: int
    key: str
    members: dict[str, bytes]
    duplicate: bool


class _Damage(NamedTuple):
    index: int
    detail: str
    reason: str = "truncated_tar"


def _tar_members(path: str) -> Iterator[tuple[str, bytes]]:
    """``(member name, bytes)`` of a tar's regular files; ``_TruncatedTar`` on damage.

    ``tarfile`` (and so webdataset's ``tar_file_iterator``) takes a tar that ends right at
    a member boundary for a complete one; an intact tar ends with a zero block, which is
    checked here.
    """
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:  # deleted, no permission, storage gone: nothing of it is read
        raise _UnreadableShard(f"{type(exc).__name__}: {exc}") from exc
    try:
        with fh, tarfile.open(fileobj=fh, mode="r|*") as tf:
            for info in tf:
                if not info.isreg():
                    continue
                member = tf.extractfile(info)
                data = member.read() if member is not None else b""
                if len(data) != info.size:
                    raise _TruncatedTar(f"member {info.name} is cut short")
                yield info.name, data
                tf.members = []  # stream mode: do not keep every header
            plain = getattr(tf.fileobj, "comptype", "tar") == "tar"
            end = tf.offset
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _TruncatedTar(f"{type(exc).__name__}: {exc}") from exc
    if plain and size - end < _BLOCK:
        raise _TruncatedTar(f"ends at byte {size} without the end-of-archive block")


def _shard_groups(path: str) -> Iterator[_Group | _Damage]:
    """The shard's samples as member groups (consecutive members sharing a key), in order.

    A key seen earlier in the shard, or a member name repeated within a sample, starts a
    group flagged ``duplicate``. Damage ends the stream with a :class:`_Damage` that takes
    the index of the group being read (which is dropped).
    """
    from webdataset.tariterators import base_plus_ext

    seen: set[str] = set()
    key: str | None = None
    members: dict[str, bytes] | None = None
    duplicate = False
    index = 0
    try:
        for name, data in _tar_members(path):
            base = name.rsplit("/", 1)[-1]
            if base.startswith("__") and base.endswith("__"):
                continue  # webdataset metadata
            prefix, suffix = base_plus_ext(name)
            if prefix is None:
                continue  # no extension: not a sample member
            suffix = suffix.lower()
            if members is not None and (prefix != key or suffix in members):
                yield _Group(index, key, members, duplicate)  # type: ignore[arg-type]
                index += 1
                members = None
            if members is None:
                key, members, duplicate = prefix, {}, prefix in seen
                seen.add(prefix)
            members[suffix] = data
    except _TruncatedTar as exc:
        yield _Damage(index, str(exc))
        return
    except _UnreadableShard as exc:
        yield _Damage(index, str(exc), "unreadable_shard")
        return
    if members is not None:
        yield _Group(index, key, members, duplicate)  # type: ignore[arg-type]


# 8-bit colour and gray modes with a faithful RGB conversion. Others (16-bit and 32-bit
# gray "I;16"/"I", float "F", "LAB", "HSV", ...) would be clipped or reinterpreted into
# images unlike the source: such samples are skipped as bad_image_mode.
_RGB_MODES = frozenset(
    {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}
)


def _decode_image(data: bytes, image_size: int) -> torch.Tensor | tuple[str, str]:
    """Image bytes -> uint8 ``[3, S, S]`` RGB (resized bilinearly), or ``(reason, detail)``.

    Gray, palette and alpha images are converted to RGB and other sizes resized; an image
    in a mode without a faithful 8-bit RGB conversion is ``bad_image_mode``, one past
    Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) ``bad_image_size``.
    """
    try:
        with Image.open(io.BytesIO(data)) as pil:
            if pil.mode not in _RGB_MODES:
                return "bad_image_mode", f"mode {pil.mode} has no faithful 8-bit RGB conversion"
            pil.load()
            try:
                rgb = pil.convert("RGB")
            except (ValueError, OSError) as exc:
                return "bad_image_mode", f"mode {pil.mode}: {exc}"
    except Image.DecompressionBombError as exc:
        return "bad_image_size", str(exc)
    except Exception as exc:  # PIL raises many types for bad bytes
        return "corrupt_image", f"{type(exc).__name__}: {exc}"
    if rgb.width < 1 or rgb.height < 1:
        return "bad_image_size", f"{rgb.width}x{rgb.height}"
    if rgb.size != (image_size, image_size):
        rgb = rgb.resize((image_size, image_size), Image.BILINEAR)
    return pil_to_tensor(rgb)


def _failed_status(members: dict[str, bytes]) -> str | None:
    """What img2dataset says went wrong with a sample it marked as failed (its ``.json``
    ``status`` is not ``"success"``: ``failed_to_download``, ``failed_to_resize``), or
    ``None``: no ``.json``, one without ``status``, or not an object (not img2dataset's)."""
    raw = members.get("json")
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(meta, dict) or "status" not in meta or meta["status"] == "success":
        return None
    error = meta.get("error_message")
    return f"status {meta['status']!r}" + (f": {error}" if error else "")


def _decode_group(group: _Group, image_size: int) -> ShardSample | ShardFault:
    def fault(reason: str, detail: str = "") -> ShardFault:
        return ShardFault(reason, group.key, group.index, detail)

    if group.duplicate:
        return fault("duplicate_key")
    members = group.members
    status = _failed_status(members)
    if status is not None:
        return fault("failed_download", status)
    image_ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    if image_ext is None or _TEXT not in members:
        have = ", ".join(sorted(members))
        return fault("missing_member", f"members: {have}")
    try:
        caption = members[_TEXT].decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        return fault("bad_text", str(exc))
    if not caption:
        return fault("empty_caption")
    image = _decode_image(members[image_ext], image_size)
    if isinstance(image, tuple):
        return fault(*image)
    return ShardSample(group.key, image, caption, group.index)


def iter_shard(
    url: str | os.PathLike[str], *, image_size: int, skip: int = 0
) -> Iterator[ShardSample | ShardFault]:
    """Every sample of one shard in file order, decoded or as the fault that skips it.

    Images are decoded to RGB and resized bilinearly to ``image_size`` x ``image_size``
    when they have another size; captions are decoded as strict UTF-8 and stripped. A
    damaged tar yields the samples before the damage and then one ``truncated_tar`` fault.
    The first ``skip`` samples (faulty ones included) are passed over without decoding.
    """
    _check_int("image_size", image_size, 1)
    _check_int("skip", skip, 0)
    for item in _shard_groups(os.fspath(url)):
        if item.index < skip:
            continue
        if isinstance(item, _Damage):
            yield ShardFault(item.reason, None, item.index, item.detail)
        else:
            yield _decode_group(item, image_size)


def fault_counts() -> dict[str, int]:
    """Zeroed sample counts, as :meth:`ShardStream.counts` reports them: ``samples_ok``,
    ``samples_skipped`` and ``skipped_<reason>`` for every reason of :data:`FAULT_REASONS`."""
    return {"samples_ok": 0, "samples_skipped": 0, **{f"skipped_{r}": 0 for r in FAULT_REASONS}}


def iter_shard_batches(
    url: str | os.PathLike[str],
    *,
    image_size: int,
    batch_size: int,
    counts: dict[str, int] | None = None,
) -> Iterator[tuple[list[str], torch.Tensor, list[str]]]:
    """The usable samples of one shard in file order, ``batch_size`` at a time (the last
    batch may hold fewer): ``(keys, images, captions)``, images uint8 ``[n, 3, S, S]``.

    Samples are decoded as :func:`iter_shard` decodes them; each one it yields as a fault
    is skipped and counted in ``counts`` (a dict from :func:`fault_counts`, updated in
    place as the batches are read), each usable one counted as ``samples_ok``.
    """
    _check_int("batch_size", batch_size, 1)
    counts = fault_counts() if counts is None else counts
    keys: list[str] = []
    images: list[torch.Tensor] = []
    captions: list[str] = []
    for item in iter_shard(url, image_size=image_size):
        if isinstance(item, ShardFault):
            counts["samples_skipped"] += 1
            counts[f"skipped_{item.reason}"] += 1
            continue
        counts["samples_ok"] += 1
        keys.append(item.key)
        images.append(item.image)
        captions.append(item.caption)
        if len(keys) == batch_size:
            yield keys, torch.stack(images), captions
            keys, images, captions = [], [], []
    if keys:
        yield keys, torch.stack(images), captions


def iter_shard_members(url: str | os.PathLike[str]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of every sample of one shard in file order, read but
    not decoded (extensions lower-case, in member order): what :func:`iter_shard` decodes.

    A sample whose key was seen before in the shard is passed over (:func:`iter_shard`
    skips it as ``duplicate_key``), and a damaged tar ends the samples where the damage
    starts (``truncated_tar``).
    """
    for item in _shard_groups(os.fspath(url)):
        if isinstance(item, _Damage):
            return
        if not item.duplicate:
            yield item.key, dict(item.members)


def iter_captions(urls: Sequence[str | os.PathLike[str]], *, limit: int = 0) -> Iterator[str]:
    """The captions of the shards ``urls``, in order (shard after shard, file order),
    stripped; the images are not decoded. Samples that :func:`iter_shard` would skip
    (no image, marked failed by img2dataset, no or empty caption, not UTF-8, duplicate
    key, the rest of a damaged tar, a shard that cannot be opened) are passed over.
    ``limit`` > 0 stops after that many captions."""
    if isinstance(urls, (str, os.PathLike)):
        raise ValueError(f"urls must be a sequence of shard paths, got {urls!r}")
    _check_int("limit", limit, 0)
    n = 0
    for url in urls:
        for item in _shard_groups(os.fspath(url)):
            if isinstance(item, _Damage) or item.duplicate or _TEXT not in item.members:
                continue
            if not any(e in item.members for e in IMAGE_EXTENSIONS):
                continue
            if _failed_status(item.members) is not None:
                continue
            try:
                caption = item.members[_TEXT].decode("utf-8").strip()
            except UnicodeDecodeError:
                continue
            if caption:
                yield caption
                n += 1
                if n == limit:
                    return


def _check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")


# ----------------------------------------------------------------------------- stream


@dataclass
class ShardBatch:
    """A batch of shard samples.

    Attributes:
        images: ``[n, 3, H, W]`` uint8 RGB.
        tokens: ``[n, L]`` int64 caption ids.
        keys: ``__key__`` of each sample.
        shards: shard name (:func:`shard_name`) of each sample.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    keys: list[str]
    shards: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])


class DataFaultError(RuntimeError):
    """Too many shard samples were skipped; the message names the worst shard.

    Attributes:
        shard: path of the shard with the most faults.
        ratio: skipped / (ok + skipped) when the run stopped.
        counts: :meth:`ShardStream.counts` when the run stopped.
    """

    def __init__(self, message: str, *, shard: str, ratio: float, counts: dict[str, int]):
        super().__init__(message)
        self.shard = shard
        self.ratio = ratio
        self.counts = counts


def _epoch_order(num_shards: int, *, seed: int, epoch: int) -> list[int]:
    """The shard permutation of an epoch (the same on every rank)."""
    gen = torch.Generator().manual_seed(seed + epoch)
    return torch.randperm(num_shards, generator=gen).tolist()


def _rank_shards(
    num_shards: int, *, seed: int, epoch: int, rank: int, world_size: int
) -> list[int]:
    return _epoch_order(num_shards, seed=seed, epoch=epoch)[rank::world_size]


class _Chunk(NamedTuple):
    """Up to ``_CHUNK`` decoded entries of one shard, passed from a worker."""

    t: int  # position of the shard in this stream's sequence of shards
    epoch: int
    slot: int  # position of the shard in the rank's order of the epoch
    url: str
    entries: list[tuple[int, str | None, str | None, str | None]]  # index, key, caption, reason
    images: torch.Tensor  # [k, 3, S, S] uint8, one per entry without a reason
    end: bool  # the shard's last chunk


class _ShardIterable(torch.utils.data.IterableDataset):
    """This rank's shards from a position on, decoded in chunks; endless.

    The ``t``-th shard from the start (epoch ``e``, slot ``j``) goes to worker ``t % K``.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        image_size: int,
        rank: int,
        world_size: int,
        seed: int,
        start: tuple[int, int, int],
    ) -> None:
        super().__init__()
        self.urls = urls
        self.image_size = image_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start
        self.per_epoch = len(range(rank, len(urls), world_size))

    def __iter__(self) -> Iterator[_Chunk]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        epoch0, slot0, skip0 = self.start
        orders: dict[int, list[int]] = {}
        t = worker
        while True:
            epoch = epoch0 + (slot0 + t) // self.per_epoch
            slot = (slot0 + t) % self.per_epoch
            if epoch not in orders:
                orders = {
                    epoch: _rank_shards(
                        len(self.urls),
                        seed=self.seed,
                        epoch=epoch,
                        rank=self.rank,
                        world_size=self.world_size,
                    )
                }
            url = self.urls[orders[epoch][slot]]
            yield from self._chunks(t, epoch, slot, url, skip0 if t == 0 else 0)
            t += workers

    def _chunks(self, t: int, epoch: int, slot: int, url: str, skip: int) -> Iterator[_Chunk]:
        entries: list[tuple[int, str | None, str | None, str | None]] = []
        images: list[torch.Tensor] = []

        def chunk(end: bool) -> _Chunk:
            size = self.image_size
            stacked = (
                torch.stack(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8)
            )
            return _Chunk(t, epoch, slot, url, list(entries), stacked, end)

        for item in iter_shard(url, image_size=self.image_size, skip=skip):
            if isinstance(item, ShardFault):
                entries.append((item.index, item.key, None, item.reason))
            else:
                entries.append((item.index, item.key, item.caption, None))
                images.append(item.image)
            if len(entries) >= _CHUNK:
                yield chunk(False)
                entries.clear()
                images.clear()
        yield chunk(True)


def _identity(x: Any) -> Any:
    return x


class _Record(NamedTuple):
    """One entry of the ordered stream: a sample, a fault, or the end of a shard."""

    epoch: int
    slot: int
    url: str
    index: int  # sample index in the shard (-1 for the end of a shard)
    key: str | None
    caption: str | None
    reason: str | None
    image: torch.Tensor | None


_STATE_FORMAT = "curatorch-shard-stream"


class ShardStream:
    """An endless stream of batches from WebDataset shards for one data-parallel rank.

    Args:
        urls: the shard files (:func:`expand_shards`), at least ``world_size`` of them,
            with distinct :func:`shard_name`.
        image_size: side of the square images returned; other sizes are resized.
        tokenizer: anything with ``encode(list[str]) -> [n, L] int64`` (captions are
            tokenised in the main process, one batch at a time).
        rank, world_size: this process's place in the data-parallel job. Epoch ``e``
            permutes the shards with seed ``seed + e``; rank ``r`` reads positions
            ``r, r + world_size, ...`` of that permutation.
        num_workers: dataloader worker processes that decode this rank's shards (0 = in
            this process). The batches do not depend on it.
        seed: seed of the per-epoch shard order.
        max_corrupt_ratio: once ``min_samples_for_ratio`` samples were seen, a fraction of
            skipped samples above this raises :class:`DataFaultError`.
        min_samples_for_ratio: samples to see before the ratio is checked.

    Skipped samples are counted by reason (:meth:`counts`). The stream's position is
    :meth:`state_dict`; a fresh stream with the same arguments continues exactly where it
    was after :meth:`load_state_dict`.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        image_size: int,
        tokenizer: Any,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        seed: int = 0,
        max_corrupt_ratio: float = 0.1,
        min_samples_for_ratio: int = 100,
    ) -> None:
        if isinstance(urls, (str, os.PathLike)) or not isinstance(urls, Sequence):
            raise ValueError(
                f"urls must be a sequence of shard paths (see expand_shards), got {urls!r}"
            )
        urls = [os.fspath(u) for u in urls]
        if not urls:
            raise ValueError("urls must hold at least one shard, got none")
        _check_int("image_size", image_size, 1)
        _check_int("world_size", world_size, 1)
        _check_int("rank", rank, 0)
        if rank >= world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if len(urls) < world_size:
            raise ValueError(
                f"data.shards has {len(urls)} shards, fewer than the {world_size} processes: "
                f"every process needs at least one shard"
            )
        _check_int("num_workers", num_workers, 0)
        _check_int("seed", seed, 0)
        _check_int("min_samples_for_ratio", min_samples_for_ratio, 0)
        if (
            isinstance(max_corrupt_ratio, bool)
            or not isinstance(max_corrupt_ratio, (int, float))
            or not 0.0 <= max_corrupt_ratio <= 1.0
        ):
            raise ValueError(f"max_corrupt_ratio must be in [0, 1], got {max_corrupt_ratio!r}")
        if not hasattr(tokenizer, "encode"):
            raise ValueError(
                f"tokenizer must have an encode method, got {type(tokenizer).__name__}"
            )
        _check_unique_names(urls, "urls")
        self.urls = urls
        self.image_size = image_size
        self.tokenizer = tokenizer
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.seed = seed
        self.max_corrupt_ratio = float(max_corrupt_ratio)
        self.min_samples_for_ratio = min_samples_for_ratio
        self.shards_per_epoch = len(range(rank, len(urls), world_size))
        # position: the next sample is sample `_index` of slot `_slot` of epoch `_epoch`
        self._epoch = self._slot = self._index = 0
        self._counts = {"samples_ok": 0, "samples_skipped": 0}
        self._counts.update({f"skipped_{r}": 0 for r in FAULT_REASONS})
        self._shard_faults: dict[str, int] = {}  # url -> skipped samples
        self._shards_without_sample = 0
        self._reset_reader()

    # -- reading ------------------------------------------------------------------------

    def _reset_reader(self) -> None:
        self._iter: Iterator[_Chunk] | None = None
        self._next_t = 0
        self._pending: dict[int, deque[_Chunk]] = {}
        self._ready: deque[_Record] = deque()

    def _start_reader(self) -> Iterator[_Chunk]:
        dataset = _ShardIterable(
            self.urls,
            image_size=self.image_size,
            rank=self.rank,
            world_size=self.world_size,
            seed=self.seed,
            start=(self._epoch, self._slot, self._index),
        )
        if self.num_workers == 0:
            return iter(dataset)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, num_workers=self.num_workers, collate_fn=_identity
        )
        return iter(loader)

    def _accept(self, chunk: _Chunk) -> None:
        row = 0
        for index, key, caption, reason in chunk.entries:
            image = None
            if reason is None:
                image = chunk.images[row]
                row += 1
            self._ready.append(
                _Record(chunk.epoch, chunk.slot, chunk.url, index, key, caption, reason, image)
            )
        if chunk.end:
            self._ready.append(
                _Record(chunk.epoch, chunk.slot, chunk.url, -1, None, None, None, None)
            )
            self._next_t += 1

    def _pop(self) -> _Record:
        """The next record in stream order (chunks from workers are put back in order)."""
        while not self._ready:
            queue = self._pending.get(self._next_t)
            if queue:
                self._accept(queue.popleft())
                continue
            if self._iter is None:
                self._iter = self._start_reader()
            chunk = next(self._iter)
            if chunk.t == self._next_t:
                self._accept(chunk)
            else:
                self._pending.setdefault(chunk.t, deque()).append(chunk)
        for t in [t for t, q in self._pending.items() if not q]:
            del self._pending[t]
        return self._ready.popleft()

    # -- faults ---------------------------------------------------------------------------

    def _fault_error(self, headline: str) -> DataFaultError:
        ok, skipped = self._counts["samples_ok"], self._counts["samples_skipped"]
        ratio = skipped / max(ok + skipped, 1)
        worst = max(self._shard_faults.items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
        reasons = ", ".join(
            f"{r}={self._counts[f'skipped_{r}']}"
            for r in FAULT_REASONS
            if self._counts[f"skipped_{r}"]
        )
        where = f"; most faults in shard {worst[0]} ({worst[1]} skipped)" if worst[1] else ""
        return DataFaultError(
            f"{headline}: {skipped} of {ok + skipped} shard samples skipped (ratio "
            f"{ratio:.3f}, data.max_corrupt_ratio={self.max_corrupt_ratio:g}){where}; "
            f"reasons: {reasons or 'none'}",
            shard=worst[0],
            ratio=ratio,
            counts=self.counts(),
        )

    def _check_ratio(self) -> None:
        ok, skipped = self._counts["samples_ok"], self._counts["samples_skipped"]
        seen = ok + skipped
        if seen >= self.min_samples_for_ratio and skipped > self.max_corrupt_ratio * seen:
            raise self._fault_error("too many corrupt shard samples")

    # -- public -----------------------------------------------------------------------------

    def next_batch(self, n: int) -> ShardBatch:
        """The next ``n`` good samples of this rank (the stream runs epoch after epoch).

        Raises :class:`DataFaultError` when the fraction of skipped samples exceeds
        ``max_corrupt_ratio``, or when two epochs' worth of this rank's shards in a row
        yield no usable sample.
        """
        _check_int("n", n, 1)
        images: list[torch.Tensor] = []
        captions: list[str] = []
        keys: list[str] = []
        shards: list[str] = []
        while len(keys) < n:
            rec = self._pop()
            if rec.index < 0:  # end of a shard
                self._slot += 1
                self._index = 0
                if self._slot == self.shards_per_epoch:
                    self._epoch, self._slot = self._epoch + 1, 0
                self._shards_without_sample += 1
                if self._shards_without_sample > 2 * self.shards_per_epoch:
                    raise self._fault_error(
                        f"no usable sample in the last {self._shards_without_sample} shards "
                        f"read by rank {self.rank}"
                    )
                continue
            self._index = rec.index + 1
            if rec.reason is not None:
                self._counts["samples_skipped"] += 1
                self._counts[f"skipped_{rec.reason}"] += 1
                self._shard_faults[rec.url] = self._shard_faults.get(rec.url, 0) + 1
            else:
                self._counts["samples_ok"] += 1
                self._shards_without_sample = 0
                images.append(rec.image)  # type: ignore[arg-type]
                captions.append(rec.caption)  # type: ignore[arg-type]
                keys.append(rec.key)  # type: ignore[arg-type]
                shards.append(shard_name(rec.url))
            self._check_ratio()
        tokens = self.tokenizer.encode(captions)
        return ShardBatch(images=torch.stack(images), tokens=tokens, keys=keys, shards=shards)

    def counts(self) -> dict[str, int]:
        """``samples_ok``, ``samples_skipped`` and ``skipped_<reason>`` for every reason."""
        return dict(self._counts)

    def _digest(self) -> str:
        return hashlib.sha256("\n".join(shard_name(u) for u in self.urls).encode()).hexdigest()

    def state_dict(self) -> dict[str, Any]:
        """The position after the last batch returned, and the fault counts (JSON-able)."""
        return {
            "format": _STATE_FORMAT,
            "version": 1,
            "num_shards": len(self.urls),
            "shards_sha256": self._digest(),
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
            "epoch": self._epoch,
            "slot": self._slot,
            "index": self._index,
            "counts": dict(self._counts),
            "shard_faults": dict(self._shard_faults),
            "shards_without_sample": self._shards_without_sample,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a stream with the same shards,
        seed, rank and world size; ``num_workers`` may differ)."""
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError(f"state is not a ShardStream state: {str(state)[:200]}")
        expected = {
            "num_shards": len(self.urls),
            "shards_sha256": self._digest(),
            "rank": self.rank,
            "world_size": self.world_size,
            "seed": self.seed,
        }
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(
                    f"the shard stream state was saved with {key}={state.get(key)!r}, this "
                    f"stream has {key}={value!r}; resume with the same data.shards, seed and "
                    f"number of processes"
                )
        try:
            epoch, slot, index = int(state["epoch"]), int(state["slot"]), int(state["index"])
            counts = {str(k): int(v) for k, v in state["counts"].items()}
            faults = {str(k): int(v) for k, v in state["shard_faults"].items()}
            without = int(state.get("shards_without_sample", 0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"the shard stream state is incomplete: {exc}") from exc
        if min(epoch, slot, index) < 0 or slot >= self.shards_per_epoch:
            raise ValueError(
                f"the shard stream state has an invalid position {(epoch, slot, index)}"
            )
        self.close()
        self._epoch, self._slot, self._index = epoch, slot, index
        self._counts.update(counts)
        self._shard_faults = faults
        self._shards_without_sample = without

    def close(self) -> None:
        """Stop the decoding workers (a later :meth:`next_batch` starts new ones)."""
        it = self._iter
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        self._reset_reader()

    def __enter__(self) -> ShardStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
