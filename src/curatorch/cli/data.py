"""``curatorch data ...``: look at the built-in data, export it as WebDataset shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option, config_path, output_dir, output_file

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``data`` command group to ``sub`` (argparse subparsers)."""
    p_data = sub.add_parser("data", help="inspect the built-in data")
    data_sub = p_data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    p = data_sub.add_parser("preview", help="a PNG grid of pairs with captions and noise labels")
    p.add_argument(
        "config", type=Path, help="experiment config: a TOML file or a shipped name (smoke)"
    )
    p.add_argument("--out", type=Path, required=True, help="PNG file to write")
    p.add_argument("--pool", choices=("raw", "curated"), default="raw")
    p.add_argument("-n", type=int, default=16, help="number of pairs (default 16)")
    add_set_option(p)
    p.set_defaults(handler=_preview)

    p = data_sub.add_parser(
        "export-shards",
        help="write a world's pool as WebDataset tar shards (img2dataset layout)",
    )
    p.add_argument(
        "config", type=Path, help="experiment config: a TOML file or a shipped name (smoke)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for 000000.tar, 000001.tar ...")
    p.add_argument(
        "--pool",
        choices=("raw", "curated", "both"),
        default=None,
        help="pool to export (default: the config's data.pool); both = raw then curated",
    )
    p.add_argument("--samples-per-shard", type=int, default=1000, help="default 1000")
    p.add_argument("--image-format", choices=("png", "jpg", "webp"), default="png")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_option(p)
    p.set_defaults(handler=_export_shards)


def _preview(args: argparse.Namespace) -> int:
    from curatorch.data import build_world
    from curatorch.report import preview_grid
    from curatorch.train import load_config

    if args.n < 1:
        raise ValueError(f"-n must be >= 1, got {args.n}")
    cfg = load_config(config_path(args.config), args.overrides)
    output_file(args.out)
    world = build_world(cfg.data)
    data = world.curated if args.pool == "curated" else world.raw
    n = min(args.n, len(data))
    preview_grid(data, args.out, n=n, seed=cfg.data.seed)
    print(json.dumps({"preview": str(args.out), "pool": args.pool, "n": n}))
    return 0


def _export_shards(args: argparse.Namespace) -> int:
    from curatorch.data import build_world, export_shards
    from curatorch.train import load_config

    if args.samples_per_shard < 1:
        raise ValueError(f"--samples-per-shard must be >= 1, got {args.samples_per_shard}")
    cfg = load_config(config_path(args.config), args.overrides)
    output_dir(args.out)
    pool = args.pool or cfg.data.pool
    world = build_world(cfg.data)
    names = ("raw", "curated") if pool == "both" else (pool,)
    paths: list[Path] = []
    samples = 0
    for name in names:
        data = world.pool(name)
        paths += export_shards(
            data,
            args.out,
            samples_per_shard=args.samples_per_shard,
            start_shard=len(paths),
            image_format=args.image_format,
            progress=not args.no_progress,
        )
        samples += len(data)
    last = len(paths) - 1
    pattern = str(args.out / f"{{{0:06d}..{last:06d}}}.tar")
    summary = {"out": str(args.out), "pool": pool, "shards": len(paths), "samples": samples}
    print(json.dumps({**summary, "pattern": pattern}))
    return 0
