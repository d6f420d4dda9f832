"""Filtering by a score: keep a top fraction or a threshold, write what is kept.

The rule ranks the table's rows by one score, best first (:data:`HIGHER_IS_BETTER`: high
cosine, low ``ref_loss``, high ``learner_loss``, high ``learnability``); rows with equal
scores are ranked by ``__key__`` and then by shard name, so the kept set depends on the
table alone. ``top_fraction=f`` keeps the first ``round(f * N)`` rows (at least one);
``threshold=x`` keeps every row at least as good as ``x`` (``score >= x``, or
``score <= x`` for ``ref_loss``).

What is kept is written either as new shards in the layout they were read from (each
kept sample's tar members copied byte for byte, in the order of the input shard; one
output shard per input shard, of the same name, possibly empty; an img2dataset
``{shard}.parquet`` beside an input shard is filtered to the kept rows too) or as a list
of keys. :func:`clean_fraction_sweep` measures on a built-in pool how much cleaner the
kept set is than the pool.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curatorch.curation.table import HIGHER_IS_BETTER, ScoreTable
from curatorch.data import iter_shard_members, shard_name
from curatorch.fileio import atomic_write_dir, atomic_write_text

__all__ = [
    "DEFAULT_SWEEP_FRACTIONS",
    "REPORT_FILE",
    "Selection",
    "clean_fraction_sweep",
    "filter_report",
    "keep_mask",
    "kept_keys",
    "rank_order",
    "select",
    "sweep_markdown",
    "write_kept_shards",
    "write_key_list",
]

DEFAULT_SWEEP_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)
REPORT_FILE = "filter_report.json"  # in an output folder of kept shards


def _check_rule(top_fraction: float | None, threshold: float | None) -> None:
    if (top_fraction is None) == (threshold is None):
        raise ValueError("give exactly one of top_fraction and threshold")
    if top_fraction is not None and not (
        isinstance(top_fraction, (int, float)) and 0 < top_fraction <= 1
    ):
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    if threshold is not None and not (
        isinstance(threshold, (int, float)) and math.isfinite(threshold)
    ):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")


def keep_mask(
    scores: np.ndarray,
    keys: np.ndarray,
    *,
    higher_is_better: bool,
    top_fraction: float | None = None,
    threshold: float | None = None,
    shards: np.ndarray | None = None,
) -> np.ndarray:
    """Which rows a rule keeps: bool ``[N]`` in row order (module docstring).

    Args:
        scores: ``[N]`` finite scores. keys: ``[N]`` the rows' ``__key__`` (ties).
        higher_is_better: the score's direction.
        top_fraction, threshold: the rule (exactly one).
        shards: ``[N]`` shard names, the second tie-break (default none).
    """
    _check_rule(top_fraction, threshold)
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if scores.ndim != 1 or len(keys) != n or (shards is not None and len(shards) != n):
        raise ValueError(f"scores, keys and shards must be [N], got {scores.shape}, {len(keys)}")
    if not np.isfinite(scores).all():
        raise ValueError(f"scores must be finite, got {int((~np.isfinite(scores)).sum())} not")
    if threshold is not None:
        return scores >= threshold if higher_is_better else scores <= threshold
    keep = np.zeros(n, dtype=bool)
    if n == 0:
        return keep
    count = min(n, max(1, math.floor(top_fraction * n + 0.5)))  # type: ignore[operator]
    order = rank_order(scores, keys, higher_is_better=higher_is_better, shards=shards)
    keep[order[:count]] = True
    return keep


def rank_order(
    scores: np.ndarray,
    keys: np.ndarray,
    *,
    higher_is_better: bool,
    shards: np.ndarray | None = None,
) -> np.ndarray:
    """Row positions best first: ``[N]`` int64, by score in its direction, equal scores
    by ``__key__`` and then by shard name (when given): the order every rule ranks by."""
    scores = np.asarray(scores, dtype=np.float64)
    rank = -scores if higher_is_better else scores
    ties = [np.asarray(keys, dtype=str)]
    if shards is not None:
        ties.insert(0, np.asarray(shards, dtype=str))
    return np.lexsort((*ties, rank)).astype(np.int64)  # the last key is the primary one


@dataclass(frozen=True)
class Selection:
    """The rows of a score table a rule keeps.

    Attributes:
        keep: bool ``[N]`` in table order. by: the score. rule: ``{"top_fraction": f}``
            or ``{"threshold": x}``. cut: the score of the worst kept row (``None``
            when none is kept).
    """

    keep: np.ndarray
    by: str
    rule: dict[str, float]
    cut: float | None

    @property
    def kept(self) -> int:
        """How many rows are kept."""
        return int(self.keep.sum())


def select(
    table: ScoreTable,
    *,
    by: str,
    top_fraction: float | None = None,
    threshold: float | None = None,
) -> Selection:
    """The rows of ``table`` kept by the rule on the score ``by`` (a column of it)."""
    if by not in table.scores:
        raise ValueError(f"by must be a score of {table.path}: one of {table.scores}, got {by!r}")
    scores = table.column(by)
    keep = keep_mask(
        scores,
        table.column("__key__"),
        higher_is_better=HIGHER_IS_BETTER[by],
        top_fraction=top_fraction,
        threshold=threshold,
        shards=table.column("shard"),
    )
    rule = {"top_fraction": top_fraction} if top_fraction is not None else {"threshold": threshold}
    kept = scores[keep]
    cut = None if kept.size == 0 else float(kept.min() if HIGHER_IS_BETTER[by] else kept.max())
    return Selection(keep, by, rule, cut)  # type: ignore[arg-type]


def filter_report(table: ScoreTable, selection: Selection) -> dict[str, Any]:
    """What a filter kept: the rule, the totals, per shard ``kept`` / ``total`` (scored
    rows) / ``skipped`` (faults when scoring), and on a built-in pool the kept set's clean
    fraction next to the pool's."""
    records = table.shards
    slot = {r["shard"]: i for i, r in enumerate(records)}
    rows = np.array([slot[s] for s in table.column("shard").tolist()], dtype=np.int64)
    total = np.bincount(rows, minlength=len(records))
    kept = np.bincount(rows[selection.keep], minlength=len(records))
    per_shard = [
        {
            "shard": r["shard"],
            "kept": int(kept[i]),
            "total": int(total[i]),
            "skipped": int(r.get("samples_skipped", 0)),
        }
        for i, r in enumerate(records)
    ]
    n = len(table)
    report: dict[str, Any] = {
        "scores": str(table.path),
        "by": selection.by,
        "higher_is_better": HIGHER_IS_BETTER[selection.by],
        **selection.rule,
        "cut": selection.cut,
        "kept": selection.kept,
        "total": n,
        "kept_fraction": selection.kept / n if n else 0.0,
        "shards": per_shard,
    }
    if table.is_pool:
        clean = table.column("clean").astype(bool)
        kept_clean = float(clean[selection.keep].mean()) if selection.kept else None
        report["clean_fraction"] = {"kept": kept_clean, "pool": float(clean.mean())}
    return report


