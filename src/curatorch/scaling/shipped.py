"""Scaling-law inputs shipped with curatorch (package data), and how a file argument is
resolved to one of them by name.

Two kinds of file ship in ``curatorch/scaling/data/`` (its ``README.md`` says where each
came from):

- ``params``: parameter files (``NAME.jsonl``, the published JSON-lines schema), each
  record naming its origin in a ``source`` field. ``published`` holds the authors' fits.
- ``runs``: run tables for ``scaling fit`` (``NAME.csv``), opened by ``#`` comment lines
  that give the command that produced them. ``sample`` is curatorch's own measurement.

``resolve_scaling_file("published", kind="params")`` is the shipped ``published.jsonl``
from any working folder, the same rule as :func:`curatorch.configs.resolve_config`: an
existing file wins, a bare name (with or without its suffix) is the shipped file, a bare
name while ``./NAME.jsonl`` exists is ambiguous and refused, and anything else is a
``ValueError`` listing the shipped names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KINDS",
    "SHIPPED_DIR",
    "ShippedFile",
    "describe_shipped",
    "resolve_scaling_file",
    "shipped_files",
    "shipped_names",
]

SHIPPED_DIR = Path(__file__).resolve().parent / "data"
"""The folder holding the shipped parameter files and run tables."""

KINDS: dict[str, str] = {"params": ".jsonl", "runs": ".csv"}
"""File suffix of each kind of shipped file."""

_WHAT = {"params": "parameter file (JSONL)", "runs": "runs table (CSV)"}


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    return KINDS[kind]


def shipped_names(kind: str) -> list[str]:
    """Names of the shipped files of ``kind`` (``"params"`` or ``"runs"``), sorted."""
    suffix = _check_kind(kind)
    return sorted(p.stem for p in SHIPPED_DIR.glob(f"*{suffix}") if p.is_file())


def _shipped_name(text: str, suffix: str) -> str | None:
    """``text`` as the name of a shipped file (``NAME`` or ``NAME<suffix>``), else None."""
    if not text or os.sep in text or (os.altsep and os.altsep in text):
        return None
    stem = text[: -len(suffix)] if text.endswith(suffix) else text
    return stem if stem and (SHIPPED_DIR / f"{stem}{suffix}").is_file() else None


def resolve_scaling_file(
    name_or_path: str | os.PathLike[str], *, kind: str, option: str | None = None
) -> Path:
    """The file that ``name_or_path`` names, as a path or as a shipped ``kind`` file.

    Args:
        name_or_path: a path, or the name of a shipped file (``published``,
            ``published.jsonl``).
        kind: ``"params"`` or ``"runs"``.
        option: how the argument is called in messages (default ``PARAMS`` / ``RUNS``).

    Raises:
        ValueError: naming the argument and listing the shipped names, when the text is
            neither an existing file nor a shipped name, or when a bare name is ambiguous.
    """
    suffix = _check_kind(kind)
    option = option or kind.upper()
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_file():
        return path
    name = _shipped_name(text, suffix)
    shipped = SHIPPED_DIR / f"{name}{suffix}"
    if name is not None:
        local = Path(f"{text}{suffix}")
        if not text.endswith(suffix) and local.is_file():
            raise ValueError(
                f"{option} {text!r} is ambiguous: {local} exists here and {name!r} is also a "
                f"shipped {_WHAT[kind]}; pass ./{local} or {shipped}"
            )
        return shipped
    names = ", ".join(shipped_names(kind)) or "none"
    what = "is a folder, not a file" if path.is_dir() else "not found"
    raise ValueError(
        f"{option} {text} {what}; pass a {_WHAT[kind]} or the name of a shipped one "
        f"({names}; `curatorch scaling data` lists them)"
    )


@dataclass(frozen=True)
class ShippedFile:
    """One shipped file, described from its own contents.

    Attributes:
        name: the name that resolves to it (``published``).
        kind: ``"params"`` or ``"runs"``.
        path: where it lies.
        source: where its contents came from: the records' ``source`` fields (params) or
            the table's opening comment lines (runs).
        contents: the record ids (params) or the pool names (runs).
        rows: number of records (params) or measured points (runs).
    """

    name: str
    kind: str
    path: Path
    source: tuple[str, ...]
    contents: tuple[str, ...]
    rows: int


def describe_shipped(kind: str, name: str) -> ShippedFile:
    """Read the shipped ``kind`` file ``name`` and describe it (a malformed file is the
    reader's ``ValueError`` naming file and line)."""
    from curatorch.scaling.io import read_params, read_runs, runs_comment

    if name not in shipped_names(kind):
        names = ", ".join(shipped_names(kind)) or "none"
        raise ValueError(f"no shipped {_WHAT[kind]} named {name!r} (shipped: {names})")
    path = SHIPPED_DIR / f"{name}{KINDS[kind]}"
    if kind == "params":
        records = read_params(path)
        sources = []
        for p in records:
            src = p.extra.get("source")
            if isinstance(src, str) and src not in sources:
                sources.append(src)
        return ShippedFile(
            name, kind, path, tuple(sources), tuple(p.id for p in records), len(records)
        )
    runs = read_runs(path)
    return ShippedFile(name, kind, path, tuple(runs_comment(path)), runs.names, len(runs))


def shipped_files() -> list[ShippedFile]:
    """Every shipped file, parameter files first, each kind sorted by name."""
    return [describe_shipped(kind, n) for kind in KINDS for n in shipped_names(kind)]
