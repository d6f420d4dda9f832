"""Data-filtering scaling laws (Goyal et al., CVPR 2024): the law, fitting, combining pools
and choosing the filter for a compute budget.

Pure functions on NumPy arrays; this package imports only NumPy/SciPy (and matplotlib,
lazily, in :mod:`curatorch.scaling.plot`).
"""

from curatorch.scaling.fit import (
    DEFAULT_A_GRID,
    DEFAULT_B_GRID,
    DEFAULT_D_GRID,
    DEFAULT_TAU_GRID,
    FitResult,
    fit_pools,
    predict_points,
)
from curatorch.scaling.io import (
    Runs,
    atomic_write_bytes,
    find_params,
    format_count,
    parse_count,
    parse_counts,
    read_params,
    read_runs,
    write_params,
    write_runs,
)
from curatorch.scaling.law import (
    METHODS,
    NORMALIZER,
    combined_error,
    effective_samples,
    pass_samples,
    pool_error,
    repetition_decay,
)
from curatorch.scaling.params import PoolParams
from curatorch.scaling.plan import FilterPlan, bucket_interval, disjoint_buckets, plan_filters
from curatorch.scaling.plot import plot_comparison, plot_filters

__all__ = [
    "DEFAULT_A_GRID",
    "DEFAULT_B_GRID",
    "DEFAULT_D_GRID",
    "DEFAULT_TAU_GRID",
    "METHODS",
    "NORMALIZER",
    "FilterPlan",
    "FitResult",
    "PoolParams",
    "Runs",
    "atomic_write_bytes",
    "bucket_interval",
    "combined_error",
    "disjoint_buckets",
    "effective_samples",
    "find_params",
    "fit_pools",
    "format_count",
    "parse_count",
    "parse_counts",
    "pass_samples",
    "plan_filters",
    "plot_comparison",
    "plot_filters",
    "pool_error",
    "predict_points",
    "read_params",
    "read_runs",
    "repetition_decay",
    "write_params",
    "write_runs",
]
