"""The ``curatorch`` command line: the only place that parses arguments and builds objects.

Every command returns an exit code: 0 on success, 2 for bad input (an invalid config, an
unreadable checkpoint, an output folder that holds another run), 1 when training fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from curatorch import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curatorch`` command."""
    parser = argparse.ArgumentParser(
        prog="curatorch",
        description="Train multimodal models with less compute (JEST, scaling laws, MMPareto).",
    )
    parser.add_argument("--version", action="version", version=f"curatorch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_set(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override a config value (TOML syntax), e.g. --set train.steps=500",
        )

    p_train = sub.add_parser("train", help="train a two-tower model from a TOML config")
    p_train.add_argument("config", type=Path, help="experiment config (TOML)")
    p_train.add_argument("--out", type=Path, required=True, help="run folder")
    add_set(p_train)
    p_train.add_argument("--resume", action="store_true", help="continue the run in --out")
    p_train.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    p_train.add_argument("--no-progress", action="store_true", help="no progress bar")

    p_eval = sub.add_parser("eval", help="evaluate a checkpoint on its world's held-out sets")
    p_eval.add_argument("checkpoint", type=Path, help="run folder or checkpoint folder")
    p_eval.add_argument("--patch-size", type=int, default=0, help="patch size (0: the run's)")

    p_data = sub.add_parser("data", help="inspect the built-in data")
    data_sub = p_data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p_prev = data_sub.add_parser("preview", help="a PNG grid of pairs with captions and noise labels")
    p_prev.add_argument("config", type=Path, help="experiment config (TOML)")
    p_prev.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p_prev.add_argument("--pool", choices=("raw", "curated"), default="raw")
    p_prev.add_argument("-n", type=int, default=16, help="number of pairs (default 16)")
    add_set(p_prev)
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from curatorch.train import load_config, train

    cfg = load_config(args.config, args.overrides)

    def show(record: dict) -> None:
        keys = ("zeroshot_acc", "fewshot_acc", "i2t_r1", "t2i_r1", "mean_score")
        scores = " ".join(f"{k}={record[k]:.3f}" for k in keys)
        tqdm.write(f"step {record['step']:>6} examples {record['examples_seen']:>9} {scores}", file=sys.stderr)

    summary = train(
        cfg,
        args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        on_eval=show,
    )
    print(json.dumps(summary))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import torch

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

    ckpt = load_checkpoint(args.checkpoint)
    try:
        cfg = config_from_dict(ckpt.state["config"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} has no valid config: {exc}") from exc
    # the eval sets do not depend on the raw pool's size: build a small one
    small = dataclasses.replace(cfg.data, raw_size=min(cfg.data.raw_size, 2000))
    world = build_world(small)
    model = build_model(model_config_for(cfg, world))
    load_model_weights(model, ckpt.model, ckpt.path)
    patch = args.patch_size or cfg.eval.patch_size or cfg.model.train_patch_size or None
    if patch is None:
        patch = min(model.config.image.patch_sizes)
    with torch.no_grad():
        scores = evaluate(model, world.eval, patch_size=patch, batch_size=cfg.eval.batch_size,
                          fewshot_l2=cfg.eval.fewshot_l2)
    print(json.dumps({"checkpoint": str(ckpt.path), "step": ckpt.state.get("step"),
                      "patch_size": patch, **scores}))
    return 0


def _cmd_data_preview(args: argparse.Namespace) -> int:
    from curatorch.data import build_world
    from curatorch.report import preview_grid
    from curatorch.train import load_config

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    cfg = load_config(args.config, args.overrides)
    world = build_world(cfg.data)
    data = world.curated if args.pool == "curated" else world.raw
    args.out.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(data, args.out, n=min(args.n, len(data)), seed=cfg.data.seed)
    print(json.dumps({"preview": str(args.out), "pool": args.pool, "n": min(args.n, len(data))}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from curatorch.train import CheckpointError, ConfigError, OutputDirError, TrainingError

    handlers = {"train": _cmd_train, "eval": _cmd_eval, "data": _cmd_data_preview}
    try:
        return handlers[args.command](args)
    except (ConfigError, CheckpointError, OutputDirError, ValueError) as exc:
        print(f"curatorch: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"curatorch: training failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("curatorch: interrupted", file=sys.stderr)
        return 130
