"""Reference embeddings of WebDataset shards: computing the per-shard cache, serving it.

``curatorch embed`` on a config with ``data.shards`` calls :func:`embed_shards` with any
model adapter (:class:`~curatorch.models.ImageTextModel`): a curatorch run or checkpoint
folder, or a Hugging Face ``SiglipModel`` / ``CLIPModel`` folder (:func:`load_embed_model`).
A training run on shards with a JEST strategy reads the cache through
:func:`load_shard_reference`. The cache layout is in :mod:`curatorch.data.shard_cache`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from curatorch.data import check_vocab_fits, file_sha256, is_embedding_cache
from curatorch.data.shard_cache import (
    ShardEmbeddingCache,
    is_shard_cache,
    save_shard_embeddings,
    write_shard_cache_meta,
)
from curatorch.data.shards import (
    ShardBatch,
    check_shard_urls,
    fault_counts,
    iter_shard_batches,
    shard_name,
)
from curatorch.models import (
    ImageTextModel,
    TwoTowerAdapter,
    check_image_size,
    check_tokenizer_vocab,
    fit_logit_bias,
    load_model_adapter,
)
from curatorch.selection import ModelEmbeddings
from curatorch.train.checkpoint import CheckpointError, find_checkpoint
from curatorch.train.reference import load_trained_model

__all__ = [
    "BIAS_FIT_PAIRS",
    "EMBED_MODEL_SOURCES",
    "EmbedModel",
    "ShardCachedReference",
    "check_model_fits",
    "detect_model_source",
    "embed_batch",
    "embed_shards",
    "load_embed_model",
    "load_shard_reference",
]

# where `curatorch embed` takes its model from; "auto" decides by the folder's files
EMBED_MODEL_SOURCES = ("auto", "curatorch", "hf")
# pairs (the first of the shards, in order) an unfitted CLIP sigmoid bias is fitted on
BIAS_FIT_PAIRS = 1024
_HF_MODEL_TYPES = ("siglip", "clip")
_CURATORCH_MODEL_FILE = "curatorch_model.json"  # TwoTowerAdapter.save's record


# ------------------------------------------------------------------ the model


@dataclasses.dataclass
class EmbedModel:
    """A reference model loaded for embedding, with the facts its cache records.

    Attributes:
        adapter: the model, in eval mode.
        source: ``"curatorch"`` or ``"hf"``.
        path: the folder it was loaded from (a curatorch checkpoint folder once resolved).
        fingerprint: ``adapter.fingerprint()`` as loaded (before any bias fit).
        info: JSON-able facts for ``meta.json`` (a curatorch checkpoint's
            ``checkpoint``, ``checkpoint_sha256``, ``checkpoint_step``, ``model_size``).
    """

    adapter: ImageTextModel
    source: str
    path: Path
    fingerprint: str
    info: dict[str, Any]


def _hf_model_type(folder: Path) -> str | None:
    """``model_type`` of ``folder/config.json`` (``None`` without one or without the key;
    a curatorch run's ``config.json`` is an experiment config and has none)."""
    file = folder / "config.json"
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"model {folder}: {file} is not readable JSON: {exc}") from exc
    value = record.get("model_type") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _is_curatorch_model(folder: Path) -> bool:
    """Whether ``folder`` is a curatorch run, checkpoints or checkpoint folder, or a
    folder written by :meth:`~curatorch.models.TwoTowerAdapter.save`."""
    if (folder / _CURATORCH_MODEL_FILE).is_file():
        return True
    if not ((folder / "state.json").is_file() or (folder / "checkpoints").is_dir()):
        return False  # (find_checkpoint would also look in the parent: a run's OUT/model)
    try:
        find_checkpoint(folder)
    except CheckpointError:
        return False
    return True


def detect_model_source(path: str | os.PathLike[str], source: str = "auto") -> str:
    """``"curatorch"`` or ``"hf"``: ``source`` when given, else what the folder holds.

    ``auto``: a ``config.json`` whose ``model_type`` is ``siglip`` or ``clip`` is an HF
    model; ``state.json``, ``checkpoints/`` or ``curatorch_model.json`` a curatorch one. A
    folder that is both, or neither, is a ``ValueError`` naming the folder and the fix.
    """
    if source not in EMBED_MODEL_SOURCES:
        raise ValueError(
            f"--model-source must be one of {list(EMBED_MODEL_SOURCES)}, got {source!r}"
        )
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"model {folder} is not a folder (a curatorch run or an HF model folder)")
    if source != "auto":
        return source
    model_type = _hf_model_type(folder)
    hf, ours = model_type in _HF_MODEL_TYPES, _is_curatorch_model(folder)
    if hf and ours:
        raise ValueError(
            f"model {folder} holds both an HF {model_type} model (config.json) and a curatorch "
            f"model; pass --model-source hf or --model-source curatorch"
        )
    if hf:
        return "hf"
    if ours:
        return "curatorch"
    found = sorted(p.name for p in folder.iterdir())[:8]
    what = f"config.json has model_type {model_type!r}" if model_type else f"found {found}"
    raise ValueError(
        f"model {folder} holds no CLIP/SigLIP model and no curatorch run or checkpoint "
        f"({what}); pass a run folder, a checkpoint folder or an HF model folder"
    )


