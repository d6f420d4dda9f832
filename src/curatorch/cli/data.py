"""``curatorch data ...``: look at the built-in data, export it as WebDataset shards, make
web-like img2dataset shards, train a caption tokenizer on shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from curatorch.cli.common import add_set_option, config_path, output_dir, output_file

__all__ = ["register"]


def register(sub: Any) -> None:
    """Add the ``data`` command group to ``sub`` (argparse subparsers)."""
    p_data = sub.add_parser("data", help="inspect and export data, make shards, train tokenizers")
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
    _register_web_shards(data_sub)
    _register_tokenizer(data_sub)


# the noisy kinds' shares of the non-clean pairs under --clean-fraction (the defaults' mix)
_NOISE_MIX = {"misaligned": 0.5, "boilerplate": 0.25, "degraded": 0.25}
_NOISE_DEFAULTS = {"misaligned": 0.2, "boilerplate": 0.1, "degraded": 0.1}


def _register_web_shards(data_sub: Any) -> None:
    p = data_sub.add_parser(
        "make-web-shards",
        help="generate web-like image-text shards in the img2dataset layout (free-form "
        "captions, misaligned/boilerplate captions, degraded images, failed downloads)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for 00000.tar, ...")
    p.add_argument("--pairs", type=int, required=True, help="number of samples")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64, help="stored JPEG side (64)")
    for kind, default in _NOISE_DEFAULTS.items():
        p.add_argument(
            f"--{kind}", type=float, default=None, help=f"fraction of {kind} pairs ({default})"
        )
    p.add_argument(
        "--clean-fraction",
        type=float,
        default=None,
        help="fraction of clean pairs; the rest is misaligned, boilerplate and degraded "
        "2:1:1 (1 = a clean curated set, for a reference); not with --misaligned ...",
    )
    p.add_argument("--failed-fraction", type=float, default=0.0, help="failed downloads (0)")
    p.add_argument(
        "--failed-in-tar",
        action="store_true",
        help="also write failed downloads into the tars (.txt and a .json with status "
        "failed_to_download, no image); readers count them as failed_download",
    )
    p.add_argument(
        "--labelled", action="store_true", help="label field and classes.txt (eval shards)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_make_web_shards)


def _register_tokenizer(data_sub: Any) -> None:
    p = data_sub.add_parser(
        "tokenizer",
        help="train a Hugging Face tokenizer (BPE or WordPiece) on the captions of shards",
    )
    p.add_argument("shards", help="a brace pattern of tar files, or a folder of .tar shards")
    p.add_argument("--out", type=Path, required=True, help="tokenizer.json file to write")
    p.add_argument("--vocab-size", type=int, default=4096, help="vocabulary size (4096)")
    p.add_argument("--kind", choices=("bpe", "wordpiece"), default="bpe")
    p.add_argument("--min-frequency", type=int, default=2, help="default 2")
    p.add_argument(
        "--max-captions", type=int, default=0, help="train on a seeded sample of N (0 = all)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --max-captions' sample")
    p.set_defaults(handler=_train_tokenizer)


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


def _at_least(*checks: tuple[str, int, int]) -> None:
    for flag, value, lo in checks:
        if value < lo:
            raise ValueError(f"{flag} must be >= {lo}, got {value}")


def _noise_fractions(args: argparse.Namespace) -> dict[str, float]:
    explicit = {k: getattr(args, k) for k in _NOISE_DEFAULTS if getattr(args, k) is not None}
    if args.clean_fraction is None:
        return {**_NOISE_DEFAULTS, **explicit}
    if explicit:
        flags = ", ".join(f"--{k}" for k in explicit)
        raise ValueError(f"--clean-fraction cannot be combined with {flags}")
    f = args.clean_fraction
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"--clean-fraction must be in [0, 1], got {f}")
    return {k: (1.0 - f) * share for k, share in _NOISE_MIX.items()}


def _make_web_shards(args: argparse.Namespace) -> int:
    from curatorch.data import write_web_shards

    _at_least(("--pairs", args.pairs, 1), ("--shard-size", args.shard_size, 1))
    _at_least(("--seed", args.seed, 0), ("--image-size", args.image_size, 8))
    fractions = _noise_fractions(args)
    for flag, v in [(f"--{k}", v) for k, v in fractions.items()] + [
        ("--failed-fraction", args.failed_fraction)
    ]:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"{flag} must be in [0, 1], got {v}")
    if sum(fractions.values()) + args.failed_fraction > 1 + 1e-9:
        raise ValueError(
            f"the noise fractions and --failed-fraction must sum to <= 1, got "
            f"{sum(fractions.values()) + args.failed_fraction:.6g}"
        )
    output_dir(args.out, create=False)
    meta = write_web_shards(
        args.out,
        pairs=args.pairs,
        shard_size=args.shard_size,
        seed=args.seed,
        image_size=args.image_size,
        failed=args.failed_fraction,
        labelled=args.labelled,
        failed_in_tar=args.failed_in_tar,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **fractions,
    )
    keys = ("pairs", "seed", "noise_counts", "classes_file", "pattern")
    print(
        json.dumps(
            {"out": str(args.out), "shards": len(meta["shards"]), **{k: meta[k] for k in keys}}
        )
    )
    return 0


def _shard_files(spec: str) -> list[str]:
    """The shards a SHARDS argument names: a folder's ``*.tar`` (sorted), or a pattern."""
    from curatorch.data import expand_shards

    if Path(spec).is_dir():
        files = sorted(str(f) for f in Path(spec).glob("*.tar"))
        if not files:
            raise ValueError(f"SHARDS folder {spec} holds no .tar file")
        return files
    try:
        return expand_shards(spec)
    except ValueError as exc:
        raise ValueError(str(exc).replace("data.shards", "SHARDS")) from exc


def _train_tokenizer(args: argparse.Namespace) -> int:
    from curatorch.data import iter_captions, load_tokenizer, train_tokenizer, unknown_token_rate

    _at_least(("--vocab-size", args.vocab_size, 32), ("--min-frequency", args.min_frequency, 1))
    _at_least(("--max-captions", args.max_captions, 0), ("--seed", args.seed, 0))
    urls = _shard_files(args.shards)
    output_file(args.out)
    result = train_tokenizer(
        iter_captions(urls),
        args.out,
        vocab_size=args.vocab_size,
        kind=args.kind,
        min_frequency=args.min_frequency,
        max_captions=args.max_captions,
        seed=args.seed,
    )
    rate = unknown_token_rate(load_tokenizer(args.out), iter_captions(urls, limit=1024))
    print(json.dumps({**result, "shards": len(urls), "unk_rate_first_1024": round(rate, 6)}))
    return 0
