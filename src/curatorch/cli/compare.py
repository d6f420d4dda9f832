"""``curatorch compare`` and ``curatorch demo``: strategies side by side, JEST's headline
results on the built-in world."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import COMPARISON_EPILOG, add_set_option, config_path, output_dir

__all__ = ["register"]

# the shipped demo config (package data), found from any working folder
DEMO_CONFIG = "demo.toml"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quick", action="store_true", help="apply the config's compare.quick overrides"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="retrain everything (default: reuse finished runs with the same config)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_set_option(p)


def register(sub: Any) -> None:
    """Add the ``compare`` and ``demo`` commands to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "compare",
        help="train strategies with the same budget and seeds; report data and FLOP savings",
        epilog=COMPARISON_EPILOG,
    )
    p.add_argument(
        "config",
        type=Path,
        help="experiment config with a [compare] table: a TOML file, or the name of a "
        "shipped config (demo, paper_sweep, flexi_fine_patches)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for runs, plots and report")
    _add_common(p)
    p.set_defaults(handler=_compare)

    d = sub.add_parser(
        "demo",
        help="JEST vs IID vs independent selection vs Flexi-JEST on the built-in world",
        description="= curatorch compare <shipped demo.toml> --out runs/demo "
        "(with --quick: --out runs/demo-quick)",
        epilog=COMPARISON_EPILOG,
    )
    d.add_argument(
        "--config",
        type=Path,
        default=None,
        help="a TOML file or a shipped config's name (default: the shipped demo.toml)",
    )
    d.add_argument("--out", type=Path, default=None, help="(default: runs/demo or runs/demo-quick)")
    _add_common(d)
    d.set_defaults(handler=_demo)


def _run(args: argparse.Namespace, config: Path, out: Path, command: str) -> int:
    from curatorch.experiments.jest_compare import load_compare_config, run_compare

    cc = load_compare_config(config, args.overrides, quick=args.quick)
    output_dir(out)
    result = run_compare(
        cc, out, overwrite=args.overwrite, progress=not args.no_progress, command=command
    )
    print(result["table"])
    print(f"report: {out / 'report.md'}")
    print(json.dumps(result["summary"]))
    sys.stdout.flush()
    return 0


def _command(words: list[str], args: argparse.Namespace) -> str:
    words = list(words)
    if args.quick:
        words.append("--quick")
    for item in args.overrides:
        words += ["--set", item]
    return shlex.join(words)


def _compare(args: argparse.Namespace) -> int:
    cmd = _command(["curatorch", "compare", str(args.config), "--out", str(args.out)], args)
    return _run(args, config_path(args.config), args.out, cmd)


def _demo(args: argparse.Namespace) -> int:
    from curatorch.configs import CONFIG_DIR

    # without --config: the shipped file itself, whatever the working folder holds
    config = CONFIG_DIR / DEMO_CONFIG if args.config is None else config_path(args.config)
    out = args.out or Path("runs/demo-quick" if args.quick else "runs/demo")
    words = ["curatorch", "demo"]
    if args.config is not None:
        words += ["--config", str(args.config)]
    if args.out is not None:
        words += ["--out", str(args.out)]
    return _run(args, config, out, _command(words, args))
