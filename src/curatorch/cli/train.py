"""``curatorch train``, ``curatorch eval`` and ``curatorch embed``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import (
    add_set_option,
    config_path,
    output_dir,
    run_training,
    shard_tokenizer,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``train``, ``eval`` and ``embed`` commands to ``sub`` (argparse subparsers)."""
    p = sub.add_parser("train", help="train a two-tower model from a TOML config")
    p.add_argument("config", type=Path, help="experiment config: a TOML file or a shipped name")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    add_set_option(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint on its world's held-out sets")
    p.add_argument("checkpoint", type=Path, help="run folder or checkpoint folder")
    p.add_argument("--patch-size", type=int, default=0, help="patch size (0: the run's)")
    p.set_defaults(handler=_eval)

    p = sub.add_parser(
        "embed",
        help="cache a reference model's embeddings of a pool, or of every shard when the "
        "config sets data.shards (for JEST training)",
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        default=None,
        help="reference: a curatorch run or checkpoint folder, or an HF model folder "
        "(same as --model)",
    )
    p.add_argument("--model", type=Path, default=None, help="reference model folder")
    p.add_argument(
        "--model-source",
        choices=("auto", "curatorch", "hf"),
        default="auto",
        help="what the model folder holds (auto: an HF SigLIP/CLIP folder by its "
        "config.json, else a curatorch run; a folder with both is refused)",
    )
    p.add_argument("--config", type=Path, required=True, help="config whose data to embed")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    p.add_argument(
        "--pool",
        choices=("raw", "curated"),
        default=None,
        help="pool to embed (default raw; not with data.shards)",
    )
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a shard cache in --out written by another model",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_option(p)
    p.set_defaults(handler=_embed)


def _train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from curatorch.train import load_config, train

    cfg = load_config(config_path(args.config), args.overrides)

    def show(record: dict) -> None:
        keys = ("zeroshot_acc", "fewshot_acc", "i2t_r1", "t2i_r1", "mean_score")
        scores = " ".join(f"{k}={record[k]:.3f}" for k in keys if k in record)
        tqdm.write(
            f"step {record['step']:>6} examples {record['examples_seen']:>9} {scores}",
            file=sys.stderr,
        )

    return run_training(train, cfg, args, on_eval=show)


def _eval(args: argparse.Namespace) -> int:
    from curatorch.data import build_world
    from curatorch.eval import evaluate
    from curatorch.models import build_model
    from curatorch.train import (
        CheckpointError,
        ConfigError,
        config_from_dict,
        load_checkpoint,
        load_model_weights,
        model_config_for,
    )
    from curatorch.train.model_config import train_patch_size

    ckpt = load_checkpoint(args.checkpoint)
    try:
        cfg = config_from_dict(ckpt.state["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} has no valid config: {exc}") from exc
    # the eval sets do not depend on the raw pool's size: build a small one
    world = build_world(dataclasses.replace(cfg.data, raw_size=min(cfg.data.raw_size, 2000)))
    model = build_model(model_config_for(cfg, world))
    load_model_weights(model, ckpt.model, ckpt.path)
    patch = args.patch_size or cfg.eval.patch_size or train_patch_size(cfg.model, model.cfg)
    scores = evaluate(
        model,
        world.eval,
        patch_size=patch,
        batch_size=cfg.eval.batch_size,
        fewshot_l2=cfg.eval.fewshot_l2,
    )
    record = {"checkpoint": str(ckpt.path), "step": ckpt.state.get("step"), "patch_size": patch}
    print(json.dumps({**record, **scores}))
    return 0


def _embed_model_path(args: argparse.Namespace) -> Path:
    """The reference folder: the positional argument or ``--model`` (exactly one)."""
    if (args.checkpoint is None) == (args.model is None):
        raise ValueError(
            "embed needs the reference model once: a positional CHECKPOINT or --model PATH"
        )
    return args.checkpoint if args.checkpoint is not None else args.model


def _embed(args: argparse.Namespace) -> int:
    from curatorch.data import build_world
    from curatorch.train import load_config
    from curatorch.train.reference import embed_pool
    from curatorch.train.shard_reference import detect_model_source

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = _embed_model_path(args)
    cfg = load_config(config_path(args.config), args.overrides)
    output_dir(args.out, create=False)  # the cache writer puts the folder in place
    if cfg.data.shards:
        if args.pool is not None:
            raise ValueError("--pool does not apply when the config sets data.shards")
        return _embed_shards(args, cfg, model)
    if detect_model_source(model, args.model_source) != "curatorch":
        raise ValueError(
            f"model {model} is an HF model: it embeds shards (set data.shards); the built-in "
            f"pools are embedded by a curatorch run"
        )
    if args.overwrite:
        raise ValueError("--overwrite applies to shard caches (data.shards)")
    world = build_world(cfg.data)
    meta = embed_pool(
        model,
        world=world,
        data=cfg.data,
        pool_name=args.pool or "raw",
        out=args.out,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    summary = {k: meta[k] for k in ("out", "count", "pool", "checkpoint", "checkpoint_sha256")}
    print(json.dumps(summary))
    return 0


def _embed_shards(args: argparse.Namespace, cfg: Any, model: Path) -> int:
    """``curatorch embed`` with ``data.shards``: one cache file per shard, by any adapter."""
    from curatorch.train.shard_reference import embed_shards

    urls, tokenizer = shard_tokenizer(cfg)
    meta = embed_shards(
        model,
        urls=urls,
        tokenizer=tokenizer,
        image_size=cfg.data.image_size,
        out=args.out,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        model_source=args.model_source,
        overwrite=args.overwrite,
        tokenizer_name=f"data.tokenizer = {cfg.data.tokenizer!r}",
    )
    keys = ("out", "count", "samples_skipped", "model", "model_kind", "model_fingerprint")
    keys += tuple(k for k in ("checkpoint", "checkpoint_sha256") if k in meta)
    summary = {k: meta[k] for k in keys}
    print(json.dumps({**summary, "logit_bias": meta["logit_bias"], "shards": len(meta["shards"])}))
    return 0
