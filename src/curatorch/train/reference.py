"""Reference models for JEST: loading them, embedding a pool once, serving embeddings.

A reference is either an embedding cache (``curatorch embed``; no reference forward pass
during training) or a checkpoint (a forward pass of the reference on every super-batch).
Missing entries, or a cache computed for other data, are errors, never a silent switch to
the online reference.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Protocol

import torch

from curatorch.data import (
    DataConfig,
    EmbeddingCache,
    PairDataset,
    World,
    file_sha256,
    is_embedding_cache,
    load_embedding_cache,
    save_embedding_cache,
)
from curatorch.eval import embed_images, embed_texts
from curatorch.models import (
    ImageTowerConfig,
    TextTowerConfig,
    TwoTower,
    TwoTowerConfig,
    build_model,
    two_tower_forward_flops,
)
from curatorch.selection import ModelEmbeddings
from curatorch.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from curatorch.train.config import ConfigError, config_from_dict

__all__ = [
    "CachedReference",
    "OnlineReference",
    "ReferenceSource",
    "embed_pool",
    "load_reference",
    "load_trained_model",
    "model_config_from_dict",
]

# data fields that do not change the pools' content
_POOL_NEUTRAL = {
    "pool",
    "eval_size",
    "retrieval_size",
    "probe_shots",
    "max_corrupt_ratio",
    "num_workers",
}


def model_config_from_dict(d: dict[str, Any]) -> TwoTowerConfig:
    """Inverse of ``dataclasses.asdict`` for :class:`TwoTowerConfig`."""
    return TwoTowerConfig(
        image=ImageTowerConfig(**d["image"]),
        text=TextTowerConfig(**d["text"]),
        embed_dim=d["embed_dim"],
    )


def load_trained_model(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[TwoTower, dict[str, Any], int, Path]:
    """Load a checkpoint's model in eval mode.

    Returns ``(model, state, patch_size, checkpoint_folder)`` where ``patch_size`` is the
    patch size the model was trained at.
    """
    ckpt = load_checkpoint(path)
    try:
        model_cfg = model_config_from_dict(ckpt.state["model_config"])
        run_cfg = config_from_dict(ckpt.state["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} has no valid model config: {exc}") from exc
    model = build_model(model_cfg)
    load_model_weights(model, ckpt.model, ckpt.path)
    patch = run_cfg.model.train_patch_size or min(model_cfg.image.patch_sizes)
    return model.to(device).eval(), ckpt.state, patch, ckpt.path


class ReferenceSource(Protocol):
    """Reference embeddings of super-batches, and what they cost."""

    setup_flops: int  # one-time FLOPs (embedding the pool for a cache)

    def embeddings(
        self, pool: PairDataset, index: torch.Tensor, device: torch.device
    ) -> ModelEmbeddings: ...

    def flops(self, count: int) -> int:
        """FLOPs spent scoring ``count`` examples during training."""
        ...


@dataclasses.dataclass
class CachedReference:
    """Reference embeddings looked up in an :class:`EmbeddingCache` (no forward pass)."""

    cache: EmbeddingCache
    setup_flops: int = 0

    def embeddings(
        self, pool: PairDataset, index: torch.Tensor, device: torch.device
    ) -> ModelEmbeddings:
        """Embeddings of ``pool``'s examples at ``index`` ``[n]``."""
        return self._lookup(pool.ids[index], device)

    def embeddings_for(self, batch: Any, device: torch.device) -> ModelEmbeddings:
        """Embeddings of a :class:`~curatorch.train.strategy.Candidates` batch (by id)."""
        if batch.ids is None:
            raise ValueError("an id-keyed reference cache needs example ids (not shard keys)")
        return self._lookup(batch.ids, device)

    def _lookup(self, ids: torch.Tensor, device: torch.device) -> ModelEmbeddings:
        img, txt = self.cache.lookup(ids)
        return ModelEmbeddings(
            img.to(device), txt.to(device), self.cache.logit_scale, self.cache.logit_bias
        )

    def flops(self, count: int) -> int:
        return 0


