"""Reference models for JEST: obtaining one, embedding a pool once, serving embeddings.

A reference is either an embedding cache (``curatorch embed``; no reference forward pass
during training) or a checkpoint (a forward pass of the reference on every super-batch).
Missing entries, or a cache computed for other data, are errors, never a silent switch to
the online reference.

:func:`obtain_reference` is the one way to get a reference's embedding cache: a given
cache is used as is, a given checkpoint is embedded once, or a reference is trained on the
curated pool; the training loop (``strategy.reference = "curated"``), ``curatorch
compare``, ``curatorch jest analyze`` and the scaling experiment all call it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
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
from curatorch.eval.evaluate import EVAL_METRICS
from curatorch.models import (
    ImageTowerConfig,
    TextTowerConfig,
    TwoTower,
    TwoTowerConfig,
    build_model,
    two_tower_forward_flops,
)
from curatorch.selection import ModelEmbeddings
from curatorch.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
)
from curatorch.train.config import (
    ConfigError,
    ExperimentConfig,
    StrategyConfig,
    config_from_dict,
    config_to_dict,
)
from curatorch.train.distributed import DistContext
from curatorch.train.loop import TrainingError, config_differences
from curatorch.train.model_config import train_patch_size

__all__ = [
    "CachedReference",
    "ObtainedReference",
    "OnlineReference",
    "ReferenceSource",
    "curated_reference_config",
    "embed_pool",
    "load_reference",
    "load_trained_model",
    "model_config_from_dict",
    "obtain_reference",
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
    if isinstance(ckpt.state.get("model_config"), dict) and (
        ckpt.state["model_config"].get("source") == "hf"
    ):
        raise CheckpointError(
            f"checkpoint {ckpt.path} is of a Hugging Face learner (model.source = 'hf'): use "
            f"the folder its run saved, RUN/model (from_pretrained, --model-source hf)"
        )
    try:
        model_cfg = model_config_from_dict(ckpt.state["model_config"])
        run_cfg = config_from_dict(ckpt.state["config"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} has no valid model config: {exc}") from exc
    model = build_model(model_cfg)
    load_model_weights(model, ckpt.model, ckpt.path)
    patch = train_patch_size(run_cfg.model, model_cfg)
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


# ------------------------------------------------------------------ obtaining a reference


# what a finished reference run may differ in from its recipe and still be reused: the
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class ObtainedReference:
    """What :func:`obtain_reference` found or made.

    Attributes:
        cache: the embedding cache of the training data (a pool cache, or a per-shard
            cache for ``data.shards``); ``None`` with ``embed=False``.
        checkpoint: the reference's checkpoint folder; ``None`` for a given cache.
        info: JSON-able facts for reports (recipe, final metrics, timings; ``given``).
    """

    cache: Path | None
    checkpoint: Path | None
    info: dict[str, Any]


def curated_reference_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The reference that ``strategy.reference = "curated"`` trains for the run ``cfg``:
    the run's own model, optimizer and training settings, ``strategy.reference_steps``
    steps (0 = ``train.steps``), IID on the world's curated pool."""
    steps = cfg.strategy.reference_steps or cfg.train.steps
    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, pool="curated", shards=""),
        train=dataclasses.replace(cfg.train, steps=steps),
        strategy=StrategyConfig(),
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _cache_is_current(cache: Path, ckpt: Path, *, data: DataConfig, urls: list[str]) -> bool:
    """Whether ``cache`` holds the embeddings of the training data (the pool ``data.pool``,
    or the shards ``urls``) by the checkpoint folder ``ckpt``."""
    from curatorch.data.shard_cache import is_shard_cache

    meta = _read_json(cache / "meta.json")
    weights = ckpt / "model.safetensors"
    if meta is None or not weights.is_file():
        return False
    if meta.get("checkpoint_sha256") != file_sha256(weights):
        return False
    if urls:
        return (
            is_shard_cache(cache)
            and meta.get("urls") == urls
            and (meta.get("image_size") == data.image_size)
        )
    return (
        is_embedding_cache(cache)
        and meta.get("pool") == data.pool
        and not _data_differences(meta.get("data", {}), dataclasses.asdict(data))
    )


