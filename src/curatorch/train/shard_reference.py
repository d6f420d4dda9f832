"""Reference embeddings of WebDataset shards: computing the per-shard cache, serving it.

``curatorch embed`` on a config with ``data.shards`` calls :func:`embed_shards`; a training
run on shards with a JEST strategy reads the cache through :func:`load_shard_reference`.
The cache layout is in :mod:`curatorch.data.shard_cache`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from curatorch.data import PairDataset, check_vocab_fits, file_sha256, is_embedding_cache
from curatorch.data.shard_cache import (
    ShardEmbeddingCache,
    is_shard_cache,
    save_shard_embeddings,
    write_shard_cache_meta,
)
from curatorch.data.shards import (
    FAULT_REASONS,
    ShardBatch,
    ShardFault,
    iter_shard,
    shard_name,
)
from curatorch.eval import embed_images, embed_texts
from curatorch.models import TwoTower, two_tower_forward_flops
from curatorch.selection import ModelEmbeddings
from curatorch.train.reference import load_trained_model

__all__ = ["ShardCachedReference", "embed_shards", "load_shard_reference"]


def _new_counts() -> dict[str, int]:
    """Zeroed sample counts: ``samples_ok``, ``samples_skipped``, ``skipped_<reason>``."""
    return {"samples_ok": 0, "samples_skipped": 0, **{f"skipped_{r}": 0 for r in FAULT_REASONS}}


def _embed_part(
    model: TwoTower,
    images: list[torch.Tensor],
    captions: list[str],
    *,
    tokenizer: Any,
    patch_size: int,
    batch_size: int,
    device: torch.device | str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(image [n, D], text [n, D])`` embeddings of decoded samples."""
    n = len(images)
    tokens = tokenizer.encode(captions)  # [n, L]
    zeros = torch.zeros(n, dtype=torch.int64)
    part = PairDataset(
        images=torch.stack(images),
        tokens=tokens,
        ids=torch.arange(n),
        noise=zeros,
        labels=zeros,
        tokenizer=tokenizer,
    )
    img = embed_images(model, part, patch_size=patch_size, batch_size=batch_size, device=device)
    txt = embed_texts(model, tokens, batch_size=batch_size, device=device)
    return img, txt


def _embed_shard(
    model: TwoTower,
    url: str,
    *,
    tokenizer: Any,
    image_size: int,
    patch_size: int,
    batch_size: int,
    device: torch.device | str,
) -> tuple[list[str], torch.Tensor, torch.Tensor, dict[str, int]]:
    """One shard: ``(keys, image [n, D], text [n, D], counts)`` of its usable samples."""
    keys: list[str] = []
    img_parts: list[torch.Tensor] = [torch.empty(0, model.cfg.embed_dim)]
    txt_parts: list[torch.Tensor] = [torch.empty(0, model.cfg.embed_dim)]
    images: list[torch.Tensor] = []
    captions: list[str] = []
    counts = _new_counts()
    items = iter_shard(url, image_size=image_size)
    while True:
        item = next(items, None)
        if isinstance(item, ShardFault):
            counts["samples_skipped"] += 1
            counts[f"skipped_{item.reason}"] += 1
            continue
        if item is not None:
            counts["samples_ok"] += 1
            keys.append(item.key)
            images.append(item.image)
            captions.append(item.caption)
        if images and (item is None or len(images) >= batch_size):
            img, txt = _embed_part(
                model,
                images,
                captions,
                tokenizer=tokenizer,
                patch_size=patch_size,
                batch_size=batch_size,
                device=device,
            )
            img_parts.append(img)
            txt_parts.append(txt)
            images, captions = [], []
        if item is None:
            return keys, torch.cat(img_parts), torch.cat(txt_parts), counts


def _check_embed_args(
    urls: Sequence[str], batch_size: int, out: str | os.PathLike[str]
) -> tuple[list[str], list[str], Path]:
    """Validate :func:`embed_shards`' arguments; returns ``(urls, shard names, out)``.

    Raises ``ValueError`` naming the argument: ``urls`` empty, a single path or with two
    shards of one name, ``batch_size`` not an int >= 1, or ``out`` a folder that is neither
    a shard cache nor what an interrupted first run left.
    """
    if isinstance(urls, (str, os.PathLike)) or not isinstance(urls, Sequence) or not urls:
        raise ValueError(f"urls must be a non-empty sequence of shard paths, got {urls!r}")
    paths = [os.fspath(u) for u in urls]
    names = [shard_name(u) for u in paths]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"urls: two shards have the name {dup!r}; shard names must be unique")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out_path = Path(out)
    # a shard cache, or what an interrupted first run left (shards/ without meta.json)
    if out_path.exists() and (
        not out_path.is_dir()
        or is_embedding_cache(out_path)
        or not (is_shard_cache(out_path) or {p.name for p in out_path.iterdir()} <= {"shards"})
    ):
        raise ValueError(
            f"{out_path} exists and is not a shard embedding cache; choose another --out"
        )
    return paths, names, out_path


def _embed_all_shards(
    model: TwoTower,
    urls: Sequence[str],
    names: Sequence[str],
    out_path: Path,
    *,
    sha: str,
    tokenizer: Any,
    image_size: int,
    patch_size: int,
    batch_size: int,
    device: torch.device | str,
    progress: bool,
) -> dict[str, int]:
    """Embed each shard in order and write ``out_path/shards/{name}.safetensors`` as soon
    as it is done; returns the sample counts summed over the shards."""
    from tqdm.auto import tqdm

    counts = _new_counts()
    bar = tqdm(total=len(urls), desc="embed", unit="shard", disable=not progress, mininterval=0.5)
    for url, name in zip(urls, names, strict=True):
        keys, image, text, shard_counts = _embed_shard(
            model,
            url,
            tokenizer=tokenizer,
            image_size=image_size,
            patch_size=patch_size,
            batch_size=batch_size,
            device=device,
        )
        for key, value in shard_counts.items():
            counts[key] += value
        save_shard_embeddings(
            out_path,
            shard=name,
            keys=keys,
            image=image,
            text=text,
            meta={
                "checkpoint_sha256": sha,
                "url": url,
                "samples_ok": shard_counts["samples_ok"],
                "samples_skipped": shard_counts["samples_skipped"],
            },
        )
        bar.update(1)
    bar.close()
    return counts


