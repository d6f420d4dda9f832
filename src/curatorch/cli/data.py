"""``curatorch data ...``: look at the built-in data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``data`` command group to ``sub`` (argparse subparsers)."""
    p_data = sub.add_parser("data", help="inspect the built-in data")
    data_sub = p_data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("preview", help="a PNG grid of pairs with captions and noise labels")
    p.add_argument("config", type=Path, help="experiment config (TOML)")
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--pool", choices=("raw", "curated"), default="raw")
    p.add_argument("-n", type=int, default=16, help="number of pairs (default 16)")
    add_set_option(p)
    p.set_defaults(handler=_preview)


def _preview(args: argparse.Namespace) -> int:
    from curatorch.data import build_world
    from curatorch.report import preview_grid
    from curatorch.train import load_config

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    cfg = load_config(args.config, args.overrides)
    world = build_world(cfg.data)
    data = world.curated if args.pool == "curated" else world.raw
    n = min(args.n, len(data))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    preview_grid(data, args.out, n=n, seed=cfg.data.seed)
    print(json.dumps({"preview": str(args.out), "pool": args.pool, "n": n}))
    return 0