def _shard_cache_is_current(cache: Path, model: Any, *, data: DataConfig, urls: list[str]) -> bool:
    """Whether ``cache`` is a shard cache of the shards ``urls`` at ``data.image_size`` by
    the loaded :class:`~curatorch.train.shard_reference.EmbedModel` ``model`` (its
    fingerprint: weights and config, whatever the model's source)."""
    from curatorch.data.shard_cache import is_shard_cache

    meta = _read_json(cache / "meta.json")
    return (
        meta is not None
        and is_shard_cache(cache)
        and meta.get("model_fingerprint") == model.fingerprint
        and meta.get("urls") == urls
        and meta.get("image_size") == data.image_size
    )


def _finished_run_matches(run: Path, recipe: ExperimentConfig) -> dict[str, Any] | None:
    """The summary of the finished run in ``run`` when it was trained as ``recipe`` says
    (apart from what a resume may change: :func:`~curatorch.train.loop.config_differences`,
    so a resumed run whose ``train.steps`` grew keeps its reference), else ``None``."""
    summary = _read_json(run / "summary.json")
    recorded = _read_json(run / "config.json")
    if summary is None or recorded is None:
        return None
    diffs, _ = config_differences(recorded, config_to_dict(recipe))
    return None if diffs else summary


def _embed_training_shards(
    model_path: Path,
    cache: Path,
    *,
    source: str,
    data: DataConfig,
    world: World | None,
    urls: list[str],
    device: torch.device | str,
    progress: bool,
    overwrite: bool,
) -> float | None:
    """Embed the shards ``urls`` with the model at ``model_path`` (``source``: a curatorch
    checkpoint or an HF folder, through its adapter) into ``cache``, tokenized with
    ``data.tokenizer`` (the built-in one only with ``world``), unless ``cache`` is already
    this model's cache of these shards (and not ``overwrite``). Returns the seconds taken,
    ``None`` when reused."""
    from curatorch.data import build_tokenizer, check_shard_captions
    from curatorch.train.shard_reference import embed_shards, load_embed_model

    tokenizer = build_tokenizer(data, world)
    model = load_embed_model(
        model_path, source=source, pad_id=getattr(tokenizer, "pad_id", None), device=device
    )
    if not overwrite and _shard_cache_is_current(cache, model, data=data, urls=urls):
        return None
    t0 = time.perf_counter()
    check_shard_captions(data, tokenizer, urls)
    embed_shards(
        model,
        urls=urls,
        tokenizer=tokenizer,
        image_size=data.image_size,
        out=cache,
        device=device,
        progress=progress,
        overwrite=True,  # not current: another model's (or other shards') cache
        tokenizer_name=f"data.tokenizer = {data.tokenizer!r}",
    )
    return round(time.perf_counter() - t0, 1)


def _embed_pool_once(
    ckpt: Path, cache: Path, *, data: DataConfig, world: World | None, **kw: Any
) -> float:
    """Embed the built-in pool ``data.pool`` with ``ckpt`` into ``cache``; returns the
    seconds taken."""
    if world is None:
        raise ValueError(f"embedding the built-in pool {data.pool!r} needs the built-in world")
    t0 = time.perf_counter()
    embed_pool(ckpt, world=world, data=data, pool_name=data.pool, out=cache, **kw)
    if not is_embedding_cache(cache):
        raise TrainingError(f"the reference cache {cache} was not written")
    return round(time.perf_counter() - t0, 1)


def _trained_on(
    recipe: ExperimentConfig, world: World | None, pool: PairDataset | None = None
) -> tuple[str, dict[str, Any]]:
    """What the reference ``recipe`` trains on, in words and as report facts: the given
    ``pool``, else its own curated ``data.shards``, else the built-in world's curated pool."""
    if pool is not None:
        return f"a pool of {len(pool)} examples", {"pool_size": len(pool)}
    if recipe.data.shards:
        return f"the curated shards {recipe.data.shards}", {"shards": recipe.data.shards}
    if world is None:
        raise ValueError("the reference trains on the built-in world's curated pool: no world")
    return (
        f"the curated pool ({len(world.curated)} examples)",
        {"curated_size": len(world.curated)},
    )