def _cache_meta(
    model: TwoTower,
    state: dict[str, Any],
    folder: Path,
    *,
    sha: str,
    patch_size: int,
    image_size: int,
    names: list[str],
    urls: list[str],
    counts: dict[str, int],
) -> dict[str, Any]:
    """The shard cache's ``meta.json`` record: the checkpoint, the model, the shards, the
    sample counts and the FLOPs of computing the cache."""
    per_example = two_tower_forward_flops(model.cfg, patch_size)
    return {
        "checkpoint": str(folder),
        "checkpoint_sha256": sha,
        "checkpoint_step": state.get("step"),
        "model_size": state.get("config", {}).get("model", {}).get("size"),
        "patch_size": patch_size,
        "image_size": image_size,
        "dim": int(model.cfg.embed_dim),
        "shards": names,
        "urls": urls,
        "count": counts["samples_ok"],
        **counts,
        "forward_flops_per_example": per_example,
        "embed_flops": per_example * counts["samples_ok"],
    }


def embed_shards(
    checkpoint: str | os.PathLike[str],
    *,
    urls: Sequence[str],
    tokenizer: Any,
    image_size: int,
    out: str | os.PathLike[str],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Embed every usable sample of ``urls`` with a trained reference; write the shard cache.

    Each shard is read once, in order, decoded like :class:`~curatorch.data.ShardStream`
    does (same resizing, same tokenizer), and its embeddings are written to
    ``out/shards/{shard}.safetensors`` as soon as it is done; ``out/meta.json`` comes last.
    Faulty samples are skipped and counted (``skipped_<reason>`` in the result and in
    ``meta.json``), never embedded.

    Returns the cache's metadata: the checkpoint and its SHA-256, patch size, FLOPs per
    example and in total, sample counts, plus ``out``.
    """
    paths, names, out_path = _check_embed_args(urls, batch_size, out)
    model, state, patch, folder = load_trained_model(checkpoint, device)
    text = model.cfg.text
    check_vocab_fits(tokenizer, vocab_size=text.vocab_size, context_length=text.context_length)
    sha = file_sha256(folder / "model.safetensors")
    counts = _embed_all_shards(
        model,
        paths,
        names,
        out_path,
        sha=sha,
        tokenizer=tokenizer,
        image_size=image_size,
        patch_size=patch,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    meta = _cache_meta(
        model,
        state,
        folder,
        sha=sha,
        patch_size=patch,
        image_size=image_size,
        names=names,
        urls=paths,
        counts=counts,
    )
    write_shard_cache_meta(
        out_path,
        logit_scale=float(model.logit_scale.detach()),
        logit_bias=float(model.logit_bias.detach()),
        checkpoint_sha256=sha,
        meta=meta,
    )
    return {**meta, "out": str(out_path)}


@dataclasses.dataclass
class ShardCachedReference:
    """Reference embeddings of shard samples looked up in a :class:`ShardEmbeddingCache`.

    Attributes:
        cache: the per-shard cache.
        setup_flops: the one-time cost of computing the cache (``embed_flops``).
    """

    cache: ShardEmbeddingCache
    setup_flops: int = 0

    def embeddings_for(self, batch: ShardBatch | Any, device: torch.device) -> ModelEmbeddings:
        """Float32 embeddings ``[n, D]`` of a batch with ``shards`` and ``keys`` (a
        :class:`~curatorch.data.ShardBatch` or the training loop's candidates)."""
        shards, keys = getattr(batch, "shards", None), getattr(batch, "keys", None)
        if shards is None or keys is None:
            raise ValueError(
                "a shard reference cache needs the shard and key of every sample; this batch "
                "has none (is strategy.reference a shard cache while the data is a pool?)"
            )
        image, text = self.cache.lookup(shards, keys)
        return ModelEmbeddings(
            image.to(device).float(),
            text.to(device).float(),
            self.cache.logit_scale,
            self.cache.logit_bias,
        )

    def flops(self, count: int) -> int:
        """Scoring from the cache costs no forward pass."""
        return 0


def load_shard_reference(
    path: str | os.PathLike[str], *, urls: Sequence[str]
) -> ShardCachedReference:
    """The shard cache at ``path``, checked to hold an up-to-date file for every shard.

    Raises ``ValueError`` naming ``strategy.reference`` when ``path`` is not a shard cache,
    and naming the first shard the cache lacks (or holds stale embeddings of).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"strategy.reference {p} does not exist")
    if not is_shard_cache(p):
        what = "an id-keyed pool cache" if is_embedding_cache(p) else "not a shard cache"
        raise ValueError(
            f"strategy.reference {p} is {what}; with data.shards the reference must be a "
            f"shard embedding cache: run `curatorch embed CHECKPOINT --config CONFIG --out DIR` "
            f"with the same data.shards"
        )
    cache = ShardEmbeddingCache(p)
    if isinstance(urls, str):
        raise ValueError("urls must be a sequence of shard paths, not a single str")
    cache.check_covers([shard_name(u) for u in urls])
    return ShardCachedReference(cache, setup_flops=int(cache.meta.get("embed_flops", 0)))
