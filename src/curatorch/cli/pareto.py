"""``curatorch pareto train``, ``curatorch pareto compare`` and ``curatorch pareto multitask``
(MMPareto and baselines)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import (
    COMPARISON_EPILOG,
    add_set_option,
    config_path,
    run_training,
)

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``pareto`` command group (``train``, ``compare``, ``multitask``) to ``sub``."""
    p = sub.add_parser("pareto", help="multimodal classifier with MMPareto or a baseline")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, help_text in (
        ("train", _train, "train one multimodal classifier from a TOML config"),
        ("compare", _compare, "methods x seeds plus unimodal-alone models -> report"),
        ("multitask", _multitask, "multi-task: methods x seeds plus each task alone -> report"),
    ):
        epilog = COMPARISON_EPILOG if name in ("compare", "multitask") else None
        a = actions.add_parser(name, help=help_text, epilog=epilog)
        shipped = "multitask" if name == "multitask" else "pareto"
        a.add_argument(
            "config",
            type=Path,
            help=f"experiment config: a TOML file or a shipped name ({shipped})",
        )
        a.add_argument("--out", type=Path, required=True, help="run folder")
        add_set_option(a)
        a.add_argument("--resume", action="store_true", help="continue the run(s) in --out")
        a.add_argument("--overwrite", action="store_true", help="replace the run(s) in --out")
        a.add_argument("--no-progress", action="store_true", help="no progress bar")
        a.set_defaults(handler=handler)


def _show(record: dict) -> None:
    from tqdm.auto import tqdm

    accs = " ".join(f"{k}={v:.3f}" for k, v in record.items() if k.startswith("test_acc"))
    tqdm.write(f"step {record['step']:>6} {accs}", file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from curatorch.train.multimodal import load_pareto_config, train_pareto

    cfg = load_pareto_config(config_path(args.config), args.overrides)
    return run_training(train_pareto, cfg, args, on_eval=_show)


def _compare(args: argparse.Namespace) -> int:
    from curatorch.experiments.pareto_compare import run_pareto_compare
    from curatorch.train.multimodal import load_pareto_config

    cfg = load_pareto_config(config_path(args.config), args.overrides)
    final = run_pareto_compare(
        cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress
    )
    print(json.dumps(final))
    return 0


def _multitask(args: argparse.Namespace) -> int:
    from curatorch.experiments.multitask_compare import run_multitask_compare
    from curatorch.train.multitask import load_multitask_config

    cfg = load_multitask_config(config_path(args.config), args.overrides)
    final = run_multitask_compare(
        cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress
    )
    print(json.dumps(final))
    return 0
