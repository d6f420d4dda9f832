"""Web-like image–text shards in the exact img2dataset layout, from a seeded generator.

Each image shows one character (a letter or a digit) drawn in a coloured ink over a
textured surface (wood, bricks, lined paper, grass, ...), rendered with PIL; its caption
describes it in free-form sentences of their own vocabulary ("photo of the letter M in
coral ink over a wooden surface", "Letter M | coral | timber"): see ``_webcaptions.py``.
The raw pairs are dirty like the web: exact fractions are misaligned (the caption of
another sample), boilerplate ("IMG_2041.jpg", "click here to buy"), degraded (strong
blur, heavy JPEG, or noise; the caption is right) or failed downloads (no image).

:func:`write_web_shards` writes what ``img2dataset --output_format webdataset`` writes
(``--save_additional_columns '["label"]'`` with ``labelled=True``, ``--resize_mode
center_crop``, ``--encode_quality 95``, ``--compute_hash sha256``)::

    out/00000.tar          000000000.jpg 000000000.json 000000000.txt 000000001.jpg ...
    out/00000.parquet      one row per sample (failed ones included), no image bytes
    out/00000_stats.json   count, successes, failed_to_download, ..., status_dict
    out/00001.tar ...
    out/classes.txt        the class names, one a line (labelled shards)
    out/web_shards.json    how the shards were made: seed, fractions, counts, classes

Keys are ``shard * 10**ceil(log10(shard_size)) + index``, zero-padded to 5 + that many
digits (img2dataset's ``compute_key``); a failed sample has no member in the tar (only a
parquet row with ``status = "failed_to_download"`` and an ``error_message``), as with
img2dataset. Every sample is a function of ``(seed, index)``; tars and parquet files
depend only on the arguments (member times are 0), the stats files also hold the real
write times. Shards are written one at a time, each file atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from curatorch.data._webcaptions import (
    BACKGROUNDS,
    GLYPHS,
    INKS,
    Attributes,
    boilerplate_caption,
    class_name,
    describe,
)
from curatorch.fileio import atomic_write, atomic_write_text

__all__ = [
    "WEB_NOISE_KINDS",
    "WebPair",
    "web_class_names",
    "web_pairs",
    "write_web_shards",
]

# noise kinds of a web pair, in the order their exact counts are assigned
WEB_NOISE_KINDS = ("clean", "misaligned", "boilerplate", "degraded", "failed")
_DEGRADATIONS = ("blur", "jpeg", "noise")
_HOSTS = ("cdn.example.com", "img.example.org", "static.example.net", "photos.example.com",
          "media.example.org", "i.example.net")  # fmt: skip
_ERRORS = ("HTTP Error 404: Not Found", "<urlopen error [Errno -2] Name or service not known>",
           "The read operation timed out", "HTTP Error 403: Forbidden")  # fmt: skip
_ENCODE_QUALITY = 95  # img2dataset's default --encode_quality
_OOM_SHARD_COUNT = 5  # img2dataset's default --oom_shard_count
_MIN_CONTRAST = 120.0  # ink vs surface mean colour, Euclidean RGB distance


def web_class_names() -> list[str]:
    """The class names of labelled web shards, in ``classes.txt`` order:
    ``"letter A"`` ... ``"letter Z"``, ``"digit 0"`` ... ``"digit 9"``."""
    return [class_name(i) for i in range(len(GLYPHS))]


@dataclass(frozen=True)
class WebPair:
    """One generated sample, before it is written.

    Attributes:
        index: position among all pairs (0-based).
        noise: one of :data:`WEB_NOISE_KINDS`.
        attrs: what the image shows.
        caption: the caption written (another pair's for ``misaligned``).
        url: the made-up source URL (``example.*`` domains).
        label: the class name of the image (:func:`web_class_names`).
        degradation: ``"blur"``, ``"jpeg"`` or ``"noise"`` for ``degraded``, else ``""``.
    """

    index: int
    noise: str
    attrs: Attributes
    caption: str
    url: str
    label: str
    degradation: str = ""


def _attributes(seed: int, index: int) -> Attributes:
    rng = np.random.default_rng([seed, 1, index])
    glyph = int(rng.integers(len(GLYPHS)))
    background = int(rng.integers(len(BACKGROUNDS)))
    bg = np.array(BACKGROUNDS[background].mean_rgb, dtype=np.float64)
    readable = [
        i for i, ink in enumerate(INKS) if np.linalg.norm(np.array(ink.rgb) - bg) >= _MIN_CONTRAST
    ]
    ink = readable[int(rng.integers(len(readable)))]
    return Attributes(glyph, ink, background, bool(rng.random() < 0.5))


def _clean_caption(seed: int, index: int, attrs: Attributes) -> str:
    return describe(attrs, np.random.default_rng([seed, 2, index]))


def _noise_codes(n: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """``[n]`` int8 codes into :data:`WEB_NOISE_KINDS`: exactly ``round(f * n)`` of each
    noisy kind, the rest clean, at seeded random positions."""
    counts = [round(fractions[k] * n) for k in WEB_NOISE_KINDS[1:]]
    excess = sum(counts) - n
    for k in reversed(range(len(counts))):  # rounding past n: trim the last kinds
        cut = min(max(excess, 0), counts[k])
        counts[k] -= cut
        excess -= cut
    codes = np.repeat(np.arange(len(WEB_NOISE_KINDS), dtype=np.int8), [n - sum(counts), *counts])
    return np.random.default_rng([seed, 0]).permutation(codes)


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_int(name: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return value


def _fractions(misaligned: float, boilerplate: float, degraded: float, failed: float) -> dict:
    fr = {
        "misaligned": _check_fraction("misaligned", misaligned),
        "boilerplate": _check_fraction("boilerplate", boilerplate),
        "degraded": _check_fraction("degraded", degraded),
        "failed": _check_fraction("failed", failed),
    }
    total = sum(fr.values())
    if total > 1 + 1e-9:
        parts = ", ".join(f"{k}={v:g}" for k, v in fr.items())
        raise ValueError(f"noise fractions ({parts}) must sum to <= 1, got {total:.6g}")
    return fr


def web_pairs(
    pairs: int,
    *,
    seed: int = 0,
    misaligned: float = 0.2,
    boilerplate: float = 0.1,
    degraded: float = 0.1,
    failed: float = 0.0,
) -> Iterator[WebPair]:
    """The ``pairs`` samples of a web dataset, in order, without images (cheap).

    Exactly ``round(fraction * pairs)`` samples get each noise kind (mutually exclusive;
    the fractions must sum to <= 1), at positions drawn with ``seed``. A misaligned
    sample's caption is the clean caption of another, uniformly drawn, sample.
    """
    _check_int("pairs", pairs, 1)
    _check_int("seed", seed, 0)
    fr = _fractions(misaligned, boilerplate, degraded, failed)
    if fr["misaligned"] and pairs < 2:
        raise ValueError(f"misaligned captions need pairs >= 2, got pairs={pairs}")
    codes = _noise_codes(pairs, fr, seed)
    for i in range(pairs):
        noise = WEB_NOISE_KINDS[int(codes[i])]
        attrs = _attributes(seed, i)
        rng = np.random.default_rng([seed, 3, i])
        degradation = ""
        if noise == "misaligned":
            j = int(rng.integers(pairs - 1))
            j += j >= i
            caption = _clean_caption(seed, j, _attributes(seed, j))
        elif noise == "boilerplate":
            caption = boilerplate_caption(rng)
        else:
            caption = _clean_caption(seed, i, attrs)
            if noise == "degraded":
                degradation = _DEGRADATIONS[int(rng.integers(len(_DEGRADATIONS)))]
        host = _HOSTS[int(rng.integers(len(_HOSTS)))]
        url = f"https://{host}/{int(rng.integers(1 << 32)):08x}/{i:x}.jpg"
        yield WebPair(i, noise, attrs, caption, url, class_name(attrs.glyph), degradation)


# ----------------------------------------------------------------------------- images


def _texture(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A ``[h, w, 3]`` uint8 surface of the given kind."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    noise = rng.normal(0.0, 1.0, (h, w))
    base = np.array(next(b.mean_rgb for b in BACKGROUNDS if b.kind == kind), dtype=np.float64)
    if kind == "wood":
        f = rng.uniform(0.15, 0.35)
        grain = np.sin(y * f + 3 * np.sin(x * 0.03 + rng.uniform(0, 6))) * 25
        img = base + (grain + 6 * noise)[..., None] * np.array([1.0, 0.7, 0.45])
    elif kind == "brick":
        bh = max(4, h // 7)
        bw = 2 * bh
        row = (y // bh).astype(int)
        xs = x + (row % 2) * (bw // 2)
        mortar = ((y % bh) < 1.5) | ((xs % bw) < 1.5)
        img = base + 12 * noise[..., None]
        img[mortar] = (200, 195, 185)
    elif kind == "paper":
        img = base + 5 * noise[..., None]
        lines = (y % max(5, h // 9)) < 1
        img[lines] = (150, 175, 220)
    elif kind == "gingham":
        s = max(4, w // 8)
        a, b = (x // s).astype(int) % 2, (y // s).astype(int) % 2
        shade = (a + b)[..., None].astype(np.float64)
        img = (
            np.array([250.0, 250, 250]) - shade * np.array([10.0, 100, 100]) + 4 * noise[..., None]
        )
    elif kind == "denim":
        twill = np.sin((x + y) * 1.3) * 18
        img = base + (twill + 10 * noise)[..., None]
    elif kind == "sky":
        img = base + ((y / h - 0.5) * -50 + 3 * noise)[..., None] * np.array([0.6, 0.6, 0.3])
    elif kind == "marble":
        vein = np.abs(np.sin((x * 0.08 + y * 0.05) + 2 * np.sin(y * 0.05 + rng.uniform(0, 6))))
        img = base - ((vein < 0.12) * 70 + 4 * noise)[..., None]
    else:  # grass, concrete, sand, chalkboard: speckled
        amp = {"grass": 30.0, "concrete": 14.0, "sand": 12.0, "chalkboard": 10.0}[kind]
        img = base + amp * noise[..., None] * (np.array([0.6, 1.0, 0.5]) if kind == "grass" else 1)
    return np.clip(img, 0, 255).astype(np.uint8)


_FONTS: dict[int, Any] = {}


def _font(size: int) -> Any:
    if size not in _FONTS:
        _FONTS[size] = ImageFont.load_default(size=size)  # Pillow's bundled font
    return _FONTS[size]


def _render(pair: WebPair, seed: int) -> Image.Image:
    """The original ("downloaded") image of a pair, of its own size."""
    rng = np.random.default_rng([seed, 4, pair.index])
    a = pair.attrs
    side = int(rng.integers(72, 129))
    w, h = side, int(side * rng.uniform(0.8, 1.25))
    img = Image.fromarray(_texture(BACKGROUNDS[a.background].kind, w, h, rng))
    size = int(min(w, h) * (rng.uniform(0.7, 0.85) if a.large else rng.uniform(0.38, 0.5)))
    mask = Image.new("L", (w, h), 0)
    cx = w / 2 + rng.uniform(-0.12, 0.12) * w
    cy = h / 2 + rng.uniform(-0.12, 0.12) * h
    ImageDraw.Draw(mask).text((cx, cy), GLYPHS[a.glyph], fill=255, font=_font(size), anchor="mm")
    mask = mask.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR, center=(cx, cy))
    img.paste(Image.new("RGB", (w, h), INKS[a.ink].rgb), (0, 0), mask)
    if pair.degradation == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(4.0, 7.0))))
    elif pair.degradation == "noise":
        arr = np.asarray(img, dtype=np.float64) + rng.normal(0, 110, (h, w, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img


def _download_bytes(pair: WebPair, seed: int) -> bytes:
    """What the URL would have served: the original as a JPEG (quality 1-4 for a
    ``"jpeg"`` degradation, 70-95 otherwise)."""
    rng = np.random.default_rng([seed, 5, pair.index])
    heavy = pair.degradation == "jpeg"
    quality = int(rng.integers(1, 5)) if heavy else int(rng.integers(70, 96))
    buf = io.BytesIO()
    _render(pair, seed).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _resize_center_crop(data: bytes, image_size: int) -> tuple[bytes, int, int]:
    """img2dataset's ``center_crop``: shorter side to ``image_size``, centre crop,
    re-encoded at quality 95. Returns ``(jpeg bytes, original_width, original_height)``."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        ow, oh = im.size
        scale = image_size / min(ow, oh)
        rw, rh = max(image_size, round(ow * scale)), max(image_size, round(oh * scale))
        im = im.resize((rw, rh), Image.LANCZOS)
        left, top = (rw - image_size) // 2, (rh - image_size) // 2
        im = im.crop((left, top, left + image_size, top + image_size))
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=_ENCODE_QUALITY)
    return buf.getvalue(), ow, oh