def load_embed_model(
    path: str | os.PathLike[str],
    *,
    source: str = "auto",
    pad_id: int | None = None,
    device: torch.device | str = "cpu",
) -> EmbedModel:
    """Load the reference model at ``path`` (see :func:`detect_model_source`).

    Args:
        path: a curatorch run / checkpoint folder (the run's latest checkpoint, at the
            patch size it was trained at), or a local HF ``save_pretrained`` folder.
        source: ``"auto"``, ``"curatorch"`` or ``"hf"``.
        pad_id: HF only: the id the tokenizer right-pads with (the tokens' pad).
        device: where the weights go.
    """
    kind = detect_model_source(path, source)
    folder = Path(path)
    if kind == "hf":
        adapter = load_model_adapter("hf", folder, pad_id=pad_id, device=device)
        return EmbedModel(adapter, "hf", folder, adapter.fingerprint(), {"model": str(folder)})
    if (folder / _CURATORCH_MODEL_FILE).is_file():
        adapter = load_model_adapter("curatorch", folder, device=device)
        info = {
            "checkpoint": str(folder),
            "checkpoint_sha256": file_sha256(folder / "model.safetensors"),
        }
    else:
        model, state, patch, folder = load_trained_model(folder, device)
        adapter = TwoTowerAdapter(model, patch_size=patch)
        info = {
            "checkpoint": str(folder),
            "checkpoint_sha256": file_sha256(folder / "model.safetensors"),
            "checkpoint_step": state.get("step"),
            "model_size": state.get("config", {}).get("model", {}).get("size"),
        }
    return EmbedModel(
        adapter, "curatorch", folder, adapter.fingerprint(), {"model": str(folder), **info}
    )


def check_model_fits(
    model: ImageTextModel, *, tokenizer: Any, image_size: int, tokenizer_name: str
) -> None:
    """Refuse a tokenizer with more ids than the model's embedding table or longer rows
    than its context, and shards decoded at another size than the model's input."""
    check_tokenizer_vocab(model, vocab_size=tokenizer.vocab_size, tokenizer=tokenizer_name)
    check_vocab_fits(
        tokenizer,
        vocab_size=model.vocab_size,
        context_length=model.context_length,
        name=tokenizer_name,
    )
    check_image_size(model, image_size=image_size)


# ------------------------------------------------------------------ embedding


