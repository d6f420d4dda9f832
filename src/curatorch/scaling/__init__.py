"""Data-filtering scaling laws (Goyal et al., CVPR 2024): the law, fitting, combining pools
and choosing the filter for a compute budget; the shipped inputs (the authors' published
parameters, a sample runs table) by name.

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
    runs_comment,
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
from curatorch.scaling.shipped import (
    KINDS,
    SHIPPED_DIR,
    ShippedFile,
    describe_shipped,
    resolve_scaling_file,
    shipped_files,
    shipped_names,
)

__all__ = [
    "DEFAULT_A_GRID",
    "DEFAULT_B_GRID",
    "DEFAULT_D_GRID",
    "DEFAULT_TAU_GRID",
    "KINDS",
    "METHODS",
    "NORMALIZER",
    "SHIPPED_DIR",
    "FilterPlan",
    "FitResult",
    "PoolParams",
    "Runs",
    "ShippedFile",
    "atomic_write_bytes",
    "bucket_interval",
    "combined_error",
    "describe_shipped",
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
    "resolve_scaling_file",
    "runs_comment",
    "shipped_files",
    "shipped_names",
    "write_params",
    "write_runs",
]
