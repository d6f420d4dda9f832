"""``curatorch score`` and ``curatorch filter``: offline curation by a reference model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from curatorch.cli.common import (
    add_set_option,
    config_path,
    output_dir,
    output_file,
    shard_tokenizer,
)

__all__ = ["register"]

_SOURCES = ("auto", "curatorch", "hf")


def register(sub: Any) -> None:
    """Add the ``score`` and ``filter`` commands to ``sub`` (argparse subparsers)."""
    p = sub.add_parser(
        "score",
        help="per-sample scores (cosine, reference loss; with a learner: learner loss, "
        "learnability) of a built-in pool or of the shards of data.shards, as Parquet",
    )
    p.add_argument(
        "model", type=Path, help="reference: a curatorch run or checkpoint, or an HF folder"
    )
    p.add_argument("--config", type=Path, required=True, help="config whose data to score")
    p.add_argument("--out", type=Path, required=True, help="score table to write (.parquet)")
    p.add_argument("--learner", type=Path, default=None, help="learner model folder (optional)")
    p.add_argument("--model-source", choices=_SOURCES, default="auto", help="the reference's")
    p.add_argument("--learner-source", choices=_SOURCES, default="auto", help="the learner's")
    p.add_argument(
        "--pool",
        choices=("raw", "curated"),
        default=None,
        help="built-in pool to score (default raw; not with data.shards)",
    )
    p.add_argument("--batch-size", type=int, default=512, help="pairs per forward pass")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a table scored by other models"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_option(p)
    p.set_defaults(handler=_score)
    _register_filter(sub)


def _register_filter(sub: Any) -> None:
    p = sub.add_parser(
        "filter",
        help="keep the top fraction or a threshold of a score table; write the kept "
        "samples as shards or a key list; --sweep: clean fraction of the kept set",
    )
    p.add_argument("scores", type=Path, help="score table written by `curatorch score`")
    p.add_argument(
        "--by", default=None, help="score: cosine, ref_loss, learner_loss or learnability"
    )
    rule = p.add_mutually_exclusive_group()
    rule.add_argument("--top-fraction", type=float, default=None, help="keep the best F")
    rule.add_argument(
        "--threshold", type=float, default=None, help="keep those >= X (ref_loss: <= X)"
    )
    rule.add_argument(
        "--sweep",
        type=float,
        nargs="*",
        default=None,
        metavar="F",
        help="built-in pool: clean fraction of the top F of each score (default "
        "0.1 0.2 0.3 0.4 0.5); writes nothing but --report",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the kept shards")
    p.add_argument(
        "--shards", default=None, help="the input shards (brace pattern; default: the table's)"
    )
    p.add_argument("--keys-out", type=Path, default=None, help="file for the kept keys")
    p.add_argument("--report", type=Path, default=None, help="JSON report file")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an earlier filter output in --out"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_filter)


# ------------------------------------------------------------------ score


def _score(args: argparse.Namespace) -> int:
    from curatorch.curation import fault_summary
    from curatorch.data import build_world
    from curatorch.train import load_config

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    cfg = load_config(config_path(args.config), args.overrides)
    output_file(args.out)
    for option, path in (("model", args.model), ("--learner", args.learner)):
        if path is not None and not path.is_dir():
            raise ValueError(f"{option} {path} is not a folder (a curatorch run or HF model)")
    common = {
        "out": args.out,
        "learner": args.learner,
        "batch_size": args.batch_size,
        "device": args.device,
        "progress": not args.no_progress,
        "overwrite": args.overwrite,
        "model_source": args.model_source,
        "learner_source": args.learner_source,
    }
    t0 = time.perf_counter()
    if cfg.data.shards:
        if args.pool is not None:
            raise ValueError("--pool does not apply when the config sets data.shards")
        summary = _score_shards(args.model, cfg, common)
    else:
        from curatorch.curation import score_pool

        pool = args.pool or "raw"
        world = build_world(cfg.data)
        data = dataclasses.asdict(cfg.data)
        summary = score_pool(args.model, pool=world.pool(pool), pool_name=pool, data=data, **common)
    print(fault_summary(summary["counts"]), file=sys.stderr)
    counts = summary.pop("counts")
    summary["samples_skipped"] = counts["samples_skipped"]
    print(json.dumps({**summary, "wall_s": round(time.perf_counter() - t0, 1)}))
    return 0


def _score_shards(model: Path, cfg: Any, common: dict[str, Any]) -> dict[str, Any]:
    """``curatorch score`` on ``data.shards``, tokenized with ``data.tokenizer``."""
    from curatorch.curation import score_shards

    urls, tokenizer = shard_tokenizer(cfg)
    return score_shards(
        model,
        urls=urls,
        tokenizer=tokenizer,
        image_size=cfg.data.image_size,
        tokenizer_name=f"data.tokenizer = {cfg.data.tokenizer!r}",
        **common,
    )


# ------------------------------------------------------------------ filter


def _check_filter_args(args: argparse.Namespace) -> None:
    """Refuse option combinations that do not go together, before reading anything."""
    if args.sweep is not None:
        given = [o for o in ("out", "keys_out", "shards") if getattr(args, o) is not None]
        if given:
            raise ValueError(f"--sweep writes no samples: drop --{given[0].replace('_', '-')}")
        if any(not 0 < f <= 1 for f in args.sweep):
            raise ValueError(f"--sweep fractions must be in (0, 1], got {args.sweep}")
        return
    if args.top_fraction is None and args.threshold is None:
        raise ValueError("filter needs --top-fraction F, --threshold X or --sweep")
    if args.by is None:
        raise ValueError("filter needs --by SCORE (cosine, ref_loss, learner_loss, learnability)")
    if args.top_fraction is not None and not 0 < args.top_fraction <= 1:
        raise ValueError(f"--top-fraction must be in (0, 1], got {args.top_fraction}")
    if args.shards is not None and args.out is None:
        raise ValueError("--shards applies with --out DIR (the shards to copy from)")


def _report_path(args: argparse.Namespace) -> Path | None:
    if args.report is not None:
        return output_file(args.report, "--report")
    if args.keys_out is not None and args.out is None:
        return output_file(args.keys_out.with_name(f"{args.keys_out.stem}.report.json"))
    return None


def _sweep(args: argparse.Namespace, table: Any) -> int:
    from curatorch.curation import DEFAULT_SWEEP_FRACTIONS, clean_fraction_sweep, sweep_markdown
    from curatorch.fileio import atomic_write_text

    report = _report_path(args)
    result = clean_fraction_sweep(
        table,
        scores=[args.by] if args.by else None,
        fractions=args.sweep or DEFAULT_SWEEP_FRACTIONS,
    )
    print(sweep_markdown(result))
    if report is not None:
        atomic_write_text(report, json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def _filter(args: argparse.Namespace) -> int:
    from curatorch.curation import filter_report, kept_keys, load_score_table, select
    from curatorch.data import expand_shards
    from curatorch.fileio import atomic_write_text

    _check_filter_args(args)
    table = load_score_table(args.scores)
    if args.sweep is not None:
        return _sweep(args, table)
    selection = select(table, by=args.by, top_fraction=args.top_fraction, threshold=args.threshold)
    urls = expand_shards(args.shards, what="--shards") if args.shards else None
    keys = kept_keys(table, selection) if args.keys_out is not None else None
    if args.keys_out is not None:
        output_file(args.keys_out, "--keys-out")
    if args.out is not None:
        output_dir(args.out, create=False)
    report_file = _report_path(args)
    if args.out is not None:
        from curatorch.curation import write_kept_shards

        report = write_kept_shards(
            table,
            selection,
            out=args.out,
            urls=urls,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    else:
        report = filter_report(table, selection)
    if keys is not None:
        atomic_write_text(args.keys_out, "".join(f"{k}\n" for k in keys))
        report["keys_out"] = str(args.keys_out)
    if report_file is not None:
        atomic_write_text(report_file, json.dumps(report, indent=1))
    _print_report(report)
    return 0


def _print_report(report: dict[str, Any]) -> None:
    """One line per shard (kept / total), the clean fractions, then the JSON summary."""
    for shard in report["shards"]:
        skipped = f" ({shard['skipped']} skipped when scored)" if shard["skipped"] else ""
        print(f"{shard['shard']}: kept {shard['kept']} / {shard['total']}{skipped}")
    clean = report.get("clean_fraction")
    if clean is not None and clean["kept"] is not None:
        print(f"clean fraction: kept {clean['kept']:.3f}, pool {clean['pool']:.3f}")
    print(json.dumps({k: v for k, v in report.items() if k != "shards"}))
