"""Reference-embedding cache: a dataset's reference embeddings, computed once.

JEST scores every super-batch with a reference model. Per-example reference *scores*
cannot be cached (the joint score depends on the rest of the batch), but the reference's
embeddings can: the score of any batch follows from them and the model's temperature and
bias. A cache folder holds

- ``embeddings.safetensors``: ``ids`` [N] int64 (sorted), ``image`` and ``text`` [N, D]
  float16, L2-normalised;
- ``meta.json``: ``logit_scale``, ``logit_bias``, the checkpoint it came from and its
  SHA-256, the data config, the patch size, FLOPs per example, and so on.

The folder is written into a temporary sibling and renamed into place, so a cache on disk
is always complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from curatorch.fileio import atomic_write_dir

__all__ = [
    "EmbeddingCache",
    "file_sha256",
    "is_embedding_cache",
    "load_embedding_cache",
    "save_embedding_cache",
]

_TENSORS = "embeddings.safetensors"
_META = "meta.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_embedding_cache(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a cache folder (holds both cache files)."""
    p = Path(path)
    return (p / _TENSORS).is_file() and (p / _META).is_file()


@dataclass
class EmbeddingCache:
    """Reference embeddings keyed by example id.

    Attributes:
        ids: ``[N]`` int64 example ids, sorted ascending.
        image: ``[N, D]`` float16 image embeddings (row i belongs to ``ids[i]``).
        text: ``[N, D]`` float16 text embeddings.
        logit_scale: the reference model's temperature ``t`` (exponentiated).
        logit_bias: the reference model's bias ``b``.
        meta: everything else recorded at embedding time.
    """

    ids: torch.Tensor
    image: torch.Tensor
    text: torch.Tensor
    logit_scale: float
    logit_bias: float
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.ids.numel())

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Row of each id in the cache, ``[n]`` int64; a ValueError names missing ids."""
        ids = ids.to(torch.int64)
        pos = torch.searchsorted(self.ids, ids).clamp_(max=len(self) - 1)
        found = self.ids[pos] == ids
        if not bool(found.all()):
            missing = ids[~found]
            where = f" in {self.path}" if self.path else ""
            raise ValueError(
                f"reference embedding cache{where} has no entry for {missing.numel()} of "
                f"{ids.numel()} examples (e.g. id {int(missing[0])}); it was computed for "
                f"another dataset: run `curatorch embed` again"
            )
        return pos

    def lookup(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float32 ``(image [n, D], text [n, D])`` embeddings of ``ids``."""
        pos = self.positions(ids)
        return self.image[pos].float(), self.text[pos].float()


def save_embedding_cache(
    path: str | os.PathLike[str],
    *,
    ids: torch.Tensor,
    image: torch.Tensor,
    text: torch.Tensor,
    logit_scale: float,
    logit_bias: float,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write a cache folder at ``path`` atomically (an existing cache there is replaced).

    Args:
        ids: ``[N]`` unique int64 example ids (any order; stored sorted).
        image, text: ``[N, D]`` embeddings (stored as float16).
        logit_scale, logit_bias: the reference model's ``t`` and ``b``.
        meta: extra JSON-able facts (checkpoint hash, data config, ...).
    """
    n = ids.numel()
    if ids.ndim != 1:
        raise ValueError(f"ids must be [N], got shape {tuple(ids.shape)}")
    if image.ndim != 2 or image.shape[0] != n or text.shape != image.shape:
        raise ValueError(
            f"image and text must both be [N={n}, D], got {tuple(image.shape)} and "
            f"{tuple(text.shape)}"
        )
    order = torch.argsort(ids)
    sorted_ids = ids[order].to(torch.int64).contiguous()
    if n > 1 and bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
        raise ValueError("ids must be unique")
    out = Path(path)

    def write(tmp: Path) -> None:
        save_file(
            {
                "ids": sorted_ids,
                "image": image[order].to(torch.float16).contiguous(),
                "text": text[order].to(torch.float16).contiguous(),
            },
            str(tmp / _TENSORS),
        )
        info = {
            **dict(meta or {}),
            "logit_scale": float(logit_scale),
            "logit_bias": float(logit_bias),
            "count": int(n),
            "dim": int(image.shape[1]),
        }
        (tmp / _META).write_text(json.dumps(info, indent=1), encoding="utf-8")

    def existing(old: Path) -> None:  # replace only an earlier cache or an empty folder
        if not is_embedding_cache(old) and (not old.is_dir() or any(old.iterdir())):
            raise ValueError(f"{old} exists and is not an embedding cache; choose another --out")

    return atomic_write_dir(out, write, existing=existing, parents=True)


def load_embedding_cache(path: str | os.PathLike[str]) -> EmbeddingCache:
    """Load a cache folder; a missing or unreadable file is a ValueError naming it."""
    p = Path(path)
    if not is_embedding_cache(p):
        raise ValueError(
            f"{p} is not a reference embedding cache (expected {_TENSORS} and {_META}); "
            f"create one with `curatorch embed`"
        )
    try:
        meta = json.loads((p / _META).read_text(encoding="utf-8"))
        tensors = load_file(str(p / _TENSORS))
    except (OSError, json.JSONDecodeError, SafetensorError) as exc:
        raise ValueError(f"reference embedding cache {p} is unreadable: {exc}") from exc
    for key in ("ids", "image", "text"):
        if key not in tensors:
            raise ValueError(f"reference embedding cache {p / _TENSORS} lacks tensor {key!r}")
    for key in ("logit_scale", "logit_bias"):
        if key not in meta:
            raise ValueError(f"reference embedding cache {p / _META} lacks {key!r}")
    return EmbeddingCache(
        ids=tensors["ids"],
        image=tensors["image"],
        text=tensors["text"],
        logit_scale=float(meta["logit_scale"]),
        logit_bias=float(meta["logit_bias"]),
        meta=meta,
        path=p,
    )