def _train_reference(
    recipe: ExperimentConfig,
    run: Path,
    *,
    world: World | None,
    reuse: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    pool: PairDataset | None = None,
) -> dict[str, Any]:
    """Train ``recipe`` (on ``pool``, else on its curated shards or the world's curated
    pool) into ``run`` (resumed when it holds a run of it; a finished one is reused as is
    when ``reuse``); returns the reference's facts."""
    from curatorch.eval import SHARD_EVAL_SCORES
    from curatorch.train.contrastive import train

    cfg = recipe.train
    where, facts = _trained_on(recipe, world, pool)
    info: dict[str, Any] = {
        "checkpoint": str(run),
        "steps": cfg.steps,
        "batch_size": cfg.batch_size,
        "model": recipe.model.size,
        **facts,
    }
    t0 = time.perf_counter()
    summary = _finished_run_matches(run, recipe) if reuse and not overwrite else None
    if summary is None:
        log(
            f"reference: training {recipe.model.size} for {cfg.steps} steps of "
            f"{cfg.batch_size} on {where} into {run}"
        )
        summary = train(
            recipe,
            run,
            resume=not overwrite,
            overwrite=overwrite,
            progress=progress,
            world=world,
            pool=pool,
        )
        info["wall_s"] = round(time.perf_counter() - t0, 1)
        log(f"reference: mean_score {summary['mean_score']:.3f} ({info['wall_s']:.0f} s)")
    else:
        info.update(reused=True, steps=summary.get("step", cfg.steps))
        info["wall_s"] = round(time.perf_counter() - t0, 1)
    scores = dict.fromkeys((*EVAL_METRICS, *SHARD_EVAL_SCORES))
    info["final"] = {m: summary[m] for m in scores if m != "zeroshot_chance" and m in summary}
    return info


def _given_model(path: Path, *, urls: list[str], key: str) -> tuple[Path, str]:
    """``(model path, source)`` of a given reference that is not a cache: a curatorch run
    or checkpoint (its checkpoint folder, ``"curatorch"``), or, for shards, a Hugging Face
    SigLIP/CLIP folder (the folder, ``"hf"``). Errors name ``key``."""
    from curatorch.train.shard_reference import detect_model_source

    try:
        source = detect_model_source(path)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc} (or a reference embedding cache)") from exc
    if source == "hf":
        if not urls:
            raise ValueError(
                f"{key} {path} is an HF model folder: it embeds shards (data.shards); a "
                f"built-in pool's reference is a curatorch run, checkpoint or cache"
            )
        return path, "hf"
    return find_checkpoint(path), "curatorch"


def _trained_reference(
    out: Path,
    cache: Path,
    *,
    recipe: ExperimentConfig,
    data: DataConfig,
    world: World | None,
    urls: list[str],
    reuse: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    pool: PairDataset | None = None,
) -> tuple[Path, str, dict[str, Any]]:
    """Train (or reuse) ``recipe``'s reference into ``out/reference``: on ``pool`` when
    given, else on its own ``data.shards`` (curated shards) when it names some, else on
    the world's curated pool. Returns ``(model path, source, facts)``: its latest
    checkpoint, or for an HF model (``model.source = "hf"``) the folder its run saved
    (``out/reference/model``)."""
    ref_cfg = recipe
    if pool is None and not recipe.data.shards:
        ref_cfg = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, pool="curated"))
    ref_cfg.validate()
    run = out / "reference"
    latest = latest_checkpoint(run)
    current = latest is not None and _cache_is_current(cache, latest, data=data, urls=urls)
    info = _train_reference(
        ref_cfg,
        run,
        world=world,
        reuse=current or reuse,
        overwrite=overwrite,
        progress=progress,
        log=log,
        pool=pool,
    )
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise TrainingError(f"the reference run in {run} left no checkpoint")
    if getattr(recipe.model, "source", "curatorch") == "hf":
        folder = run / "model"
        if not folder.is_dir():
            raise TrainingError(f"the HF reference run in {run} saved no model folder {folder}")
        return folder, "hf", info
    return ckpt, "curatorch", info


def _obtain(
    out: Path,
    *,
    given: str,
    recipe: ExperimentConfig | None,
    data: DataConfig,
    world: World | None,
    urls: list[str],
    device: torch.device | str,
    embed: bool,
    overwrite: bool,
    progress: bool,
    log: Callable[[str], None],
    key: str,
    pool: PairDataset | None = None,
) -> ObtainedReference:
    """:func:`obtain_reference`'s work, in one process."""
    from curatorch.data.shard_cache import is_shard_cache

    cache = out / "reference-cache"
    source = "curatorch"
    if given:
        path = Path(given)
        if not path.exists():
            raise ValueError(f"{key} {path} does not exist")
        if is_embedding_cache(path) or is_shard_cache(path):
            return ObtainedReference(path, None, {"cache": str(path), "given": True})
        ckpt, source = _given_model(path, urls=urls, key=key)
        info: dict[str, Any] = {"given": True, "model": str(path), "model_source": source}
    else:
        assert recipe is not None  # checked by obtain_reference
        ckpt, source, info = _trained_reference(
            out,
            cache,
            recipe=recipe,
            data=data,
            world=world,
            urls=urls,
            reuse=not embed,
            overwrite=overwrite,
            progress=progress,
            log=log,
            pool=pool,
        )
    if not embed:
        return ObtainedReference(None, ckpt, info)
    if urls:
        took = _embed_training_shards(
            ckpt,
            cache,
            source=source,
            data=data,
            world=world,
            urls=urls,
            device=device,
            progress=progress,
            overwrite=overwrite,
        )
        if took is not None:
            info["embed_s"] = took
    elif overwrite or not _cache_is_current(cache, ckpt, data=data, urls=urls):
        info["embed_s"] = _embed_pool_once(
            ckpt, cache, data=data, world=world, device=device, progress=progress
        )
    info["cache"] = str(cache)
    return ObtainedReference(cache, ckpt, info)


