"""Per-shard reference-embedding cache: JEST's reference embeddings of WebDataset shards.

The shard counterpart of :mod:`curatorch.data.embedding_cache`. Shard samples have string
keys, not integer ids, and a shard set can be far larger than memory, so the cache holds
one file per shard and loads them as training reaches them:

```
CACHE/meta.json                    logit_scale, logit_bias, model_fingerprint, model_kind, ...
CACHE/shards/000000.safetensors    image, text [n, D] float16 (L2-normalised);
                                   keys [bytes] uint8 (a JSON list of the n keys);
                                   header metadata: shard, count, model_fingerprint
CACHE/shards/000001.safetensors    ...
```

Every file is written to a temporary sibling and renamed into place. The cache belongs to
one model, named by its :meth:`~curatorch.models.ImageTextModel.fingerprint` and ``kind``
(``"curatorch"``, ``"hf-siglip"``, ``"hf-clip"``). A shard file records the fingerprint of
the model it was computed with; one that disagrees with ``meta.json`` is stale (left over
from an earlier reference) and is an error, never silently used; so is a cache written by
another model than the one expected (:meth:`ShardEmbeddingCache.check_model`).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from curatorch.fileio import atomic_write, atomic_write_text

__all__ = [
    "SHARD_CACHE_FORMAT",
    "ShardEmbeddingCache",
    "is_shard_cache",
    "save_shard_embeddings",
    "short_fingerprint",
    "write_shard_cache_meta",
]

SHARD_CACHE_FORMAT = "curatorch-shard-embeddings"
_META = "meta.json"
_SHARDS = "shards"
_RERUN = "run `curatorch embed` again"
_SHORT = 12  # hex digits of a fingerprint shown in messages


def short_fingerprint(fingerprint: str | None) -> str:
    """The first 12 hex digits of a model fingerprint and ``...`` (``'?'`` when unknown)."""
    return f"{fingerprint[:_SHORT]}..." if fingerprint else "?"


def _check_shard(shard: str) -> None:
    if not isinstance(shard, str) or not shard or shard.startswith(".") or "/" in shard:
        raise ValueError(
            f"shard must be a shard name (no directory, no leading dot), got {shard!r}"
        )
    if os.sep in shard or (os.altsep and os.altsep in shard):
        raise ValueError(f"shard must be a shard name without a path separator, got {shard!r}")


def _shard_file(root: Path, shard: str) -> Path:
    return root / _SHARDS / f"{shard}.safetensors"


def save_shard_embeddings(
    out_dir: str | os.PathLike[str],
    *,
    shard: str,
    keys: list[str],
    image: torch.Tensor,
    text: torch.Tensor,
    meta: Mapping[str, Any],
) -> Path:
    """Write one shard's embeddings to ``out_dir/shards/{shard}.safetensors`` atomically.

    Args:
        shard: the shard's name (:func:`curatorch.data.shard_name`).
        keys: the ``n`` unique ``__key__`` of the embedded samples; row ``i`` is ``keys[i]``.
        image, text: ``[n, D]`` embeddings (stored as float16).
        meta: JSON-able facts about this shard; must hold ``model_fingerprint``, the
            reference model's fingerprint, which :class:`ShardEmbeddingCache` compares with
            ``meta.json`` to detect stale shard files.

    Returns the file written.
    """
    _check_shard(shard)
    if isinstance(keys, str) or not all(isinstance(k, str) for k in keys):
        raise ValueError("keys must be a list of strings")
    n = len(keys)
    if len(set(keys)) != n:
        raise ValueError(f"keys of shard {shard!r} must be unique")
    if image.ndim != 2 or image.shape[0] != n or tuple(text.shape) != tuple(image.shape):
        raise ValueError(
            f"image and text must both be [n={n}, D], got {tuple(image.shape)} and "
            f"{tuple(text.shape)}"
        )
    fingerprint = meta.get("model_fingerprint") if isinstance(meta, Mapping) else None
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError("meta must hold the reference model's 'model_fingerprint'")
    header = {
        "format": SHARD_CACHE_FORMAT,
        "shard": shard,
        "count": str(n),
        "model_fingerprint": fingerprint,
        "meta": json.dumps(dict(meta)),
    }
    tensors = {
        "image": image.detach().to("cpu", torch.float16).contiguous(),
        "text": text.detach().to("cpu", torch.float16).contiguous(),
        "keys": torch.frombuffer(bytearray(json.dumps(keys).encode("utf-8")), dtype=torch.uint8),
    }
    path = _shard_file(Path(out_dir), shard)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), parents=True)
    return path


def write_shard_cache_meta(
    out_dir: str | os.PathLike[str],
    *,
    logit_scale: float,
    logit_bias: float,
    model_fingerprint: str,
    model_kind: str,
    meta: Mapping[str, Any],
) -> None:
    """Write ``out_dir/meta.json`` atomically: the reference's temperature ``logit_scale``
    and bias ``logit_bias`` (both unitless: pair logits are ``t * cos + b``), its
    ``model_fingerprint`` and ``model_kind``, and the JSON-able ``meta``."""
    for name, value in (("model_fingerprint", model_fingerprint), ("model_kind", model_kind)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    info = {
        **dict(meta),
        "format": SHARD_CACHE_FORMAT,
        "logit_scale": float(logit_scale),
        "logit_bias": float(logit_bias),
        "model_fingerprint": model_fingerprint,
        "model_kind": model_kind,
    }
    text = json.dumps(info, indent=1)
    out = Path(out_dir)
    (out / _SHARDS).mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / _META, text)


def is_shard_cache(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a shard embedding cache folder (``meta.json`` of this format)."""
    meta = Path(path) / _META
    if not meta.is_file():
        return False
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("format") == SHARD_CACHE_FORMAT


