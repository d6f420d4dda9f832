"""Per-sample scores of a pool or of shards by a reference model and, optionally, a learner.

For a pair with L2-normalised embeddings ``x`` (image) and ``y`` (text) by a model with
temperature ``t`` and bias ``b``:

- ``cosine = <x, y>`` (by the reference): the "CLIP score" DataComp filters on;
- ``ref_loss = softplus(-(t <x, y> + b))`` (nats): the diagonal term of the SigLIP pair
  loss (:func:`curatorch.losses.sigmoid_pair_losses`) with the reference's own ``t``
  and ``b``; low means easy for the reference (JEST's easy-reference score);
- ``learner_loss``: the same for the learner (hard-learner);
- ``learnability = learner_loss - ref_loss`` (JEST's score).

The losses are the diagonal of :class:`~curatorch.selection.PairScorer`'s score matrix,
so they are the numbers online selection uses. :func:`pair_scores` works on plain
embeddings; :func:`score_pool` and :func:`score_shards` load the models (any adapter: a
curatorch run or an HF SigLIP/CLIP folder), read the samples in batches and write the
score table (:mod:`curatorch.curation.table`).

Resuming: the samples are scored unit by unit (a shard; a built-in pool is one unit).
Each finished unit is written atomically to ``OUT.parts/{shard}.parquet`` with what it
was scored by; rerunning the command keeps the finished units and scores the rest, then
the table is written atomically to ``OUT`` and the parts folder removed. Parts (or a
table) scored by another model, with other scores or of other samples are refused, never
mixed in; ``overwrite`` discards them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from curatorch.curation.table import (
    LEARNER_SCORES,
    REFERENCE_SCORES,
    SCORE_TABLE_FORMAT,
    make_score_table,
    read_table_meta,
    write_parquet,
)
from curatorch.data import (
    NOISE_KINDS,
    PairDataset,
    check_shard_urls,
    fault_counts,
    iter_shard_batches,
    shard_name,
)
from curatorch.data.shard_cache import short_fingerprint
from curatorch.selection import ModelEmbeddings, PairScorer
from curatorch.train.shard_reference import (
    EmbedModel,
    check_model_fits,
    embed_batch,
    load_embed_model,
)

__all__ = [
    "fault_summary",
    "pair_scores",
    "parts_folder",
    "pool_digest",
    "score_pool",
    "score_shards",
]

_PART_FORMAT = "curatorch-scores-part"
_FIX = "pass --overwrite to score again from the start, or choose another --out"


def pair_scores(
    *, reference: ModelEmbeddings, learner: ModelEmbeddings | None = None
) -> dict[str, Tensor]:
    """Per-pair scores of ``n`` pairs (row ``i`` of image and text embeddings is a pair).

    Args:
        reference: the reference's ``[n, D]`` L2-normalised embeddings, ``t`` and ``b``.
        learner: the learner's (same ``n``), for ``learner_loss`` and ``learnability``.

    Returns:
        ``{"cosine", "ref_loss"[, "learner_loss", "learnability"]}``: float32 ``[n]``
        tensors (cosine unitless in [-1, 1], losses in nats; module docstring).
    """
    if learner is not None and len(learner) != len(reference):
        raise ValueError(
            f"learner and reference must embed the same pairs, got {len(learner)} and "
            f"{len(reference)}"
        )
    cosine = (reference.image.float() * reference.text.float()).sum(dim=1)
    easy = PairScorer(reference=reference, score="easy-reference").diagonal()
    out = {"cosine": cosine, "ref_loss": -easy.float()}
    if learner is not None:
        hard = PairScorer(learner=learner, score="hard-learner").diagonal()
        both = PairScorer(learner=learner, reference=reference, score="learnability")
        out["learner_loss"] = hard.float()
        out["learnability"] = both.diagonal().float()
    return out


def fault_summary(counts: dict[str, int]) -> str:
    """One line: how many samples were skipped, of how many, and why."""
    ok, skipped = counts.get("samples_ok", 0), counts.get("samples_skipped", 0)
    reasons = ", ".join(
        f"{k.removeprefix('skipped_')}={v}"
        for k, v in counts.items()
        if k.startswith("skipped_") and v
    )
    return f"faults: {skipped} of {ok + skipped} samples skipped" + (
        f" ({reasons})" if reasons else ""
    )


def parts_folder(out: str | os.PathLike[str]) -> Path:
    """Where an unfinished score table ``out`` keeps its finished units: ``OUT.parts``."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