# ------------------------------------------------------------------ writing


def kept_keys(table: ScoreTable, selection: Selection) -> list[str]:
    """The kept rows' ``__key__``, in table order. A key kept in two shards is a
    ``ValueError`` (a key list could not tell them apart): write shards instead."""
    keys, shards = table.column("__key__").astype(str), table.column("shard")
    kept = keys[selection.keep]
    unique, counts = np.unique(kept, return_counts=True)
    if (counts > 1).any():
        key = unique[counts > 1][0]
        where = sorted(set(shards[selection.keep][kept == key].tolist()))
        raise ValueError(
            f"the key {key!r} is kept in shards {where}: a key list cannot tell them apart; "
            f"write the kept samples as shards (--out DIR) instead"
        )
    return kept.tolist()


def write_key_list(table: ScoreTable, selection: Selection, path: str | os.PathLike[str]) -> Path:
    """Write :func:`kept_keys`, one a line, to the text file ``path`` atomically."""
    out = Path(path)
    atomic_write_text(out, "".join(f"{k}\n" for k in kept_keys(table, selection)), parents=True)
    return out


def _shard_urls(table: ScoreTable, urls: Sequence[str] | None) -> dict[str, str]:
    """Shard name -> file of every shard of ``table``: ``urls`` if given (the same
    shards by name, no more), else the files the table was scored from."""
    if table.is_pool or table.meta.get("source", {}).get("kind") != "shards":
        raise ValueError(
            f"score table {table.path} scores a built-in pool, not shards: write a key list "
            f"(--keys-out), or export the pool (`curatorch data export-shards`) and score "
            f"the shards"
        )
    names = [r["shard"] for r in table.shards]
    given = [os.fspath(u) for u in urls] if urls is not None else [r["url"] for r in table.shards]
    by_name = {shard_name(u): u for u in given}
    missing = [n for n in names if n not in by_name]
    extra = [n for n in by_name if n not in names]
    if missing or extra:
        what = f"lacks {missing[:3]}" if missing else f"has {extra[:3]}, which the table lacks"
        raise ValueError(f"--shards: the shards given do not match {table.path}: it {what}")
    absent = [by_name[n] for n in names if not os.path.isfile(by_name[n])]
    if absent:
        raise ValueError(f"--shards: shard file {absent[0]} does not exist; pass --shards")
    return {n: by_name[n] for n in names}


def _copy_kept(url: str, keys: set[str], dest: Path) -> int:
    """Write the samples of the shard ``url`` whose key is in ``keys`` to the tar
    ``dest``, in file order, members copied as read; returns how many."""
    from webdataset import TarWriter

    written = 0
    with open(dest, "wb") as fh, TarWriter(fh, encoder=False, mtime=0.0) as writer:
        for key, members in iter_shard_members(url):
            if key in keys:
                writer.write({"__key__": key, **members})
                written += 1
    if written != len(keys):
        raise ValueError(
            f"shard {url} changed since it was scored: {len(keys) - written} of its "
            f"{len(keys)} kept samples are not in it; score it again"
        )
    return written


