"""``metrics.jsonl``: one JSON record per line, appended durably, truncated on resume."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curatorch.train.checkpoint import atomic_write_text

__all__ = ["append_jsonl", "read_jsonl", "truncate_jsonl"]


def append_jsonl(path: str | os.PathLike[str], record: Mapping[str, Any]) -> None:
    """Append ``record`` as one line and flush it to disk; an ``OSError`` (a full disk)
    is raised again naming the file."""
    line = json.dumps(record) + "\n"
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise OSError(exc.errno, f"cannot append a record to {path}: {reason}") from exc


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """All records of a file (``[]`` when it does not exist)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def truncate_jsonl(path: str | os.PathLike[str], last_step: int) -> None:
    """Keep only the records whose ``step`` is at most ``last_step`` (a resumed run writes
    the later ones again), dropping a torn last line; rewritten atomically."""
    p = Path(path)
    if not p.exists():
        return
    kept = []
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # a torn last line
        if rec.get("step", math.inf) <= last_step:
            kept.append(line)
    atomic_write_text(p, "".join(k + "\n" for k in kept))