# ----------------------------------------------------------------------------- writing

_META_FILE = "web_shards.json"
_CLASSES_FILE = "classes.txt"


def _sample_meta(pair: WebPair, key: str, labelled: bool) -> dict[str, Any]:
    """The img2dataset metadata of a sample before download: the input columns
    (``--save_additional_columns`` first, then caption and url) and the status fields."""
    meta: dict[str, Any] = {"label": pair.label} if labelled else {}
    meta.update(caption=pair.caption, url=pair.url, key=key, status=None, error_message=None)
    meta.update(width=None, height=None, original_width=None, original_height=None)
    meta.update(exif=None, sha256=None)
    return meta


def _parquet_schema(labelled: bool) -> Any:
    import pyarrow as pa

    s, i32 = pa.string(), pa.int32()
    names = [("label", s)] if labelled else []
    names += [("caption", s), ("url", s), ("key", s), ("status", s), ("error_message", s)]
    names += [("width", i32), ("height", i32), ("original_width", i32), ("original_height", i32)]
    names += [("exif", s), ("sha256", s)]
    return pa.schema(names)


def _write_tar(
    tmp: Path, chunk: list[WebPair], keys: list[str], metas: list[dict[str, Any]], **kw: Any
) -> None:
    """Write one shard's tar to ``tmp``; fills ``metas`` with every sample's metadata."""
    from webdataset import TarWriter

    seed, image_size, labelled = kw["seed"], kw["image_size"], kw["labelled"]
    with open(tmp, "wb") as fh, TarWriter(fh, encoder=False, mtime=0.0) as writer:
        for pair, key in zip(chunk, keys, strict=True):
            meta = _sample_meta(pair, key, labelled)
            if pair.noise == "failed":
                rng = np.random.default_rng([seed, 6, pair.index])
                meta.update(status="failed_to_download", error_message=str(rng.choice(_ERRORS)))
                metas.append(meta)
                if kw["failed_in_tar"]:  # its caption and metadata, no image
                    writer.write(
                        {
                            "__key__": key,
                            "txt": pair.caption.encode("utf-8"),
                            "json": json.dumps(meta, indent=4).encode("utf-8"),
                        }
                    )
                continue
            raw = _download_bytes(pair, seed)
            jpg, ow, oh = _resize_center_crop(raw, image_size)
            meta.update(status="success", width=image_size, height=image_size)
            meta.update(original_width=ow, original_height=oh, exif="{}")
            meta["sha256"] = hashlib.sha256(raw).hexdigest()
            metas.append(meta)
            writer.write(
                {
                    "__key__": key,
                    "jpg": jpg,
                    "txt": pair.caption.encode("utf-8"),
                    "json": json.dumps(meta, indent=4).encode("utf-8"),
                }
            )


