"""The score table: per-sample scores of a pool or of shards, as one Parquet file.

One row per scored sample, in the order the samples were read (shard after shard, file
order; a built-in pool in pool order):

```
__key__        string    the sample's key (a built-in example: its id, f"{id:012d}",
                         the key `curatorch data export-shards` gives it)
shard          string    the shard's name (a built-in pool: the pool's name, "raw")
id, clean      int64, bool    built-in pools only: the example id and whether the world
noise          string         made the pair clean (its noise kind, "clean", "misaligned"...)
cosine         float32   image-text cosine of the pair by the reference (the "CLIP score")
ref_loss       float32   the reference's own-pair sigmoid loss, nats (easy-reference)
learner_loss   float32   with a learner: the learner's own-pair sigmoid loss, nats
learnability   float32   with a learner: learner_loss - ref_loss, nats (JEST's score)
```

The file's schema metadata holds ``curatorch`` (JSON: the format, the scores, both
models' kind, fingerprint, temperature and bias, the source of the samples, each shard's
row and fault counts) and, for other tools, ``reference_fingerprint`` and
``learner_fingerprint`` as plain strings. :data:`HIGHER_IS_BETTER` says which way each
score ranks samples for filtering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curatorch.fileio import atomic_write

__all__ = [
    "HIGHER_IS_BETTER",
    "LEARNER_SCORES",
    "REFERENCE_SCORES",
    "SCORE_NAMES",
    "SCORE_TABLE_FORMAT",
    "ScoreTable",
    "load_score_table",
    "make_score_table",
    "read_table_meta",
    "write_parquet",
]

SCORE_TABLE_FORMAT = "curatorch-scores"
REFERENCE_SCORES = ("cosine", "ref_loss")
LEARNER_SCORES = ("learner_loss", "learnability")
SCORE_NAMES = REFERENCE_SCORES + LEARNER_SCORES
# the better samples for filtering: high cosine, low reference loss (easy-reference),
# high learner loss (hard-learner), high learnability
HIGHER_IS_BETTER = {"cosine": True, "ref_loss": False, "learner_loss": True, "learnability": True}
_META_KEY = b"curatorch"
_POOL_COLUMNS = ("id", "clean", "noise")


def _schema(scores: Sequence[str], *, pool: bool) -> Any:
    import pyarrow as pa

    fields = [("__key__", pa.string()), ("shard", pa.string())]
    if pool:
        fields += [("id", pa.int64()), ("clean", pa.bool_()), ("noise", pa.string())]
    fields += [(name, pa.float32()) for name in scores]
    return pa.schema(fields)


def make_score_table(columns: Mapping[str, Any], *, scores: Sequence[str], meta: Mapping) -> Any:
    """A ``pyarrow.Table`` of the score table's schema from ``columns`` (name -> a list
    or an ``[n]`` array; ``id``/``clean``/``noise`` for a built-in pool), with ``meta``
    (JSON-able) as its ``curatorch`` metadata."""
    import pyarrow as pa

    unknown = [s for s in scores if s not in SCORE_NAMES]
    if unknown:
        raise ValueError(f"scores must be among {list(SCORE_NAMES)}, got {unknown}")
    schema = _schema(scores, pool="id" in columns)
    table = pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema)
    return table.replace_schema_metadata(_metadata(meta))


def _metadata(meta: Mapping) -> dict[bytes, bytes]:
    out = {_META_KEY: json.dumps(dict(meta), sort_keys=True).encode("utf-8")}
    for name in ("reference", "learner"):
        model = meta.get(name) or {}
        if model.get("fingerprint"):
            out[f"{name}_fingerprint".encode()] = str(model["fingerprint"]).encode()
    return out


def write_parquet(path: str | os.PathLike[str], table: Any) -> Path:
    """Write ``table`` (metadata included) to the Parquet file ``path`` atomically."""
    import pyarrow.parquet as pq

    out = Path(path)
    atomic_write(out, lambda tmp: pq.write_table(table, tmp), parents=True)
    return out


def read_table_meta(path: Path) -> dict[str, Any] | None:
    """The ``curatorch`` metadata of the Parquet file ``path`` (the footer only), or
    ``None`` when it is no Parquet file or has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
    except (OSError, pa.ArrowException):
        return None
    try:
        meta = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return meta if isinstance(meta, dict) else None


@dataclass(frozen=True)
class ScoreTable:
    """A score table read back (:func:`load_score_table`).

    Attributes:
        table: the ``pyarrow.Table`` (columns as in the module docstring).
        meta: the ``curatorch`` metadata.
        path: the file it was read from.
    """

    table: Any
    meta: dict[str, Any]
    path: Path

    @property
    def scores(self) -> list[str]:
        """The score columns, in table order."""
        return [s for s in SCORE_NAMES if s in self.table.column_names]

    @property
    def is_pool(self) -> bool:
        """Whether the rows are a built-in pool's (with ``id``, ``clean``, ``noise``)."""
        return all(c in self.table.column_names for c in _POOL_COLUMNS)

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Per shard, in order: ``shard`` (name), ``url`` (shards only), ``rows``, and the
        fault counts of reading it (``samples_ok``, ``samples_skipped``, ``skipped_*``)."""
        return list(self.meta.get("shards", []))

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def column(self, name: str) -> np.ndarray:
        """The column ``name`` as a numpy array (strings as an object array)."""
        if name not in self.table.column_names:
            raise ValueError(
                f"score table {self.path} has no column {name!r} (it has {self.table.column_names})"
            )
        return self.table.column(name).to_numpy(zero_copy_only=False)


def load_score_table(path: str | os.PathLike[str]) -> ScoreTable:
    """Read a score table written by :func:`~curatorch.curation.score_pool` or
    :func:`~curatorch.curation.score_shards`.

    Raises ``ValueError`` naming the file when it does not exist, is not Parquet, or is
    not a curatorch score table (no ``curatorch`` metadata of :data:`SCORE_TABLE_FORMAT`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = Path(path)
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "does not exist"
        raise ValueError(f"score table {file} {what}; write one with `curatorch score`")
    meta = read_table_meta(file)
    if meta is None or meta.get("format") != SCORE_TABLE_FORMAT:
        raise ValueError(
            f"{file} is not a curatorch score table (no {SCORE_TABLE_FORMAT!r} metadata); "
            f"write one with `curatorch score`"
        )
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"score table {file} is unreadable: {exc}") from exc
    missing = [c for c in ("__key__", "shard") if c not in table.column_names]
    if missing:
        raise ValueError(f"score table {file} lacks the column(s) {missing}")
    return ScoreTable(table, meta, file)
