"""``curatorch jest analyze``: the JEST paper's Figure 2 on the built-in world."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``jest`` command group to ``sub`` (argparse subparsers)."""
    p_jest = sub.add_parser("jest", help="JEST tools")
    jest_sub = p_jest.add_subparsers(dest="jest_command", required=True, metavar="ACTION")
    p = jest_sub.add_parser(
        "analyze",
        help="learnability matrix of a super-batch and how much of it each sampler captures",
    )
    p.add_argument("config", type=Path, help="experiment config with strategy.reference set")
    p.add_argument("--out", type=Path, required=True, help="folder for the plots and JSON")
    p.add_argument(
        "--learner",
        type=Path,
        default=None,
        help="learner checkpoint (default: train one IID with the config into OUT/learner)",
    )
    p.add_argument("--super-batch", type=int, default=0, help="B (default: the config's)")
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged per point")
    p.add_argument("--no-progress", action="store_true")
    add_set_option(p)
    p.set_defaults(handler=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    import torch

    from curatorch.data import build_world
    from curatorch.report import plot_learnability_matrix, plot_vs_chunks, plot_vs_filter_ratio
    from curatorch.selection import (
        ModelEmbeddings,
        PairScorer,
        batch_size_for,
        learnability_vs_chunks,
        learnability_vs_filter_ratio,
    )
    from curatorch.train import ConfigError, load_config, train
    from curatorch.train.reference import load_reference, load_trained_model

    cfg = load_config(args.config, args.overrides)
    if not cfg.strategy.reference:
        raise ConfigError("strategy.reference must name a reference cache or checkpoint")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    args.out.mkdir(parents=True, exist_ok=True)
    world = build_world(cfg.data)
    pool = world.curated if cfg.data.pool == "curated" else world.raw
    learner_path = args.learner
    if learner_path is None:
        learner_path = args.out / "learner"
        iid = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, name="iid"))
        print(f"training an IID learner into {learner_path}", file=sys.stderr)
        train(iid, learner_path, resume=True, progress=not args.no_progress, world=world)
    learner_model, _, patch, _ = load_trained_model(learner_path)
    reference = load_reference(
        cfg.strategy.reference, data=cfg.data, pool_name=cfg.data.pool, pool=pool
    )
    # B = b / (1 - f) for the configured batch size and filter ratio, whatever the strategy
    size = args.super_batch or round(cfg.train.batch_size / (1.0 - cfg.strategy.filter_ratio))
    if not 2 <= size <= len(pool):
        raise ValueError(f"--super-batch must be in [2, {len(pool)}], got {size}")
    gen = torch.Generator().manual_seed(cfg.train.seed)
    index = torch.randperm(len(pool), generator=gen)[:size]
    with torch.no_grad():
        learner = ModelEmbeddings(
            learner_model.encode_image(pool.image_batch(index), patch_size=patch),
            learner_model.encode_text(pool.tokens[index]),
            float(learner_model.logit_scale),
            float(learner_model.logit_bias),
        )
    scorer = PairScorer(
        learner=learner,
        reference=reference.embeddings(pool, index, torch.device("cpu")),
        score="learnability",
    )
    dense = scorer.dense()
    # group by concept, and within a concept by the example's own learnability
    labels = pool.labels[index].double()
    diag = dense.diagonal().double()
    order = torch.argsort(labels * (diag.abs().max() * 4 + 1) - diag)
    plot_learnability_matrix(dense, order, args.out / "learnability_matrix.png")
    chunks = cfg.strategy.chunks
    b = batch_size_for(size, cfg.strategy.filter_ratio, chunks)
    seeds = list(range(args.seeds))
    candidates = [1, 2, 4, 8, 16, 32, 64, 128, 256]
    vs_chunks = learnability_vs_chunks(scorer, batch_size=b, chunks=candidates, seeds=seeds)
    plot_vs_chunks(vs_chunks, args.out / "learnability_vs_chunks.png")
    ratios = [0.0, 0.25, 0.5, 0.7, 0.8, 0.9, 0.95]
    ratios = [f for f in ratios if (1 - f) * size >= chunks]
    vs_f = learnability_vs_filter_ratio(scorer, filter_ratios=ratios, chunks=chunks, seeds=seeds)
    plot_vs_filter_ratio(vs_f, args.out / "learnability_vs_filter_ratio.png")
    off = dense.sum() - dense.diagonal().sum()
    result = {
        "super_batch": size,
        "batch_size": b,
        "learner": str(learner_path),
        "reference": str(cfg.strategy.reference),
        "diagonal_mean": float(dense.diagonal().mean()),
        "offdiagonal_mean": float(off / (size * size - size)),
        "vs_chunks": vs_chunks,
        "vs_filter_ratio": vs_f,
        "plots": [
            str(args.out / name)
            for name in (
                "learnability_matrix.png",
                "learnability_vs_chunks.png",
                "learnability_vs_filter_ratio.png",
            )
        ],
    }
    (args.out / "analysis.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0