# ------------------------------------------------------------------ models


def _model_record(model: EmbedModel) -> dict[str, Any]:
    """What the table records of a model: kind, fingerprint, temperature, bias, source."""
    adapter = model.adapter
    return {
        "kind": adapter.kind,
        "fingerprint": model.fingerprint,
        "source": model.source,
        "path": str(model.path),
        "patch_size": adapter.default_patch_size,
        "logit_scale": float(adapter.logit_scale.detach()),
        "logit_bias": float(adapter.logit_bias.detach()),
        "logit_bias_source": getattr(adapter, "bias_source", "model"),
        **{k: v for k, v in model.info.items() if k.startswith("checkpoint")},
    }


def _load(
    path: str | os.PathLike[str] | EmbedModel | None, *, source: str, pad_id: int, device: Any
) -> EmbedModel | None:
    if path is None or isinstance(path, EmbedModel):
        return path
    return load_embed_model(path, source=source, pad_id=pad_id, device=device)


def _score_batch(
    models: tuple[EmbedModel, EmbedModel | None],
    images: Tensor,
    tokens: Tensor,
    device: torch.device | str,
) -> dict[str, np.ndarray]:
    """Scores of one batch: uint8 images ``[n, 3, S, S]`` and token ids ``[n, L]``."""
    embeddings = []
    for model in models:
        if model is None:
            embeddings.append(None)
            continue
        image, text = embed_batch(model.adapter, images, tokens, device=device)
        scale = float(model.adapter.logit_scale.detach())
        bias = float(model.adapter.logit_bias.detach())
        embeddings.append(ModelEmbeddings(image, text, scale, bias))
    scores = pair_scores(reference=embeddings[0], learner=embeddings[1])
    return {name: value.numpy().astype(np.float32) for name, value in scores.items()}


# ------------------------------------------------------------------ parts and resuming


@dataclasses.dataclass(frozen=True)
class _Unit:
    """A unit of scoring: a shard (or a whole pool) and how to read its batches."""

    name: str
    url: str
    batches: Callable[[dict[str, int]], Iterator[tuple[dict[str, Any], Tensor, Tensor]]]


def _signature(meta: dict[str, Any]) -> dict[str, Any]:
    """What must agree for parts to be one table: models, scores and sample source."""
    models = {
        k: None if meta.get(k) is None else {f: meta[k][f] for f in ("kind", "fingerprint")}
        for k in ("reference", "learner")
    }
    return {"scores": meta["scores"], **models, "source": meta["source"]}


def _model_text(record: dict[str, Any] | None) -> str:
    if record is None:
        return "no learner"
    return f"{record['kind']} {short_fingerprint(record['fingerprint'])}"


