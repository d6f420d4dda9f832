"""Reading and writing parameter files (JSON lines) and run tables (CSV).

Every reader reports a malformed file with a ``ValueError`` naming the file, the line and
the column (a JSON syntax error's character column, or the field / CSV column name).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curatorch.fileio import atomic_write_bytes
from curatorch.scaling.params import PoolParams

__all__ = [
    "Runs",
    "atomic_write_bytes",
    "find_params",
    "format_count",
    "parse_count",
    "parse_counts",
    "read_params",
    "read_runs",
    "runs_comment",
    "write_params",
    "write_runs",
]

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_COUNT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGT]?)\s*$", re.I)


def parse_count(text: str, *, name: str = "count") -> float:
    """``"12.8M"`` -> ``12_800_000.0``; suffixes K, M, B/G, T (case-insensitive).

    Raises ``ValueError`` naming ``name`` when the text is not a positive count.
    """
    m = _COUNT_RE.match(str(text))
    if not m:
        raise ValueError(f"{name} must be a positive count such as 12.8M, got {text!r}")
    value = float(m.group(1)) * _SUFFIX[m.group(2).upper()]
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be > 0, got {text!r}")
    return value


def parse_counts(text: str, *, name: str = "counts") -> list[tuple[str, float]]:
    """``"32M,64M"`` -> ``[("32M", 32e6), ("64M", 64e6)]`` (labels kept as written)."""
    items = [t.strip() for t in str(text).split(",")]
    if not items or any(not t for t in items):
        raise ValueError(f"{name} must be a comma-separated list of counts, got {text!r}")
    return [(t, parse_count(t, name=name)) for t in items]


def format_count(value: float) -> str:
    """``32e6`` -> ``"32M"``, ``12.8e6`` -> ``"12.8M"``, ``5000`` -> ``"5K"``."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.6g}{suffix}"
    return f"{value:.6g}"


# ---------------------------------------------------------------------------------------------
# parameter files


def _number_list(rec: dict[str, Any], key: str, where: str) -> tuple[float, ...]:
    if key not in rec:
        raise ValueError(f"{where}: missing field {key!r}")
    values = rec[key]
    if not isinstance(values, list):
        raise ValueError(f"{where}, field {key!r}: must be a list, got {values!r}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}, field {key!r}[{i}]: must be a number, got {v!r}")
    return tuple(float(v) for v in values)


