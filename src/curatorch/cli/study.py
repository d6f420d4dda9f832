"""``curatorch study reference``: the JEST paper's reference-curation study (Figure 5,
Table 3) on the built-in world."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from curatorch.cli.common import COMPARISON_EPILOG, add_set_option, config_path, output_dir

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``study`` command group to ``sub`` (argparse subparsers)."""
    p_study = sub.add_parser("study", help="studies that compose comparisons")
    study_sub = p_study.add_subparsers(dest="study_command", required=True, metavar="STUDY")
    p = study_sub.add_parser(
        "reference",
        help="references of several curation levels and training lengths, and an offline "
        "filter, for JEST and IID: the JEST paper's Figure 5 and Table 3",
        epilog=COMPARISON_EPILOG,
    )
    p.add_argument(
        "config",
        type=Path,
        help="a compare config with [[compare.references]], [[compare.pools]] and a "
        "[study] table: a TOML file or a shipped config's name (reference_study)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for runs, plots and reports")
    p.add_argument(
        "--quick", action="store_true", help="apply the config's compare.quick overrides"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="retrain everything (default: reuse finished runs and references)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_set_option(p)
    p.set_defaults(handler=_reference)


def _reference(args: argparse.Namespace) -> int:
    from curatorch.experiments.reference_study import load_study_config, run_reference_study

    sc = load_study_config(config_path(args.config), args.overrides, quick=args.quick)
    output_dir(args.out)
    words = ["curatorch", "study", "reference", str(args.config), "--out", str(args.out)]
    if args.quick:
        words.append("--quick")
    for item in args.overrides:
        words += ["--set", item]
    result = run_reference_study(
        sc,
        args.out,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        command=shlex.join(words),
    )
    record = result["study"]
    for part, finding in record["findings"].items():
        print(f"{part}: {finding['verdict']}")
    print(f"report: {args.out / 'study.md'} (comparison: {args.out / 'report.md'})")
    print(json.dumps({k: record[k] for k in ("findings", "wall_s")}))
    sys.stdout.flush()
    return 0
