"""``curatorch jest analyze``: the JEST paper's Figure 2 on the built-in world."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option, config_path, output_dir

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``jest`` command group to ``sub`` (argparse subparsers)."""
    p_jest = sub.add_parser("jest", help="JEST tools")
    jest_sub = p_jest.add_subparsers(dest="jest_command", required=True, metavar="ACTION")
    p = jest_sub.add_parser(
        "analyze",
        help="learnability matrix of a super-batch and how much of it each sampler captures",
    )
    p.add_argument(
        "config",
        type=Path,
        help="experiment config with strategy.reference set (a cache, a checkpoint, or "
        '"curated": train one into OUT/reference and cache it in OUT/reference-cache)',
    )
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
    from curatorch.data import build_world
    from curatorch.experiments.jest_analysis import analyze_selection
    from curatorch.train import ConfigError, load_config, train
    from curatorch.train.contrastive import AUTO_REFERENCE
    from curatorch.train.reference import curated_reference_config, obtain_reference

    cfg = load_config(config_path(args.config), args.overrides)
    if not cfg.strategy.reference:
        raise ConfigError(
            'strategy.reference must name a reference cache or checkpoint, or be "curated"'
        )
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    output_dir(args.out)
    world = build_world(cfg.data)
    reference = cfg.strategy.reference
    if reference == AUTO_REFERENCE:  # the reference a run of this config would train
        reference = str(
            obtain_reference(
                args.out,
                data=cfg.data,
                world=world,
                recipe=curated_reference_config(cfg),
                device=cfg.train.device,
                progress=not args.no_progress,
            ).cache
        )
    learner = args.learner
    if learner is None:
        learner = args.out / "learner"
        iid = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, name="iid"))
        print(f"training an IID learner into {learner}", file=sys.stderr)
        train(iid, learner, resume=True, progress=not args.no_progress, world=world)
    result = analyze_selection(
        cfg,
        world=world,
        learner=learner,
        reference=reference,
        out=args.out,
        super_batch=args.super_batch,
        seeds=args.seeds,
    )
    (args.out / "analysis.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0