def _mismatch(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """How the signature ``old`` differs from ``new``, in words (``None``: it does not)."""
    for name, what in (("reference", "reference model"), ("learner", "learner")):
        if old.get(name) != new.get(name):
            return f"another {what}: {_model_text(old.get(name))}, not {_model_text(new[name])}"
    if old.get("scores") != new.get("scores"):
        return f"other scores: {old.get('scores')}, not {new['scores']}"
    if old.get("source") != new.get("source"):
        return f"other samples: {old.get('source')}, not {new['source']}"
    return None


def _check_out(out: Path, signature: dict[str, Any], units: list[_Unit]) -> bool:
    """Check ``out`` and its parts before any work; returns whether ``out`` already is
    this complete table. A table or parts scored otherwise (another model, other scores,
    other samples) are a ``ValueError`` naming the file and the difference."""
    parts = parts_folder(out)
    for path, kind in ((out, "a file"), (parts, "a folder")):
        if path.exists() and path.is_dir() != (kind == "a folder"):
            raise ValueError(f"--out {out}: {path} exists and is not {kind}; remove it")
    if parts.is_dir():
        _check_parts(parts, signature, {u.name: u.url for u in units})
    if not out.exists():
        return False
    meta = read_table_meta(out)
    if meta is None or meta.get("format") != SCORE_TABLE_FORMAT:
        raise ValueError(f"--out {out} exists and is not a curatorch score table; {_FIX}")
    why = _mismatch(_signature(meta), signature)
    if why is None and [(s["shard"], s.get("url")) for s in meta.get("shards", [])] != [
        (u.name, u.url) for u in units
    ]:
        why = "other shards"
    if why is not None:
        raise ValueError(f"score table {out} was scored with {why}; {_FIX}")
    return True


def _check_parts(parts: Path, signature: dict[str, Any], urls: dict[str, str]) -> None:
    """Refuse a part in ``parts`` that is not one, or was scored otherwise."""
    for file in sorted(parts.glob("*.parquet")):
        meta = read_table_meta(file)
        if meta is None or meta.get("format") != _PART_FORMAT:
            raise ValueError(f"unfinished score table: {file} is not a part of one; {_FIX}")
        why = _mismatch(meta["signature"], signature)
        name = meta["shard"]["shard"]
        if why is None and name in urls and meta["shard"]["url"] != urls[name]:
            why = f"shard {name!r} read from {meta['shard']['url']}, not {urls[name]}"
        if why is not None:
            raise ValueError(f"unfinished score table: {file} was scored with {why}; {_FIX}")


def _finished(parts: Path, unit: _Unit) -> dict[str, Any] | None:
    meta = read_table_meta(parts / f"{unit.name}.parquet")
    return None if meta is None else meta.get("shard")


def _score_unit(
    unit: _Unit,
    models: tuple[EmbedModel, EmbedModel | None],
    *,
    columns: Sequence[str],
    device: torch.device | str,
    bar: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score one unit: its table columns and its record (name, url, rows, fault counts)."""
    counts = fault_counts()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in columns}
    for extra, images, tokens in unit.batches(counts):
        scores = _score_batch(models, images, tokens, device)
        for name, value in {**extra, **scores}.items():
            parts[name].append(np.asarray(value))
        bar.update(int(images.shape[0]))
    table = {k: np.concatenate(v) if v else [] for k, v in parts.items()}
    rows = len(table["__key__"])
    table["shard"] = [unit.name] * rows
    return table, {"shard": unit.name, "url": unit.url, "rows": rows, **counts}


def _write_part(parts: Path, record: dict, columns: dict, meta: dict) -> None:
    part_meta = {"format": _PART_FORMAT, "signature": _signature(meta), "shard": record}
    table = make_score_table(columns, scores=meta["scores"], meta=part_meta)
    write_parquet(parts / f"{record['shard']}.parquet", table)


def _assemble(parts: Path, records: list[dict[str, Any]], meta: dict[str, Any]) -> Any:
    """The whole table from the parts, in unit order, with the table's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [
        pq.read_table(parts / f"{r['shard']}.parquet").replace_schema_metadata(None)
        for r in records
    ]
    counts = fault_counts()
    for record in records:
        for key in counts:
            counts[key] += int(record.get(key, 0))
    full = {**meta, "shards": records, "counts": counts, "rows": sum(r["rows"] for r in records)}
    table = pa.concat_tables(tables)
    return make_score_table(
        {name: table.column(name) for name in table.column_names},
        scores=meta["scores"],
        meta=full,
    )


def _summary(out: Path, meta: dict[str, Any], resumed: int) -> dict[str, Any]:
    return {
        "out": str(out),
        "rows": meta["rows"],
        "shards": len(meta["shards"]),
        "resumed_shards": resumed,
        "scores": meta["scores"],
        "reference_fingerprint": meta["reference"]["fingerprint"],
        "learner_fingerprint": (meta.get("learner") or {}).get("fingerprint"),
        "counts": meta["counts"],
    }


def _run(
    units: list[_Unit],
    *,
    models: tuple[EmbedModel, EmbedModel | None],
    meta: dict[str, Any],
    out: Path,
    device: torch.device | str,
    progress: bool,
    total: int | None,
    overwrite: bool,
) -> dict[str, Any]:
    """Score every unit not yet in ``OUT.parts``, then write the table to ``out``
    (``overwrite``: discard an earlier table or parts in ``out`` first)."""
    from tqdm.auto import tqdm

    parts = parts_folder(out)
    if overwrite:
        if out.is_file():
            out.unlink()
        if parts.is_dir():
            shutil.rmtree(parts)
    if _check_out(out, _signature(meta), units):
        return _summary(out, read_table_meta(out) or {}, resumed=len(units))
    columns = ["__key__", *(["id", "clean", "noise"] if meta["source"]["kind"] == "pool" else [])]
    columns += meta["scores"]
    records, resumed = [], 0
    bar = tqdm(total=total, unit="ex", disable=not progress, mininterval=0.5)
    try:
        for i, unit in enumerate(units):
            record = _finished(parts, unit)
            if record is None:
                bar.set_description(f"score {unit.name} ({i + 1}/{len(units)})")
                table, record = _score_unit(unit, models, columns=columns, device=device, bar=bar)
                _write_part(parts, record, table, meta)
            else:
                resumed += 1
            records.append(record)
    except KeyboardInterrupt as exc:
        raise KeyboardInterrupt(
            f"scoring interrupted after {len(records)} of {len(units)} shards; rerun the "
            f"same command to continue (finished shards are kept in {parts})"
        ) from exc
    finally:
        bar.close()
    table = _assemble(parts, records, meta)
    write_parquet(out, table)
    shutil.rmtree(parts)
    return _summary(out, read_table_meta(out) or {}, resumed=resumed)


# ------------------------------------------------------------------ the public entries


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _load_models(
    reference: Any, learner: Any, *, sources: tuple[str, str], pad_id: int, device: Any
) -> tuple[EmbedModel, EmbedModel | None]:
    ref = _load(reference, source=sources[0], pad_id=pad_id, device=device)
    if ref is None:
        raise ValueError("reference must be a model folder or an EmbedModel, got None")
    return ref, _load(learner, source=sources[1], pad_id=pad_id, device=device)


def _base_meta(models: tuple[EmbedModel, EmbedModel | None], source: dict) -> dict[str, Any]:
    return {
        "format": SCORE_TABLE_FORMAT,
        "version": 1,
        "scores": list(REFERENCE_SCORES + (LEARNER_SCORES if models[1] is not None else ())),
        "reference": _model_record(models[0]),
        "learner": None if models[1] is None else _model_record(models[1]),
        "source": source,
    }


def pool_digest(pool: PairDataset) -> str:
    """SHA-256 of a pool's ids, images and tokens: what its scores depend on."""
    h = hashlib.sha256()
    for tensor in (pool.ids, pool.images, pool.tokens):
        h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def _pool_unit(pool: PairDataset, name: str, batch_size: int) -> _Unit:
    def batches(counts: dict[str, int]) -> Iterator[tuple[dict[str, Any], Tensor, Tensor]]:
        for start in range(0, len(pool), batch_size):
            index = torch.arange(start, min(start + batch_size, len(pool)))
            ids, noise = pool.ids[index], pool.noise[index]
            counts["samples_ok"] += len(index)
            extra = {
                "__key__": [f"{i:012d}" for i in ids.tolist()],
                "id": ids.numpy(),
                "clean": (noise == 0).numpy(),
                "noise": [NOISE_KINDS[c] for c in noise.tolist()],
            }
            yield extra, pool.images[index], pool.tokens[index]

    return _Unit(name, "", batches)


def score_pool(
    reference: str | os.PathLike[str] | EmbedModel,
    *,
    pool: PairDataset,
    out: str | os.PathLike[str],
    pool_name: str = "raw",
    learner: str | os.PathLike[str] | EmbedModel | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    progress: bool = True,
    overwrite: bool = False,
    model_source: str = "auto",
    learner_source: str = "auto",
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every pair of a built-in pool; write the score table ``out`` (Parquet).

    Args:
        reference, learner: model folders (a curatorch run or checkpoint, an HF
            SigLIP/CLIP folder; see :func:`~curatorch.train.shard_reference.load_embed_model`,
            ``model_source`` / ``learner_source``) or loaded models; ``learner`` optional.
        pool: the pool (``world.raw``); its tokens must fit the models.
        out: the table file; an unfinished one of the same models and pool is continued.
        pool_name: the pool's name (the table's ``shard`` column).
        batch_size: pairs per forward pass.
        overwrite: replace a table (or parts) scored otherwise, instead of refusing it.
        data: the data config (JSON-able) recorded in the table.

    Returns a summary: ``out``, ``rows``, ``shards``, ``resumed_shards``, ``scores``,
    both fingerprints and the sample ``counts``.
    """
    _check_batch_size(batch_size)
    if not isinstance(pool, PairDataset) or len(pool) == 0:
        raise ValueError("pool must be a non-empty PairDataset")
    models = _load_models(
        reference,
        learner,
        sources=(model_source, learner_source),
        pad_id=pool.tokenizer.pad_id,
        device=device,
    )
    for model in models:
        if model is not None:
            check_model_fits(
                model.adapter,
                tokenizer=pool.tokenizer,
                image_size=pool.image_size,
                tokenizer_name="the built-in world's tokenizer",
            )
    source = {"kind": "pool", "pool": pool_name, "size": len(pool), "sha256": pool_digest(pool)}
    meta = {**_base_meta(models, source), "data": data or {}}
    units = [_pool_unit(pool, pool_name, batch_size)]
    kw = {"device": device, "progress": progress, "overwrite": overwrite}
    return _run(units, models=models, meta=meta, out=Path(out), total=len(pool), **kw)


def _shard_unit(url: str, *, tokenizer: Any, image_size: int, batch_size: int) -> _Unit:
    def batches(counts: dict[str, int]) -> Iterator[tuple[dict[str, Any], Tensor, Tensor]]:
        for keys, images, captions in iter_shard_batches(
            url, image_size=image_size, batch_size=batch_size, counts=counts
        ):
            yield {"__key__": keys}, images, tokenizer.encode(captions)

    return _Unit(shard_name(url), url, batches)


def score_shards(
    reference: str | os.PathLike[str] | EmbedModel,
    *,
    urls: Sequence[str],
    tokenizer: Any,
    image_size: int,
    out: str | os.PathLike[str],
    learner: str | os.PathLike[str] | EmbedModel | None = None,
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    progress: bool = True,
    overwrite: bool = False,
    model_source: str = "auto",
    learner_source: str = "auto",
    tokenizer_name: str = "",
) -> dict[str, Any]:
    """Score every usable sample of the shards ``urls``; write the score table ``out``.

    Samples are decoded as training reads them (:func:`~curatorch.data.iter_shard`, at
    ``image_size``; captions through ``tokenizer``); faulty ones are skipped and counted
    per shard (the table's ``shards`` metadata, the summary's ``counts``). Each finished
    shard is kept in ``OUT.parts``: rerunning continues where an interrupted run stopped.
    Other arguments as :func:`score_pool`; ``tokenizer_name`` names the tokenizer in
    messages and in the table (``data.tokenizer``).
    """
    _check_batch_size(batch_size)
    paths = check_shard_urls(urls)
    models = _load_models(
        reference,
        learner,
        sources=(model_source, learner_source),
        pad_id=getattr(tokenizer, "pad_id", None),
        device=device,
    )
    name = tokenizer_name or f"tokenizer ({type(tokenizer).__name__})"
    for model in models:
        if model is not None:
            check_model_fits(
                model.adapter, tokenizer=tokenizer, image_size=image_size, tokenizer_name=name
            )
    source = {
        "kind": "shards",
        "image_size": image_size,
        "tokenizer": name,
        "vocab_size": int(tokenizer.vocab_size),
        "context_length": int(tokenizer.context_length),
    }
    meta = _base_meta(models, source)
    kw = {"tokenizer": tokenizer, "image_size": image_size, "batch_size": batch_size}
    units = [_shard_unit(url, **kw) for url in paths]
    run = {"device": device, "progress": progress, "overwrite": overwrite}
    return _run(units, models=models, meta=meta, out=Path(out), total=None, **run)
