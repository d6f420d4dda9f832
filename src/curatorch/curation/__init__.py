"""Offline curation: score a pool or shards with a reference (and a learner), filter them.

``score_pool`` / ``score_shards`` write a score table (Parquet, keyed by ``__key__``:
cosine, reference loss, learner loss, learnability); ``select`` keeps a top fraction or a
threshold of one score; ``write_kept_shards`` / ``write_key_list`` write what is kept;
``clean_fraction_sweep`` measures, on a built-in pool, how clean the kept set is.

This package composes ``data``, ``models``, ``selection`` and the model loading of
``train`` (like ``experiments``); the method packages never import it.
"""

from curatorch.curation.filter import (
    DEFAULT_SWEEP_FRACTIONS,
    REPORT_FILE,
    Selection,
    clean_fraction_sweep,
    filter_report,
    keep_mask,
    kept_keys,
    select,
    sweep_markdown,
    write_kept_shards,
    write_key_list,
)
from curatorch.curation.score import (
    fault_summary,
    pair_scores,
    parts_folder,
    score_pool,
    score_shards,
)
from curatorch.curation.table import (
    HIGHER_IS_BETTER,
    LEARNER_SCORES,
    REFERENCE_SCORES,
    SCORE_NAMES,
    SCORE_TABLE_FORMAT,
    ScoreTable,
    load_score_table,
)

__all__ = [
    "DEFAULT_SWEEP_FRACTIONS",
    "HIGHER_IS_BETTER",
    "LEARNER_SCORES",
    "REFERENCE_SCORES",
    "REPORT_FILE",
    "SCORE_NAMES",
    "SCORE_TABLE_FORMAT",
    "ScoreTable",
    "Selection",
    "clean_fraction_sweep",
    "fault_summary",
    "filter_report",
    "keep_mask",
    "kept_keys",
    "load_score_table",
    "pair_scores",
    "parts_folder",
    "score_pool",
    "score_shards",
    "select",
    "sweep_markdown",
    "write_kept_shards",
    "write_key_list",
]