class _Shard:
    """One loaded shard file: embeddings and the row of each key."""

    def __init__(self, image: torch.Tensor, text: torch.Tensor, keys: list[str]) -> None:
        self.image = image
        self.text = text
        self.rows = {k: i for i, k in enumerate(keys)}


class ShardEmbeddingCache:
    """Reference embeddings of shard samples, looked up by ``(shard, key)``.

    Args:
        path: the cache folder (written by
            :func:`curatorch.train.shard_reference.embed_shards`).
        max_cached_shards: shard files kept in memory (least recently used are dropped).

    Attributes:
        path: the folder. logit_scale, logit_bias: the reference's ``t`` and ``b``.
        fingerprint: the reference model's fingerprint, which every shard file must match.
        kind: the reference model's kind (``"curatorch"``, ``"hf-siglip"``, ``"hf-clip"``).
        checkpoint_sha256: SHA-256 of a curatorch checkpoint's weights file (``None`` for
            other models).
        meta: everything in ``meta.json``.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_cached_shards: int = 8) -> None:
        self.path = Path(path)
        meta_file = self.path / _META
        if not meta_file.is_file():
            raise ValueError(
                f"{self.path} is not a shard embedding cache (no {_META}); create one with "
                f"`curatorch embed` on a config with data.shards"
            )
        if isinstance(max_cached_shards, bool) or not isinstance(max_cached_shards, int):
            raise ValueError(f"max_cached_shards must be an int, got {max_cached_shards!r}")
        if max_cached_shards < 1:
            raise ValueError(f"max_cached_shards must be >= 1, got {max_cached_shards}")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"shard embedding cache {meta_file} is unreadable: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != SHARD_CACHE_FORMAT:
            raise ValueError(
                f"{meta_file} is not the meta file of a shard embedding cache (format "
                f"{meta.get('format') if isinstance(meta, dict) else None!r})"
            )
        if "model_fingerprint" not in meta and "checkpoint_sha256" in meta:
            raise ValueError(
                f"shard embedding cache {self.path} was written before caches recorded the "
                f"model's fingerprint; {_RERUN}"
            )
        for key in ("logit_scale", "logit_bias", "model_fingerprint", "model_kind"):
            if key not in meta:
                raise ValueError(f"shard embedding cache {meta_file} lacks {key!r}")
        self.meta: dict[str, Any] = meta
        self.logit_scale = float(meta["logit_scale"])
        self.logit_bias = float(meta["logit_bias"])
        self.fingerprint = str(meta["model_fingerprint"])
        self.kind = str(meta["model_kind"])
        sha = meta.get("checkpoint_sha256")
        self.checkpoint_sha256: str | None = str(sha) if sha else None
        self.max_cached_shards = max_cached_shards
        self._loaded: OrderedDict[str, _Shard] = OrderedDict()

    def check_model(self, *, fingerprint: str, kind: str, fix: str = _RERUN) -> None:
        """Refuse a cache written by another model than ``kind`` / ``fingerprint``.

        Raises a one-line ``ValueError`` naming the cache, both models (kind and short
        fingerprint) and ``fix``.
        """
        if (self.fingerprint, self.kind) != (fingerprint, kind):
            raise ValueError(
                f"shard embedding cache {self.path} was written by another model: "
                f"{self.kind} {short_fingerprint(self.fingerprint)}, not {kind} "
                f"{short_fingerprint(fingerprint)}; {fix}"
            )

    def shard_file(self, shard: str) -> Path:
        """Path of a shard's embedding file (which may not exist)."""
        return _shard_file(self.path, shard)

    def _missing_shard(self, shard: str) -> ValueError:
        return ValueError(
            f"shard embedding cache {self.path} has no embeddings for shard {shard!r} "
            f"({self.shard_file(shard)} is missing); {_RERUN} over every shard of data.shards"
        )

    def _check_header(self, shard: str, file: Path, header: Mapping[str, str] | None) -> None:
        header = header or {}
        if header.get("format") != SHARD_CACHE_FORMAT:
            raise ValueError(f"{file} is not a shard embedding file; {_RERUN}")
        got = header.get("model_fingerprint", "")
        if got != self.fingerprint:
            raise ValueError(
                f"shard embedding file {file} is stale: it was computed by the model "
                f"{short_fingerprint(got)}, but {self.path / _META} records "
                f"{short_fingerprint(self.fingerprint)}; {_RERUN}"
            )
        if header.get("shard") != shard:
            raise ValueError(f"{file} holds shard {header.get('shard')!r}, not {shard!r}; {_RERUN}")

    def _header(self, shard: str) -> dict[str, str]:
        file = self.shard_file(shard)
        if not file.is_file():
            raise self._missing_shard(shard)
        try:
            with safe_open(str(file), framework="pt") as fh:
                header = fh.metadata()
        except (OSError, SafetensorError) as exc:
            raise ValueError(f"shard embedding file {file} is unreadable: {exc}; {_RERUN}") from exc
        self._check_header(shard, file, header)
        return header

    def _load(self, shard: str) -> _Shard:
        got = self._loaded.get(shard)
        if got is not None:
            self._loaded.move_to_end(shard)
            return got
        self._header(shard)
        file = self.shard_file(shard)
        try:
            tensors = load_file(str(file))
            keys = json.loads(bytes(tensors["keys"].numpy()).decode("utf-8"))
            loaded = _Shard(tensors["image"], tensors["text"], keys)
        except (OSError, SafetensorError, KeyError, ValueError) as exc:
            raise ValueError(f"shard embedding file {file} is unreadable: {exc}; {_RERUN}") from exc
        self._loaded[shard] = loaded
        while len(self._loaded) > self.max_cached_shards:
            self._loaded.popitem(last=False)
        return loaded

    def lookup(
        self, shards: Sequence[str], keys: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float16 ``(image [n, D], text [n, D])``; row ``i`` belongs to ``(shards[i], keys[i])``.

        A missing shard file or key, or a stale shard file, is a ``ValueError`` naming it.
        """
        if isinstance(shards, str) or isinstance(keys, str):
            raise ValueError("shards and keys must be sequences of strings, not a single str")
        if len(shards) != len(keys):
            raise ValueError(
                f"shards and keys must have the same length, got {len(shards)} and {len(keys)}"
            )
        n = len(keys)
        if n == 0:
            dim = int(self.meta.get("dim", 0))
            empty = torch.empty(0, dim, dtype=torch.float16)
            return empty, empty.clone()
        # gather shard by shard, in order of first appearance
        by_shard: dict[str, list[int]] = {}
        for i, shard in enumerate(shards):
            by_shard.setdefault(shard, []).append(i)
        image: torch.Tensor | None = None
        text: torch.Tensor | None = None
        for shard, positions in by_shard.items():
            data = self._load(shard)
            rows = []
            for i in positions:
                row = data.rows.get(keys[i])
                if row is None:
                    raise ValueError(
                        f"shard embedding cache {self.path} has no entry for key {keys[i]!r} of "
                        f"shard {shard!r} ({self.shard_file(shard)}); the shard changed since "
                        f"it was embedded: {_RERUN}"
                    )
                rows.append(row)
            if image is None or text is None:
                dim = data.image.shape[1]
                image = torch.empty(n, dim, dtype=torch.float16)
                text = torch.empty(n, dim, dtype=torch.float16)
            where = torch.tensor(positions, dtype=torch.int64)
            index = torch.tensor(rows, dtype=torch.int64)
            image[where] = data.image[index]
            text[where] = data.text[index]
        return image, text  # type: ignore[return-value]

    def check_covers(self, shard_names: Sequence[str]) -> None:
        """Check that every shard has an up-to-date file (reads the file headers only).

        Raises ``ValueError`` naming the first shard without a file, or a stale file.
        """
        if isinstance(shard_names, str):
            raise ValueError("shard_names must be a sequence of shard names, not a single str")
        for shard in shard_names:
            self._header(shard)

    def __repr__(self) -> str:
        return f"ShardEmbeddingCache({str(self.path)!r})"
