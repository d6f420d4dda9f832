"""The JEST paper's Figure 2 on our data: one super-batch's learnability matrix, and how
much of its learnability each sampler captures (used by ``curatorch jest analyze`` and
``curatorch compare``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from curatorch.data import World
from curatorch.report import plot_learnability_matrix, plot_vs_chunks, plot_vs_filter_ratio
from curatorch.selection import (
    ModelEmbeddings,
    PairScorer,
    batch_size_for,
    learnability_vs_chunks,
    learnability_vs_filter_ratio,
)
from curatorch.train import ExperimentConfig
from curatorch.train.reference import load_reference, load_trained_model

__all__ = ["PLOTS", "analyze_selection"]

PLOTS = (
    "learnability_matrix.png",
    "learnability_vs_chunks.png",
    "learnability_vs_filter_ratio.png",
)


def analyze_selection(
    cfg: ExperimentConfig,
    *,
    world: World,
    learner: str | os.PathLike[str],
    reference: str | os.PathLike[str],
    out: str | os.PathLike[str],
    filter_ratio: float | None = None,
    super_batch: int = 0,
    seeds: int = 3,
    chunk_candidates: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256),
    filter_ratios: Sequence[float] = (0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95),
) -> dict[str, Any]:
    """Score one super-batch with a learner checkpoint and a reference, write the three
    Figure-2 plots into ``out`` and return the numbers.

    The super-batch has ``B = train.batch_size / (1 - f)`` examples (``f`` =
    ``filter_ratio``, default ``cfg.strategy.filter_ratio``) unless ``super_batch`` is
    given, drawn from the config's pool with ``train.seed``; every point is averaged over
    ``seeds`` selections.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pool = world.curated if cfg.data.pool == "curated" else world.raw
    f = cfg.strategy.filter_ratio if filter_ratio is None else filter_ratio
    size = super_batch or min(len(pool), round(cfg.train.batch_size / (1.0 - f)))
    if not 2 <= size <= len(pool):
        raise ValueError(f"super_batch must be in [2, {len(pool)}], got {size}")
    model, _, patch, _ = load_trained_model(learner)
    ref = load_reference(reference, data=cfg.data, pool_name=cfg.data.pool, pool=pool)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    index = torch.randperm(len(pool), generator=gen)[:size]
    with torch.no_grad():
        emb = ModelEmbeddings(
            model.encode_image(pool.image_batch(index), patch_size=patch),
            model.encode_text(pool.tokens[index]),
            float(model.logit_scale),
            float(model.logit_bias),
        )
    scorer = PairScorer(
        learner=emb,
        reference=ref.embeddings(pool, index, torch.device("cpu")),
        score="learnability",
    )
    dense = scorer.dense()
    # grouped by concept, and within a concept by the example's own learnability
    labels = pool.labels[index].double()
    diag = dense.diagonal().double()
    order = torch.argsort(labels * (diag.abs().max() * 4 + 1) - diag)
    plot_learnability_matrix(dense, order, out / PLOTS[0])
    chunks = cfg.strategy.chunks
    b = batch_size_for(size, f, chunks)
    seed_list = list(range(seeds))
    vs_chunks = learnability_vs_chunks(
        scorer, batch_size=b, chunks=[n for n in chunk_candidates if n <= b], seeds=seed_list
    )
    plot_vs_chunks(vs_chunks, out / PLOTS[1])
    ratios = [r for r in filter_ratios if (1 - r) * size >= chunks]
    vs_f = learnability_vs_filter_ratio(
        scorer, filter_ratios=ratios, chunks=chunks, seeds=seed_list
    )
    plot_vs_filter_ratio(vs_f, out / PLOTS[2])
    off = dense.sum() - dense.diagonal().sum()
    return {
        "super_batch": size,
        "batch_size": b,
        "learner": str(learner),
        "reference": str(reference),
        "diagonal_mean": float(dense.diagonal().mean()),
        "offdiagonal_mean": float(off / (size * size - size)),
        "vs_chunks": vs_chunks,
        "vs_filter_ratio": vs_f,
        "plots": [str(out / name) for name in PLOTS],
    }