def _check_request(
    given: str | os.PathLike[str], recipe: ExperimentConfig | None, pool: PairDataset | None
) -> None:
    if bool(given) == (recipe is not None):
        raise ValueError("obtain_reference needs exactly one of given= and recipe=")
    if pool is not None and (recipe is None or recipe.data.shards):
        raise ValueError("obtain_reference(pool=...) trains a recipe on a built-in pool")


def obtain_reference(
    out: str | os.PathLike[str],
    *,
    data: DataConfig,
    world: World | None,
    given: str | os.PathLike[str] = "",
    recipe: ExperimentConfig | None = None,
    shards: Sequence[str] | None = None,
    device: torch.device | str = "cpu",
    embed: bool = True,
    overwrite: bool = False,
    dist: DistContext | None = None,
    progress: bool = True,
    log: Callable[[str], None] = _log,
    key: str = "strategy.reference",
    pool: PairDataset | None = None,
) -> ObtainedReference:
    """A reference and its embedding cache of the training data ``data`` (its pool
    ``data.pool`` of ``world``, or its shards), for a run or experiment folder ``out``.

    Exactly one of:

    - ``given``: an embedding cache (pool or shard cache), used as is (the loader checks
      it), or a model embedded once into ``out/reference-cache``: a curatorch run or
      checkpoint, or (shards only) an HF SigLIP/CLIP folder, through its adapter;
    - ``recipe``: the reference's own experiment config, trained IID into
      ``out/reference`` on its ``recipe.data.shards`` (curated shards) if set, else on
      ``world``'s curated pool (or on ``pool``, another pool of ``world``: the caller
      records which beside the run), then embedded into ``out/reference-cache``.

    Shards are tokenized with ``data.tokenizer``; ``world`` may be ``None`` when nothing
    of a built-in world is used. A cache is reused when current: embedded by that model
    (for shards: the same fingerprint, shards and image size) for this data. A trained
    reference whose cache is current is reused when its finished run was trained as
    ``recipe`` says, apart from what a resume may change (device, threads,
    ``train.steps``: a resumed run whose budget grew keeps its reference); a run of
    another recipe is resumed or refused as :func:`train` does; ``overwrite`` retrains
    and re-embeds. ``embed=False`` skips the cache (the caller scores with ``checkpoint``
    itself). ``key`` names ``given`` in errors.

    The global torch RNG is left as it was. Collective under ``dist``: rank 0 does the
    work while the others wait; every rank gets the result (or rank 0's error)."""
    _check_request(given, recipe, pool)
    from curatorch.data.shards import expand_shards

    dist = dist or DistContext()
    urls = list(shards) if shards is not None else []
    if shards is None and data.shards:
        urls = expand_shards(data.shards)
    rng = torch.get_rng_state()  # training the reference must not shift the caller's
    outcome: tuple[str, Any] | None = None
    error: Exception | None = None
    if dist.is_main:
        try:
            done = _obtain(
                Path(out),
                given=os.fspath(given),
                recipe=recipe,
                data=data,
                world=world,
                urls=urls,
                device=device,
                embed=embed,
                overwrite=overwrite,
                progress=progress,
                log=log,
                key=key,
                pool=pool,
            )
            outcome = ("ok", done)
        except Exception as exc:  # every rank must reach the collective below
            error, outcome = exc, ("error", f"{type(exc).__name__}: {exc}")
    outcome = dist.broadcast_object(outcome)
    torch.set_rng_state(rng)
    if error is not None:
        raise error
    assert outcome is not None  # rank 0 always sets it
    if outcome[0] == "error":
        raise TrainingError(f"rank 0 could not obtain the reference: {outcome[1]}")
    return outcome[1]
