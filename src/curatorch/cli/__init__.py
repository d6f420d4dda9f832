"""The ``curatorch`` command line: the only place that parses arguments and builds objects.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its parsers and sets ``handler`` on them. Every command returns an exit code: 0 on
success, 2 for bad input (an invalid config, an unreadable checkpoint, an output folder
that holds another run), 1 when training fails (a non-finite loss, or an ``OSError`` such
as a full disk while writing a checkpoint or metrics: one line naming the file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from curatorch import __version__
from curatorch.cli import compare, data, jest, pareto, scaling, train

__all__ = ["build_parser", "main"]

_GROUPS = (train, data, jest, scaling, pareto, compare)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curatorch`` command."""
    parser = argparse.ArgumentParser(
        prog="curatorch",
        description="Train multimodal models with less compute (JEST, scaling laws, MMPareto).",
    )
    parser.add_argument("--version", action="version", version=f"curatorch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from curatorch.train import CheckpointError, ConfigError, OutputDirError, TrainingError

    try:
        return int(args.handler(args))
    except (ConfigError, CheckpointError, OutputDirError, ValueError) as exc:
        print(f"curatorch: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"curatorch: training failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine failed the run: a full disk, a lost mount ...
        print(f"curatorch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("curatorch: interrupted", file=sys.stderr)
        return 130