def _write_shard(out: Path, shard: int, chunk: list[WebPair], **kw: Any) -> dict[str, Any]:
    """``{shard}.tar``, ``{shard}.parquet`` and ``{shard}_stats.json``; returns the stats."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.time()
    name = f"{shard:0{_OOM_SHARD_COUNT}d}"
    oom = math.ceil(math.log10(kw["shard_size"]))
    keys = [f"{shard * 10**oom + j:0{oom + _OOM_SHARD_COUNT}d}" for j in range(len(chunk))]
    metas: list[dict[str, Any]] = []
    kw = {k: kw[k] for k in ("seed", "image_size", "labelled", "failed_in_tar")}
    atomic_write(out / f"{name}.tar", lambda tmp: _write_tar(tmp, chunk, keys, metas, **kw))
    schema = _parquet_schema(kw["labelled"])
    table = pa.Table.from_pylist(metas, schema=schema)
    atomic_write(out / f"{name}.parquet", lambda tmp: pq.write_table(table, tmp))
    status = Counter(m["error_message"] or "success" for m in metas)
    failed = sum(m["status"] == "failed_to_download" for m in metas)
    end = time.time()
    stats = {
        "count": len(chunk),
        "successes": len(chunk) - failed,
        "failed_to_download": failed,
        "failed_to_resize": 0,
        "duration": end - start,
        "start_time": start,
        "end_time": end,
        "status_dict": dict(status),
    }
    atomic_write_text(out / f"{name}_stats.json", json.dumps(stats, indent=4))
    return stats


def _check_out(out: Path, overwrite: bool) -> None:
    """``out`` is new, empty, or (with ``overwrite``) holds an earlier :func:`write_web_shards`
    output, whose files are removed."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return
    meta_path = out / _META_FILE
    if not overwrite or not meta_path.is_file():
        why = (
            "pass overwrite=True (--overwrite) to replace it"
            if meta_path.is_file()
            else ("it is not web shards written by curatorch; pass an empty or new folder")
        )
        raise ValueError(f"out {out} is not empty: {why}")
    old = json.loads(meta_path.read_text(encoding="utf-8"))
    for name in old.get("shards", []):
        for suffix in (".tar", ".parquet", "_stats.json"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    (out / _CLASSES_FILE).unlink(missing_ok=True)
    meta_path.unlink()


def write_web_shards(
    out: str | os.PathLike[str],
    *,
    pairs: int,
    shard_size: int = 1000,
    seed: int = 0,
    image_size: int = 64,
    misaligned: float = 0.2,
    boilerplate: float = 0.1,
    degraded: float = 0.1,
    failed: float = 0.0,
    labelled: bool = False,
    failed_in_tar: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate ``pairs`` web-like image–text samples into img2dataset shards in ``out``.

    Args:
        out: the folder (new or empty; with ``overwrite`` one this function wrote before).
        pairs: number of samples, failed downloads included.
        shard_size: samples per shard (img2dataset's ``--number_sample_per_shard``).
        seed: every random choice; the same seed gives the same tars and parquet files.
        image_size: side of the stored square JPEGs, in pixels (>= 8). Originals are
            72-128 pixels wide, any aspect ratio from 0.8 to 1.25.
        misaligned, boilerplate, degraded, failed: exact, mutually exclusive fractions
            of the samples (sum <= 1; all 0 = a clean curated set for a reference).
        labelled: add each sample's class name as ``label`` (``.json`` and parquet
            column) and write ``classes.txt`` (:func:`web_class_names`).
        failed_in_tar: also write each failed sample into the tar, as its ``.txt`` and a
            ``.json`` with ``status = "failed_to_download"`` and no image: the shape of
            a failed sample in tars whose writer keeps failed samples (by default a
            failed sample is only a parquet row, as with img2dataset's
            ``--output_format webdataset``). Shard readers skip such samples and count
            them as ``failed_download``.
        overwrite: replace an earlier output of this function in ``out``.
        progress: show a progress bar over the shards.

    Returns:
        What ``out/web_shards.json`` records: the arguments, ``noise_counts``, the shard
        names and brace ``pattern``, and (labelled) ``classes`` present in the samples.
    """
    _check_int("pairs", pairs, 1)
    _check_int("shard_size", shard_size, 1)
    _check_int("image_size", image_size, 8)
    fractions = _fractions(misaligned, boilerplate, degraded, failed)
    out = Path(out)
    _check_out(out, overwrite)
    from tqdm.auto import tqdm

    stream = web_pairs(pairs, seed=seed, **fractions)
    n_shards = math.ceil(pairs / shard_size)
    noise: Counter[str] = Counter()
    present: set[str] = set()
    names, successes = [], 0
    for shard in tqdm(range(n_shards), desc="web shards", unit="shard", disable=not progress):
        chunk = [next(stream) for _ in range(min(shard_size, pairs - shard * shard_size))]
        noise.update(p.noise for p in chunk)
        present.update(p.label for p in chunk if p.noise != "failed")
        kw = dict(seed=seed, image_size=image_size, labelled=labelled, failed_in_tar=failed_in_tar)
        successes += _write_shard(out, shard, chunk, shard_size=shard_size, **kw)["successes"]
        names.append(f"{shard:0{_OOM_SHARD_COUNT}d}")
    if labelled:
        atomic_write_text(out / _CLASSES_FILE, "".join(f"{c}\n" for c in web_class_names()))
    meta = {
        "generator": "curatorch.data.webshards",
        "version": 1,
        **dict(pairs=pairs, shard_size=shard_size, seed=seed, image_size=image_size),
        "fractions": fractions,
        "noise_counts": {k: noise.get(k, 0) for k in WEB_NOISE_KINDS},
        **dict(successes=successes, labelled=labelled, failed_in_tar=failed_in_tar),
        "label_field": "label" if labelled else None,
        "classes_file": _CLASSES_FILE if labelled else None,
        "classes": [c for c in web_class_names() if c in present] if labelled else [],
        "shards": names,
        "pattern": str(out / f"{{{names[0]}..{names[-1]}}}.tar"),
    }
    atomic_write_text(out / _META_FILE, json.dumps(meta, indent=2))
    return meta