@torch.no_grad()
def embed_batch(
    model: ImageTextModel,
    images: torch.Tensor,
    tokens: torch.Tensor,
    *,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 ``(image [n, D], text [n, D])`` embeddings (on CPU, L2-normalised) of ``n``
    pairs: uint8 ``[n, 3, S, S]`` images through the model's ``preprocessing``, and
    ``[n, L]`` token ids (right-padded with the model's pad id)."""
    pixels = model.preprocessing(images)  # [n, 3, S, S] float32
    img = model.encode_image(pixels.to(device, non_blocking=True)).float().cpu()
    txt = model.encode_text(tokens.to(device, non_blocking=True)).float().cpu()
    return img, txt


def _embed_shard(
    model: ImageTextModel,
    url: str,
    *,
    tokenizer: Any,
    image_size: int,
    batch_size: int,
    device: torch.device | str,
) -> tuple[list[str], torch.Tensor, torch.Tensor, dict[str, int]]:
    """One shard: ``(keys, image [n, D], text [n, D], counts)`` of its usable samples."""
    keys: list[str] = []
    img_parts: list[torch.Tensor] = [torch.empty(0, model.embed_dim)]
    txt_parts: list[torch.Tensor] = [torch.empty(0, model.embed_dim)]
    counts = fault_counts()
    batches = iter_shard_batches(url, image_size=image_size, batch_size=batch_size, counts=counts)
    for batch_keys, images, captions in batches:
        img, txt = embed_batch(model, images, tokenizer.encode(captions), device=device)
        keys += batch_keys
        img_parts.append(img)
        txt_parts.append(txt)
    return keys, torch.cat(img_parts), torch.cat(txt_parts), counts


def _check_embed_args(
    urls: Sequence[str], batch_size: int, out: str | os.PathLike[str]
) -> tuple[list[str], list[str], Path]:
    """Validate :func:`embed_shards`' arguments; returns ``(urls, shard names, out)``.

    Raises ``ValueError`` naming the argument: ``urls`` empty, a single path or with two
    shards of one name, ``batch_size`` not an int >= 1, or ``out`` a folder that is neither
    a shard cache nor what an interrupted first run left.
    """
    paths = check_shard_urls(urls)
    names = [shard_name(u) for u in paths]
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


def _check_existing_cache(out: Path, model: EmbedModel, *, overwrite: bool) -> None:
    """A shard cache already in ``out`` must be this model's (it is then rewritten);
    another model's (or one without a fingerprint) is refused unless ``overwrite``, which
    first removes it (an interrupted rewrite is then an unfinished first run)."""
    if not is_shard_cache(out):
        return
    fix = "choose another --out, or pass --overwrite to replace it"
    try:
        cache = ShardEmbeddingCache(out)
    except ValueError as exc:
        if not overwrite:
            raise ValueError(f"{exc.args[0].split(';')[0]}; {fix}") from exc
    else:
        try:
            cache.check_model(fingerprint=model.fingerprint, kind=model.adapter.kind, fix=fix)
            return
        except ValueError:
            if not overwrite:
                raise
    (out / "meta.json").unlink()
    shutil.rmtree(out / "shards", ignore_errors=True)


def _embed_all_shards(
    model: EmbedModel,
    urls: Sequence[str],
    names: Sequence[str],
    out_path: Path,
    *,
    tokenizer: Any,
    image_size: int,
    batch_size: int,
    device: torch.device | str,
    progress: bool,
    head: int,
) -> tuple[dict[str, int], torch.Tensor, torch.Tensor]:
    """Embed each shard in order and write ``out_path/shards/{name}.safetensors`` as soon
    as it is done; returns the sample counts summed over the shards and the float32
    embeddings ``(image [h, D], text [h, D])`` of the first ``h <= head`` samples."""
    from tqdm.auto import tqdm

    counts = fault_counts()
    firsts: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
    kept = 0
    bar = tqdm(total=len(urls), desc="embed", unit="shard", disable=not progress, mininterval=0.5)
    for url, name in zip(urls, names, strict=True):
        keys, image, text, shard_counts = _embed_shard(
            model.adapter,
            url,
            tokenizer=tokenizer,
            image_size=image_size,
            batch_size=batch_size,
            device=device,
        )
        for key, value in shard_counts.items():
            counts[key] += value
        if kept < head:
            firsts[0].append(image[: head - kept])
            firsts[1].append(text[: head - kept])
            kept += firsts[0][-1].shape[0]
        save_shard_embeddings(
            out_path,
            shard=name,
            keys=keys,
            image=image,
            text=text,
            meta={
                "model_fingerprint": model.fingerprint,
                "url": url,
                "samples_ok": shard_counts["samples_ok"],
                "samples_skipped": shard_counts["samples_skipped"],
            },
        )
        bar.update(1)
    bar.close()
    dim = model.adapter.embed_dim
    image_head = torch.cat([torch.empty(0, dim), *firsts[0]])
    return counts, image_head, torch.cat([torch.empty(0, dim), *firsts[1]])


def _logit_bias(model: EmbedModel, image: torch.Tensor, text: torch.Tensor) -> dict[str, Any]:
    """The sigmoid bias the cache records, with where it came from: the model's own, or,
    for a CLIP whose bias was never fitted (``bias_source == "init"``), the one
    :func:`~curatorch.models.fit_logit_bias` fits on the first pairs ``image``/``text``."""
    adapter = model.adapter
    source = getattr(adapter, "bias_source", "model")
    if source != "init":
        return {"logit_bias": float(adapter.logit_bias.detach()), "logit_bias_source": source}
    if image.shape[0] < 2:
        raise ValueError(
            f"model {model.path}: its CLIP sigmoid bias was never fitted and the shards hold "
            f"{image.shape[0]} usable pair(s); fitting it needs at least 2"
        )
    bias = fit_logit_bias(image, text, logit_scale=float(adapter.logit_scale.detach()))
    return {
        "logit_bias": bias,
        "logit_bias_source": "fitted",
        "logit_bias_fit_pairs": int(image.shape[0]),
    }


def _cache_meta(
    model: EmbedModel,
    *,
    image_size: int,
    names: list[str],
    urls: list[str],
    counts: dict[str, int],
    bias: dict[str, Any],
) -> dict[str, Any]:
    """The shard cache's ``meta.json`` record: the model (source, kind, fingerprint,
    checkpoint facts), the shards, the sample counts, the bias and the FLOPs of
    computing the cache."""
    adapter = model.adapter
    per_example = adapter.forward_flops()
    return {
        "model_source": model.source,
        "model_kind": adapter.kind,
        "model_fingerprint": model.fingerprint,
        **model.info,
        "patch_size": adapter.default_patch_size,
        "image_size": image_size,
        "preprocessing": dataclasses.asdict(adapter.preprocessing),
        "dim": int(adapter.embed_dim),
        "shards": names,
        "urls": urls,
        "count": counts["samples_ok"],
        **counts,
        **{k: v for k, v in bias.items() if k != "logit_bias"},
        "forward_flops_per_example": per_example,
        "embed_flops": per_example * counts["samples_ok"],
    }


def embed_shards(
    model: str | os.PathLike[str] | EmbedModel,
    *,
    urls: Sequence[str],
    tokenizer: Any,
    image_size: int,
    out: str | os.PathLike[str],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    progress: bool = True,
    model_source: str = "auto",
    overwrite: bool = False,
    tokenizer_name: str = "",
) -> dict[str, Any]:
    """Embed every usable sample of ``urls`` with a reference model; write the shard cache.

    Args:
        model: a curatorch run / checkpoint folder or an HF model folder (loaded with
            :func:`load_embed_model`, ``model_source`` and the tokenizer's pad id), or
            an :class:`EmbedModel`.
        urls: the shards, in order.
        tokenizer: the captions' tokenizer (``encode``, ``vocab_size``,
            ``context_length``, ``pad_id``); refused when it has more ids than the model's
            text embedding table or longer rows than its context.
        image_size: the side the shards are decoded at (``data.image_size``); must be
            the model's input size.
        out: the cache folder (new, an unfinished first run, or this model's cache).
        batch_size: pairs per forward pass.
        overwrite: replace a cache in ``out`` written by another model (else refused).
        tokenizer_name: how messages name the tokenizer.

    Each shard is read once, in order, decoded like :class:`~curatorch.data.ShardStream`
    does (same resizing, same tokenizer), normalised by the model's ``preprocessing``,
    and its embeddings are written to ``out/shards/{shard}.safetensors`` as soon as it is
    done; ``out/meta.json`` comes last. Faulty samples are skipped and counted
    (``skipped_<reason>``), never embedded. A CLIP whose sigmoid bias was never fitted
    gets the bias fitted on the first :data:`BIAS_FIT_PAIRS` pairs.

    Returns the cache's metadata (model kind and fingerprint, a checkpoint's SHA-256,
    patch size, FLOPs per example and in total, sample counts, bias), plus ``out``.
    """
    paths, names, out_path = _check_embed_args(urls, batch_size, out)
    if not isinstance(model, EmbedModel):
        model = load_embed_model(
            model, source=model_source, pad_id=getattr(tokenizer, "pad_id", None), device=device
        )
    name = tokenizer_name or f"tokenizer ({type(tokenizer).__name__})"
    check_model_fits(model.adapter, tokenizer=tokenizer, image_size=image_size, tokenizer_name=name)
    _check_existing_cache(out_path, model, overwrite=overwrite)
    needs_fit = getattr(model.adapter, "bias_source", None) == "init"
    counts, image_head, text_head = _embed_all_shards(
        model,
        paths,
        names,
        out_path,
        tokenizer=tokenizer,
        image_size=image_size,
        batch_size=batch_size,
        device=device,
        progress=progress,
        head=BIAS_FIT_PAIRS if needs_fit else 0,
    )
    bias = _logit_bias(model, image_head, text_head)
    meta = _cache_meta(
        model, image_size=image_size, names=names, urls=paths, counts=counts, bias=bias
    )
    write_shard_cache_meta(
        out_path,
        logit_scale=float(model.adapter.logit_scale.detach()),
        logit_bias=bias["logit_bias"],
        model_fingerprint=model.fingerprint,
        model_kind=model.adapter.kind,
        meta=meta,
    )
    return {**meta, "logit_bias": bias["logit_bias"], "out": str(out_path)}


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
            f"shard embedding cache: run `curatorch embed MODEL --config CONFIG --out DIR` "
            f"(MODEL: a curatorch run or an HF model folder) with the same data.shards"
        )
    cache = ShardEmbeddingCache(p)
    if isinstance(urls, str):
        raise ValueError("urls must be a sequence of shard paths, not a single str")
    cache.check_covers([shard_name(u) for u in urls])
    return ShardCachedReference(cache, setup_flops=int(cache.meta.get("embed_flops", 0)))
