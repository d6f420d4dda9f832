"""The ``curatorch`` command line: the only place that parses arguments and builds objects.

Each command group lives in its own module with a ``register(subparsers)`` function that
adds its parsers and sets ``handler`` on them. Every command returns an exit code: 0 on
success, 2 for bad input (an invalid config, an unreadable checkpoint, an output folder
that holds another run), 1 when training fails (a non-finite loss, or an ``OSError`` such
as a full disk while writing a checkpoint or metrics: one line naming the file). An output
path of the wrong kind (a folder where a file is expected, a file where a folder is, an
unwritable parent) is bad input, checked before any work: exit 2, one line naming it.

Comparisons (``compare``, ``demo``, ``pareto compare``, ``scaling experiment``, ``study``) are
experiments: exit 0 means every run completed and the report was written. What the report
finds (a FAIL check, a prediction outside tolerance, a strategy that never reaches the
target) is a result, not an error, and does not change the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from curatorch import __version__
from curatorch.cli import (
    compare,
    curation,
    data,
    jest,
    pareto,
    plan,
    scaling,
    study,
    train,
)
from curatorch.cli.common import EXIT_CODES

__all__ = ["build_parser", "main"]

_GROUPS = (train, data, curation, plan, jest, scaling, pareto, compare, study)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``curatorch`` command."""
    parser = argparse.ArgumentParser(
        prog="curatorch",
        description="Train multimodal models with less compute (JEST, scaling laws, MMPareto).",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    from curatorch.train.distributed import GroupFormationError

    try:
        return int(args.handler(args))
    except (ConfigError, CheckpointError, OutputDirError, ValueError) as exc:
        print(f"curatorch: error: {exc}", file=sys.stderr)
        return 2
    except (TrainingError, GroupFormationError) as exc:
        print(f"curatorch: training failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine failed the run: a full disk, a lost mount ...
        print(f"curatorch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:  # TrainingInterrupted names the checkpoint to resume
        print(f"curatorch: {exc or 'interrupted'}", file=sys.stderr)
        return 130