@dataclasses.dataclass
class OnlineReference:
    """A reference model run forward (no gradient) on every super-batch."""

    model: TwoTower
    patch_size: int
    forward_flops: int
    setup_flops: int = 0

    def embeddings(
        self, pool: PairDataset, index: torch.Tensor, device: torch.device
    ) -> ModelEmbeddings:
        """Embeddings of ``pool``'s examples at ``index`` ``[n]``."""
        images = pool.image_batch(index).to(device, non_blocking=True)
        return self._forward(images, pool.tokens[index].to(device, non_blocking=True))

    def embeddings_for(self, batch: Any, device: torch.device) -> ModelEmbeddings:
        """Embeddings of a :class:`~curatorch.train.strategy.Candidates` batch."""
        return self._forward(*batch.to_device(device))

    @torch.no_grad()
    def _forward(self, images: torch.Tensor, tokens: torch.Tensor) -> ModelEmbeddings:
        img = self.model.encode_image(images, patch_size=self.patch_size).float()
        txt = self.model.encode_text(tokens).float()
        return ModelEmbeddings(
            img, txt, float(self.model.logit_scale), float(self.model.logit_bias.detach())
        )

    def flops(self, count: int) -> int:
        return self.forward_flops * count


def _data_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = (set(a) | set(b)) - _POOL_NEUTRAL
    return [f"data.{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(keys) if a.get(k) != b.get(k)]


def load_reference(
    path: str | os.PathLike[str],
    *,
    data: DataConfig,
    pool_name: str,
    pool: PairDataset,
    device: torch.device | str = "cpu",
) -> CachedReference | OnlineReference:
    """The reference at ``path`` (a cache folder or a checkpoint), checked against the data.

    A cache must have been computed for the same pool of the same data (else a
    ``ValueError`` names the differing fields) and must hold every example of ``pool``.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"strategy.reference {p} does not exist")
    if is_embedding_cache(p):
        cache = load_embedding_cache(p)
        cached_data = cache.meta.get("data", {})
        diffs = _data_differences(cached_data, dataclasses.asdict(data))
        if diffs or cache.meta.get("pool") != pool_name:
            what = "; ".join(diffs[:4]) or f"pool {cache.meta.get('pool')!r} vs {pool_name!r}"
            raise ValueError(
                f"reference embedding cache {p} is stale: it was computed for other data "
                f"({what}); run `curatorch embed` again"
            )
        cache.positions(pool.ids)  # every example must be there
        return CachedReference(cache, setup_flops=int(cache.meta.get("embed_flops", 0)))
    model, _state, patch, _ = load_trained_model(p, device)
    return OnlineReference(model, patch, two_tower_forward_flops(model.cfg, patch))


def embed_pool(
    checkpoint: str | os.PathLike[str],
    *,
    world: World,
    data: DataConfig,
    pool_name: str,
    out: str | os.PathLike[str],
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Embed a pool with a trained reference and write the cache to ``out``.

    Returns the cache's metadata (also in ``out/meta.json``).
    """
    from tqdm.auto import tqdm

    model, state, patch, folder = load_trained_model(checkpoint, device)
    if pool_name not in ("raw", "curated"):
        raise ValueError(f"pool must be 'raw' or 'curated', got {pool_name!r}")
    pool = world.curated if pool_name == "curated" else world.raw
    img_parts, txt_parts = [], []
    bar = tqdm(total=len(pool), desc="embed", unit="ex", disable=not progress, mininterval=0.5)
    with torch.no_grad():
        for start in range(0, len(pool), batch_size * 8):
            part = pool.subset(torch.arange(start, min(start + batch_size * 8, len(pool))))
            img_parts.append(
                embed_images(model, part, patch_size=patch, batch_size=batch_size, device=device)
            )
            txt_parts.append(embed_texts(model, part.tokens, batch_size=batch_size, device=device))
            bar.update(len(part))
    bar.close()
    per_example = two_tower_forward_flops(model.cfg, patch)
    meta = {
        "checkpoint": str(folder),
        "checkpoint_sha256": file_sha256(folder / "model.safetensors"),
        "checkpoint_step": state.get("step"),
        "model_size": state.get("config", {}).get("model", {}).get("size"),
        "patch_size": patch,
        "pool": pool_name,
        "data": dataclasses.asdict(data),
        "forward_flops_per_example": per_example,
        "embed_flops": per_example * len(pool),
    }
    save_embedding_cache(
        out,
        ids=pool.ids,
        image=torch.cat(img_parts),
        text=torch.cat(txt_parts),
        logit_scale=float(model.logit_scale.detach()),
        logit_bias=float(model.logit_bias.detach()),
        meta=meta,
    )
    return {**meta, "count": len(pool), "out": str(out)}
