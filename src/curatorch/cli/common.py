"""Argument helpers shared by the command groups."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "COMPARISON_EPILOG",
    "EXIT_CODES",
    "add_set_option",
    "config_path",
    "distributed_context",
    "end_distributed",
    "output_dir",
    "output_file",
    "run_training",
    "shard_tokenizer",
]

COMPARISON_EPILOG = (
    "A comparison is an experiment: exit 0 means every run completed and the report was "
    "written; FAIL checks and other findings in the report are results, not errors. "
    "Exit 2: bad input (config, output path); exit 1: a run failed."
)

EXIT_CODES = """\
exit status:
  0    success; for a comparison (compare, demo, study, pareto compare, scaling experiment):
       every run completed and the report was written, whatever the report finds
  2    bad input: an invalid config, an unreadable checkpoint, a wrong output path
  1    a run failed: a non-finite loss, a disk or file-system error while writing
  130  interrupted

CONFIG arguments take a TOML file, or the name of a shipped config (smoke, demo, ...)."""


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (repeatable), collected into ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value (TOML syntax), e.g. --set train.steps=500",
    )


def config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The config file a command-line argument names: an existing file, else the shipped
    config of that name (``smoke``, ``smoke.toml``): :func:`curatorch.configs.resolve_config`."""
    from curatorch.configs import resolve_config

    return resolve_config(name_or_path)


def _writable_folder(folder: Path, option: str, path: Path) -> None:
    """Create ``folder`` (and its parents) and check that a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ValueError(f"{option} {path}: {exc.filename or folder} is not a folder") from exc
    except OSError as exc:
        raise ValueError(f"{option} {path}: cannot create folder {folder}: {exc.strerror}") from exc
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: {folder} is not a folder")
    try:  # a real write: permission bits say nothing for root or a read-only mount
        with tempfile.NamedTemporaryFile(prefix=".curatorch-probe-", dir=folder):
            pass
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: folder {folder} is not writable: {exc.strerror}"
        ) from exc


def output_file(path: Path, option: str = "--out") -> Path:
    """Check an output file argument before any work: not a folder, its folder created and
    writable. Raises ``ValueError`` (exit 2) naming ``option`` and ``path``."""
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; pass the path of a file to write")
    _writable_folder(path.parent, option, path)
    return path


def output_dir(path: Path, option: str = "--out", *, create: bool = True) -> Path:
    """Check an output folder argument before any work: not a file, and created and
    writable (with ``create=False``: its parent folder is, for writers that put the folder
    in place themselves). Raises ``ValueError`` (exit 2) naming ``option`` and ``path``."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} exists and is not a folder")
    _writable_folder(path if create else path.parent, option, path)
    return path


def shard_tokenizer(cfg: Any) -> tuple[list[str], Any]:
    """The shards of a config's ``data.shards`` and the tokenizer ``data.tokenizer`` names
    (the built-in one from a small build of the world), checked on the shards' first
    captions (:func:`~curatorch.data.check_shard_captions`)."""
    import dataclasses

    from curatorch.data import build_tokenizer, build_world, check_shard_captions, expand_shards
    from curatorch.data.tokenizer import BUILTIN_TOKENIZER

    urls = expand_shards(cfg.data.shards)
    world = None
    if cfg.data.tokenizer == BUILTIN_TOKENIZER:  # the world gives the built-in tokenizer
        world = build_world(dataclasses.replace(cfg.data, raw_size=min(cfg.data.raw_size, 2000)))
    tokenizer = build_tokenizer(cfg.data, world)
    check_shard_captions(cfg.data, tokenizer, urls)
    return urls, tokenizer


def distributed_context(train: Any) -> Any:
    """This process's :class:`~curatorch.train.distributed.DistContext` for a run's
    ``[train]`` config: under ``torchrun --nproc_per_node=W`` data-parallel (gloo on CPU,
    NCCL on CUDA, collectives timing out after ``train.collective_timeout_s``), else one
    process."""
    from curatorch.train.distributed import DistContext, init_from_env, is_distributed_env

    if not is_distributed_env():
        return DistContext()
    return init_from_env(train.device, timeout_s=train.collective_timeout_s)


def run_training(
    train_fn: Callable[..., dict[str, Any]],
    cfg: Any,
    args: Any,
    *,
    on_eval: Callable[[dict[str, Any]], None],
) -> int:
    """``train_fn(cfg, args.out, ...)`` (a task's train function) under this process's
    distributed context, with the command's ``--resume``/``--overwrite``/``--no-progress``;
    the process group is torn down on errors too (left to interpreter exit, a rank can
    abort); rank 0 prints the summary as JSON."""
    dist = distributed_context(cfg.train)
    try:
        summary = train_fn(
            cfg,
            args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            on_eval=on_eval,
            dist=dist,
        )
    finally:
        end_distributed(dist)
    if dist.is_main:
        print(json.dumps(summary))
    return 0


def end_distributed(dist: Any) -> None:
    """Tear the process group down after a run (every rank got here: training ends with a
    barrier); what still refers to the group is freed first, while the interpreter is
    fully alive."""
    if not dist.enabled:
        return
    import gc

    import torch.distributed

    gc.collect()
    torch.distributed.destroy_process_group()