def _copy_sidecar(url: str, keys: set[str], dest: Path) -> bool:
    """Filter an img2dataset ``{shard}.parquet`` beside ``url`` to the rows of ``keys``
    (by its ``key`` column) into ``dest``; returns whether there was one."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    base = Path(url)
    side = base.with_name(f"{shard_name(url)}.parquet")
    if not side.is_file() or side == base:
        return False
    table = pq.read_table(side)
    if "key" not in table.column_names:
        return False
    kept = table.filter(pc.is_in(table.column("key").cast(pa.string()), pa.array(sorted(keys))))
    pq.write_table(kept, dest)
    return True


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """``out`` must be new, empty, or (``overwrite``) an earlier filter output."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    earlier = (out / REPORT_FILE).is_file()
    if out.is_dir() and any(out.iterdir()) and not (overwrite and earlier):
        why = "pass --overwrite to replace it" if earlier else "choose a new or empty folder"
        raise ValueError(f"--out {out} is not empty; {why}")


def write_kept_shards(
    table: ScoreTable,
    selection: Selection,
    *,
    out: str | os.PathLike[str],
    urls: Sequence[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the kept samples of every shard of ``table`` as new shards in ``out``.

    Args:
        urls: the input shards (default: the files the table was scored from); must be
            the table's shards by name.
        out: a new or empty folder (``overwrite``: or an earlier output of this
            function). It gets ``{shard}.tar`` for every input shard (and the filtered
            ``{shard}.parquet`` of img2dataset shards) and :data:`REPORT_FILE`; the whole
            folder is written atomically (a failure leaves nothing).

    Returns the :func:`filter_report`, with ``out`` and the output ``pattern``.
    """
    from tqdm.auto import tqdm

    files = _shard_urls(table, urls)
    target = Path(out)
    _check_out_dir(target, overwrite)
    report = {**filter_report(table, selection), "out": str(target)}
    names = list(files)
    report["pattern"] = str(target / f"{{{names[0]}..{names[-1]}}}.tar")
    by_shard: dict[str, set[str]] = {name: set() for name in names}
    for shard, key in zip(
        table.column("shard")[selection.keep].tolist(),
        table.column("__key__")[selection.keep].tolist(),
        strict=True,
    ):
        by_shard[shard].add(key)

    def write(tmp: Path) -> None:
        for name in tqdm(names, desc="filter", unit="shard", disable=not progress):
            kept = by_shard[name]
            _copy_kept(files[name], kept, tmp / f"{name}.tar")
            _copy_sidecar(files[name], kept, tmp / f"{name}.parquet")
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")

    atomic_write_dir(target, write, existing=lambda p: _check_out_dir(p, overwrite), parents=True)
    return report


# ------------------------------------------------------------------ the clean-fraction study


def clean_fraction_sweep(
    table: ScoreTable,
    *,
    scores: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_SWEEP_FRACTIONS,
) -> dict[str, Any]:
    """On a built-in pool's table: the clean fraction of the top ``fractions`` by each
    score, against the pool's (what a random subset of any size has on average).

    Returns ``{"rows", "pool_clean_fraction", "fractions", "kept": [n per fraction],
    "clean_fraction": {score: [fraction clean per fraction]}}``.
    """
    if not table.is_pool:
        raise ValueError(
            f"score table {table.path} has no clean column: the clean-fraction sweep needs "
            f"the scores of a built-in pool (`curatorch score MODEL --config CONFIG`)"
        )
    chosen = list(scores) if scores else table.scores
    clean = table.column("clean").astype(bool)
    out: dict[str, Any] = {
        "scores": str(table.path),
        "rows": len(table),
        "pool_clean_fraction": float(clean.mean()),
        "fractions": [float(f) for f in fractions],
        "kept": [],
        "clean_fraction": {},
    }
    for by in chosen:
        values = []
        for f in fractions:
            sel = select(table, by=by, top_fraction=f)
            values.append(float(clean[sel.keep].mean()))
            if len(out["kept"]) < len(fractions):
                out["kept"].append(sel.kept)
        out["clean_fraction"][by] = values
    return out


def sweep_markdown(sweep: dict[str, Any]) -> str:
    """:func:`clean_fraction_sweep`'s result as a Markdown table (one row per fraction)."""
    scores = list(sweep["clean_fraction"])
    head = "| kept fraction | kept | " + " | ".join(f"clean ({s})" for s in scores) + " |"
    lines = [head, "|" + " --- |" * (2 + len(scores))]
    for i, f in enumerate(sweep["fractions"]):
        cells = " | ".join(f"{sweep['clean_fraction'][s][i]:.3f}" for s in scores)
        lines.append(f"| {f:.2f} | {sweep['kept'][i]} | {cells} |")
    pool = f"{sweep['pool_clean_fraction']:.3f}"
    lines.append(f"| 1.00 (pool) | {sweep['rows']} | " + " | ".join([pool] * len(scores)) + " |")
    return "\n".join(lines)