def _params_from_record(rec: Any, where: str) -> PoolParams:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}, column 1: a record must be a JSON object, got {rec!r:.60}")
    for key in ("id", "names"):
        if key not in rec:
            raise ValueError(f"{where}: missing field {key!r}")
    names = rec["names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}, field 'names': must be a list of strings, got {names!r}")
    a = _number_list(rec, "a_values", where)
    b = _number_list(rec, "b_values", where)
    tau = _number_list(rec, "c_values", where)
    d = rec.get("d_value")
    if d is not None and (isinstance(d, bool) or not isinstance(d, (int, float))):
        raise ValueError(f"{where}, field 'd_value': must be a number, got {d!r}")
    known = {"id", "names", "a_values", "b_values", "c_values", "d_value", "method"}
    extra = {k: v for k, v in rec.items() if k not in known}
    try:
        return PoolParams(
            id=rec["id"],
            names=tuple(names),
            a=a,
            b=b,
            tau=tau,
            d=None if d is None else float(d),
            method=rec.get("method"),
            extra=extra,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_params(path: str | os.PathLike[str]) -> list[PoolParams]:
    """All records of a parameter file (JSON lines in the published schema).

    Blank lines are skipped. A record may span one line only. Raises ``ValueError`` naming
    the file, line and column (or field) of the first problem, and on duplicate ids.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"parameter file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"parameter file {path} cannot be read: {exc}") from None
    out: list[PoolParams] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}, column {exc.colno}: invalid JSON ({exc.msg})") from None
        except RecursionError:
            raise ValueError(f"{where}: invalid JSON (nested too deeply)") from None
        params = _params_from_record(rec, where)
        if params.id in seen:
            raise ValueError(
                f"{where}, field 'id': duplicate id {params.id!r} (first on line {seen[params.id]})"
            )
        seen[params.id] = lineno
        out.append(params)
    if not out:
        raise ValueError(f"parameter file {path} holds no records")
    return out


def find_params(path: str | os.PathLike[str], key: str) -> PoolParams:
    """The record with id ``key``; ``ValueError`` listing the ids in the file otherwise."""
    records = read_params(path)
    for p in records:
        if p.id == key:
            return p
    raise ValueError(f"key {key!r} not found in {path} (ids: {[p.id for p in records]})")


def write_params(path: str | os.PathLike[str], params: list[PoolParams]) -> None:
    """Write records as JSON lines (atomically)."""
    text = "".join(json.dumps(p.to_record()) + "\n" for p in params)
    atomic_write_bytes(path, text.encode("utf-8"), parents=True)


# ---------------------------------------------------------------------------------------------
# run tables


@dataclass(frozen=True)
class Runs:
    """Measured points of training runs on several pools.

    Attributes:
        names: ``[m]`` pool names, in order of first appearance.
        pool: ``[P]`` int64 index into ``names`` of each point.
        samples_seen: ``[P]`` float64 samples seen (> 0).
        error: ``[P]`` float64 error = 1 - accuracy (in [0, 1]).
        pool_size: ``[P]`` float64 samples in the point's pool, or ``None`` when the table
            has no ``pool_size`` column.
    """

    names: tuple[str, ...]
    pool: NDArray[np.int64]
    samples_seen: NDArray[np.float64]
    error: NDArray[np.float64]
    pool_size: NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.pool.shape[0])


def _cell(row: dict[str, str], key: str, where: str, *, lo: float, hi: float | None) -> float:
    text = row.get(key)
    if text is None or not text.strip():
        raise ValueError(f"{where}, column {key!r}: empty value")
    try:
        value = parse_count(text, name=key) if key != "error" and key != "accuracy" else None
    except ValueError:
        value = None
    if value is None:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{where}, column {key!r}: not a number: {text!r}") from None
    if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f"> {lo}"
        raise ValueError(f"{where}, column {key!r}: must be {bound}, got {text!r}")
    return value


def _csv_rows(reader: Any, path: Path, *, skip: int = 0) -> Iterator[list[str]]:
    """The rows of ``reader``; a CSV syntax error (a field over the size limit, ...) is a
    ``ValueError`` naming the file and line (``skip`` comment lines before the reader's
    first line)."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line = skip + reader.line_num
            raise ValueError(f"{path}: line {line}: malformed CSV ({exc})") from None
        yield row


def _leading_comments(text: str) -> tuple[int, str]:
    """``(k, rest)``: the number of comment lines (first non-space character ``#``) that
    open ``text``, and the text after them."""
    lines = text.splitlines(keepends=True)
    k = 0
    while k < len(lines) and lines[k].lstrip().startswith("#"):
        k += 1
    return k, "".join(lines[k:])


def runs_comment(path: str | os.PathLike[str]) -> list[str]:
    """The comment lines that open a runs CSV, without their ``#`` (and one space after it).

    Raises ``ValueError`` naming the file when it cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"runs file {path} cannot be read: {exc}") from None
    k, _ = _leading_comments(text)
    out = []
    for line in text.splitlines()[:k]:
        body = line.lstrip()[1:]
        out.append(body[1:] if body.startswith(" ") else body)
    return out


def read_runs(path: str | os.PathLike[str]) -> Runs:
    """Read a CSV of measured points: ``pool,samples_seen,accuracy`` or ``...,error``
    (accuracy and error as fractions in [0, 1]), with an optional ``pool_size`` column.

    Counts may use suffixes (``12.8M``). Lines starting with ``#`` before the header are
    comments (:func:`runs_comment` returns them). Raises ``ValueError`` naming the file,
    line and column of the first problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"runs file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"runs file {path} cannot be read: {exc}") from None
    skip, body = _leading_comments(text)
    reader = csv.reader(io.StringIO(body))
    rows = _csv_rows(reader, path, skip=skip)
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        raise ValueError(f"runs file {path} is empty") from None
    where = f"{path}: line {skip + 1}"
    allowed = {"pool", "samples_seen", "accuracy", "error", "pool_size"}
    for i, h in enumerate(header, start=1):
        if h not in allowed:
            raise ValueError(
                f"{where}, column {i}: unknown column {h!r} (known: {sorted(allowed)})"
            )
    if len(set(header)) != len(header):
        raise ValueError(f"{where}: duplicate column names in {header}")
    for need in ("pool", "samples_seen"):
        if need not in header:
            raise ValueError(f"{where}: missing column {need!r} (header {header})")
    if ("accuracy" in header) == ("error" in header):
        raise ValueError(f"{where}: need exactly one of the columns 'accuracy' or 'error'")
    target = "accuracy" if "accuracy" in header else "error"
    names: list[str] = []
    pool, seen, err, size = [], [], [], []
    for row_cells in rows:
        lineno = skip + reader.line_num
        if not any(c.strip() for c in row_cells):
            continue
        where = f"{path}: line {lineno}"
        if len(row_cells) != len(header):
            raise ValueError(
                f"{where}, column {min(len(row_cells), len(header)) + 1}: expected "
                f"{len(header)} values, got {len(row_cells)}"
            )
        row = dict(zip(header, row_cells, strict=False))
        name = row["pool"].strip()
        if not name:
            raise ValueError(f"{where}, column 'pool': empty pool name")
        if name not in names:
            names.append(name)
        pool.append(names.index(name))
        n = _cell(row, "samples_seen", where, lo=0.0, hi=None)
        if n <= 0:
            raise ValueError(
                f"{where}, column 'samples_seen': must be > 0, got {row['samples_seen']!r}"
            )
        seen.append(n)
        v = _cell(row, target, where, lo=0.0, hi=1.0)
        err.append(1.0 - v if target == "accuracy" else v)
        if "pool_size" in header:
            s = _cell(row, "pool_size", where, lo=0.0, hi=None)
            if s <= 0:
                raise ValueError(
                    f"{where}, column 'pool_size': must be > 0, got {row['pool_size']!r}"
                )
            size.append(s)
    if not pool:
        raise ValueError(f"runs file {path} holds no data rows")
    return Runs(
        names=tuple(names),
        pool=np.asarray(pool, dtype=np.int64),
        samples_seen=np.asarray(seen, dtype=np.float64),
        error=np.asarray(err, dtype=np.float64),
        pool_size=np.asarray(size, dtype=np.float64) if size else None,
    )


def write_runs(path: str | os.PathLike[str], runs: Runs, *, comment: Sequence[str] = ()) -> None:
    """Write ``runs`` as CSV (``pool,samples_seen,error[,pool_size]``), atomically, opened
    by ``comment`` lines (each written as ``# line``; none may hold a line break)."""
    buf = io.StringIO()
    for i, line in enumerate(comment):
        if not isinstance(line, str) or "\n" in line or "\r" in line:
            raise ValueError(f"comment[{i}] must be one line of text, got {line!r:.60}")
        buf.write(f"# {line}\n" if line else "#\n")
    w = csv.writer(buf, lineterminator="\n")
    cols = ["pool", "samples_seen", "error"] + (["pool_size"] if runs.pool_size is not None else [])
    w.writerow(cols)
    for i in range(len(runs)):
        row = [
            runs.names[int(runs.pool[i])],
            f"{runs.samples_seen[i]:.10g}",
            repr(float(runs.error[i])),
        ]
        if runs.pool_size is not None:
            row.append(f"{runs.pool_size[i]:.10g}")
        w.writerow(row)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"), parents=True)
