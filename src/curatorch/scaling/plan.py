"""Choosing the filter for a compute budget: top-k bucket candidates and the best per budget.

Candidates are the unions of the ``k`` most useful disjoint buckets, ``k = 1..m``, with
buckets ranked by ``b`` ascending (more negative = more useful). Pools that are not disjoint
buckets (a random mix of several buckets) are left out: with bucket names of the form
``...top{lo}to{hi}p...`` a pool whose interval overlaps a narrower pool's is not a
candidate (see :func:`disjoint_buckets`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from curatorch.scaling.law import Method, combined_error
from curatorch.scaling.params import PoolParams

__all__ = ["FilterPlan", "bucket_interval", "disjoint_buckets", "plan_filters"]

_INTERVAL = re.compile(r"top(\d+(?:\.\d+)?)to(\d+(?:\.\d+)?)p")


def bucket_interval(name: str) -> tuple[float, float] | None:
    """``"tmars_top10to20p"`` -> ``(10.0, 20.0)`` (percent of the pool by score, best
    first); ``None`` when the name carries no ``top{lo}to{hi}p`` interval."""
    m = _INTERVAL.search(name)
    if not m:
        return None
    lo, hi = float(m.group(1)), float(m.group(2))
    return (lo, hi) if hi > lo else None


def disjoint_buckets(names: Sequence[str]) -> list[str]:
    """The disjoint buckets among ``names``, in their order.

    Names carrying a ``top{lo}to{hi}p`` interval are taken narrowest first, and a pool whose
    interval overlaps one already taken (a mix such as ``top0to40p_random25p``) is left out.
    Names without an interval are kept.
    """
    spans = {n: bucket_interval(n) for n in names}
    with_span = sorted(
        (n for n in names if spans[n] is not None),
        key=lambda n: (
            spans[n][1] - spans[n][0]  # type: ignore[index]
        ),
    )
    taken: list[tuple[float, float]] = []
    keep = {n for n in names if spans[n] is None}
    for n in with_span:
        lo, hi = spans[n]  # type: ignore[misc]
        if all(not (lo < t_hi and t_lo < hi) for t_lo, t_hi in taken):
            taken.append((lo, hi))
            keep.add(n)
    return [n for n in names if n in keep]


def _fmt_pct(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 1e-9 else f"{x:.3g}"


@dataclass(frozen=True)
class FilterPlan:
    """Predicted error of each candidate filter at each budget.

    Attributes:
        labels: ``[C]`` candidate names (``top10`` = the best 10% by score).
        pools: ``[C]`` bucket names in each candidate.
        budget_labels: ``[B]`` budgets as written (``"32M"``).
        budgets: ``[B]`` samples seen.
        errors: ``[C, B]`` predicted error (1 - accuracy).
        best: ``[B]`` index of the lowest-error candidate per budget.
    """

    labels: tuple[str, ...]
    pools: tuple[tuple[str, ...], ...]
    budget_labels: tuple[str, ...]
    budgets: NDArray[np.float64]
    errors: NDArray[np.float64]
    best: NDArray[np.int64]

    def accuracy_percent(self) -> dict[str, dict[str, float]]:
        """``{budget_label: {candidate_label: accuracy in %}}``."""
        return {
            bl: {cl: float(100.0 * (1.0 - self.errors[c, j])) for c, cl in enumerate(self.labels)}
            for j, bl in enumerate(self.budget_labels)
        }

    def best_labels(self) -> dict[str, str]:
        """``{budget_label: best candidate label}``."""
        return {bl: self.labels[int(self.best[j])] for j, bl in enumerate(self.budget_labels)}


def _labels(ranked: Sequence[str], bucket_percent: float | None) -> list[str]:
    spans = [bucket_interval(n) for n in ranked]
    if bucket_percent is None and all(s is not None for s in spans):
        widths = np.cumsum([s[1] - s[0] for s in spans])  # type: ignore[index]
        return [f"top{_fmt_pct(w)}" for w in widths]
    pct = bucket_percent if bucket_percent is not None else 100.0 / len(ranked)
    return [f"top{_fmt_pct(pct * k)}" for k in range(1, len(ranked) + 1)]


def plan_filters(
    params: PoolParams,
    *,
    bucket_size: float,
    budgets: ArrayLike,
    budget_labels: Sequence[str] | None = None,
    method: Method = "utility",
    pools: Sequence[str] | None = None,
    d: float | None = None,
    bucket_percent: float | None = None,
) -> FilterPlan:
    """Predict every top-k filter at every budget and pick the best per budget.

    Args:
        params: fitted pool parameters (one ``a`` shared by the candidate buckets).
        bucket_size: samples per bucket (all candidates' buckets are equal).
        budgets: ``[B]`` samples seen, > 0.
        budget_labels: ``[B]`` names of the budgets (default: formatted counts).
        method: ``"utility"`` or ``"data"`` combination.
        pools: candidate bucket names (default: :func:`disjoint_buckets` of ``params.names``).
        d: irreducible error; default ``params.d`` (an error when the record has none).
        bucket_percent: percent of the full pool per bucket, for the labels (default: from
            the ``top{lo}to{hi}p`` names, else the candidates are taken to split 100%).

    Returns:
        A :class:`FilterPlan`; ties go to the smaller filter.
    """
    n = np.atleast_1d(np.asarray(budgets, dtype=np.float64))
    if n.ndim != 1:
        raise ValueError(f"budgets must be a vector, got shape {n.shape}")
    if budget_labels is None:
        from curatorch.scaling.io import format_count

        budget_labels = [format_count(float(x)) for x in n]
    if len(budget_labels) != n.shape[0]:
        raise ValueError(
            f"budget_labels must have one label per budget ({n.shape[0]}), got {len(budget_labels)}"
        )
    if d is None:
        d = params.d
    if d is None:
        raise ValueError(f"d: parameter record {params.id!r} has no d_value; pass d explicitly")
    if bucket_percent is not None and not 0 < bucket_percent <= 100:
        raise ValueError(f"bucket_percent must be in (0, 100], got {bucket_percent}")
    names = list(pools) if pools is not None else disjoint_buckets(params.names)
    if not names:
        raise ValueError(f"pools: no candidate buckets among {list(params.names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"pools must be unique, got {names}")
    idx = [params.index(name) for name in names]
    a_vals = {params.a[i] for i in idx}
    if len(a_vals) != 1:
        raise ValueError(
            f"a_values must be equal for the candidate buckets, got {[params.a[i] for i in idx]}"
        )
    a = a_vals.pop()
    # rank by b ascending (stable: ties keep file order)
    order = sorted(idx, key=lambda i: params.b[i])
    ranked = [params.names[i] for i in order]
    b = np.array([params.b[i] for i in order])
    tau = np.array([params.tau[i] for i in order])
    errors = np.stack(
        [
            combined_error(
                n, bucket_size=bucket_size, a=a, b=b[:k], tau=tau[:k], d=d, method=method
            )
            for k in range(1, len(order) + 1)
        ]
    )  # [C, B]
    return FilterPlan(
        labels=tuple(_labels(ranked, bucket_percent)),
        pools=tuple(tuple(ranked[:k]) for k in range(1, len(ranked) + 1)),
        budget_labels=tuple(budget_labels),
        budgets=n,
        errors=errors,
        best=np.argmin(errors, axis=0).astype(np.int64),
    )
