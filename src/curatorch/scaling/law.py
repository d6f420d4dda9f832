"""The data-filtering scaling law of Goyal et al. (CVPR 2024), as pure vectorised functions.

Notation (all sizes are sample counts, not tokens or FLOPs):

- ``n``: samples seen (the compute budget), ``N``: samples in the pool (one pass).
- ``K = floor(n / N)``: number of completed passes; pass ``k`` (0-based) sees
  ``min((k + 1) N, n) - k N`` samples.
- Per-pool parameters: ``a > 0`` (sample-count scale, with a ``1e5`` normaliser),
  ``b < 0`` (utility exponent; more negative = more useful data), ``tau > 0`` (half-life of
  the utility under repetition, in passes) and ``d >= 0`` (irreducible error).

Utility law (one pool)::

    y0   = (a min(n, N) / 1e5) ** b + d
    b_k  = b * (1/2) ** (k / tau)
    y(n) = y0 * prod_{k=1..K} (min((k+1) N, n) / (k N)) ** b_k

Combining ``m`` equal buckets of ``N`` samples each (:func:`combined_error`): the pool has
``m N`` samples, each half-life becomes ``m tau_i`` and the exponent of pass ``k`` is the
mean ``b_eff,k = (1/m) sum_i b_i (1/2) ** (k / (m tau_i))`` (``method="utility"``), or the
effective-data variant (``method="data"``) described in :func:`combined_error`.

Every function validates its inputs (``ValueError`` naming the argument and the value) and
broadcasts ``samples_seen`` as a NumPy array; results are float64 arrays of the same shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_PASSES",
    "METHODS",
    "NORMALIZER",
    "combined_error",
    "effective_samples",
    "pass_samples",
    "pool_error",
    "repetition_decay",
]

NORMALIZER = 1e5
"""Sample-count normaliser inside the power law (the reference implementation's 100_000)."""

MAX_PASSES = 1_000_000
"""The most passes over a pool (``floor(n / N)``) the law evaluates: it works pass by pass,
so more would need more memory than a machine has; :func:`pass_samples` refuses them."""

METHODS = ("utility", "data")
"""Combination methods: per-pass mean utility, or effective data."""

Method = Literal["utility", "data"]


# ---------------------------------------------------------------------------------------------
# validation helpers


def _as_positive(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and > 0, got {arr[bad].ravel()[0]!r}")
    return arr


def _as_scalar(name: str, value: float, *, lo: float | None = None, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if lo is not None and (v <= lo if strict else v < lo):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {lo}, got {v}")
    return v


def _as_exponents(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~np.isfinite(arr) | (arr >= 0)
    if bad.any():
        raise ValueError(f"{name} must be finite and < 0, got {arr[bad].ravel()[0]!r}")
    return arr


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")


# ---------------------------------------------------------------------------------------------
# building blocks


def repetition_decay(passes: ArrayLike, tau: ArrayLike) -> NDArray[np.float64]:
    """``(1/2) ** (passes / tau)``: the fraction of its utility that data keeps on the
    ``passes``-th repetition (0 = first pass, decay 1). Broadcasts ``passes`` against ``tau``.

    Raises ``ValueError`` when ``passes`` is negative or ``tau`` is not > 0.
    """
    k = np.asarray(passes, dtype=np.float64)
    if (~np.isfinite(k) | (k < 0)).any():
        raise ValueError(f"passes must be finite and >= 0, got {k[~(k >= 0)].ravel()[:1]}")
    t = _as_positive("tau", tau)
    return np.power(0.5, k / t)


def pass_samples(
    samples_seen: ArrayLike, pool_size: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Samples seen before and at the end of every pass, padded to the longest run.

    Args:
        samples_seen: ``n``, any shape ``S``, > 0.
        pool_size: ``N``, broadcastable to ``S``, > 0.

    Raises ``ValueError`` naming ``samples_seen / pool_size`` beyond :data:`MAX_PASSES`
    passes.

    Returns:
        ``(start, end)``, each ``[*S, K_max + 1]`` where ``K_max = max floor(n / N)``:
        ``start[..., k] = k N`` and ``end[..., k] = min((k + 1) N, n)``; passes a run never
        reaches have ``end == start`` (a ratio of 1, zero samples).
    """
    n = _as_positive("samples_seen", samples_seen)
    N = _as_positive("pool_size", pool_size)
    n, N = np.broadcast_arrays(n, N)
    passes = float(np.max(np.floor(n / N)))
    if passes > MAX_PASSES:
        i = int(np.argmax(n / N))
        raise ValueError(
            f"samples_seen / pool_size must be at most {MAX_PASSES} passes, got "
            f"{n.ravel()[i]:.6g} / {N.ravel()[i]:.6g} = {passes:.6g} passes"
        )
    k_max = int(passes)
    k = np.arange(k_max + 1, dtype=np.float64)  # [K+1]
    start = k * N[..., None]  # [*S, K+1]
    end = np.minimum((k + 1.0) * N[..., None], n[..., None])
    end = np.maximum(end, start)  # unreached passes: zero samples
    return start, end


def _log_pass_ratios(samples_seen: ArrayLike, pool_size: ArrayLike) -> NDArray[np.float64]:
    """``log(end_k / start_k)`` for passes ``k >= 1`` (0 where the pass is not reached);
    shape ``[*S, K_max]``."""
    start, end = pass_samples(samples_seen, pool_size)
    start, end = start[..., 1:], end[..., 1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(end > start, end / np.where(start > 0, start, 1.0), 1.0)
    return np.log(ratio)


# ---------------------------------------------------------------------------------------------
# the law


def pool_error(
    samples_seen: ArrayLike,
    *,
    pool_size: ArrayLike,
    a: float,
    b: float,
    tau: float,
    d: float,
    method: Method = "utility",
) -> NDArray[np.float64]:
    """Predicted error (1 - accuracy) after ``samples_seen`` samples from one pool.

    Args:
        samples_seen: ``n``, any shape ``S``, > 0.
        pool_size: ``N`` samples in the pool, broadcastable to ``S``, > 0.
        a: sample-count scale (> 0).
        b: utility exponent (< 0).
        tau: half-life under repetition, in passes (> 0).
        d: irreducible error (>= 0).
        method: ``"utility"`` (the decayed exponent per pass, ``d`` inside the product) or
            ``"data"`` (``y = (a S / 1e5) ** b + d`` with ``S`` the decayed effective samples).

    Returns:
        ``[*S]`` float64 errors.
    """
    pool_size = _as_positive("pool_size", pool_size)  # named as the caller passed it
    return combined_error(
        samples_seen, bucket_size=pool_size, a=a, b=[b], tau=[tau], d=d, method=method
    )


def effective_samples(
    samples_seen: ArrayLike, *, pool_size: ArrayLike, tau: ArrayLike
) -> NDArray[np.float64]:
    """Effective samples ``sum_k (samples in pass k) * (1/2) ** (k / tau)``; ``[*S]``.

    ``tau`` may be a vector ``[m]`` of bucket half-lives (already scaled to the combined
    pool); the decay is then their mean, as in the effective-data combination.
    """
    t = np.atleast_1d(_as_positive("tau", tau))  # [m]
    start, end = pass_samples(samples_seen, pool_size)  # [*S, K+1]
    k = np.arange(start.shape[-1], dtype=np.float64)
    decay = np.power(0.5, k[:, None] / t[None, :]).mean(axis=-1)  # [K+1]
    return ((end - start) * decay).sum(axis=-1)


def combined_error(
    samples_seen: ArrayLike,
    *,
    bucket_size: ArrayLike,
    a: float,
    b: Sequence[float] | ArrayLike,
    tau: Sequence[float] | ArrayLike,
    d: float,
    method: Method = "utility",
) -> NDArray[np.float64]:
    """Predicted error after ``samples_seen`` samples from the union of ``m`` equal buckets.

    The pool has ``N = m * bucket_size`` samples; bucket ``i``'s half-life becomes
    ``tau_hat_i = m * tau_i`` and ``delta_ik = (1/2) ** (k / tau_hat_i)``.

    - ``method="utility"``: ``b_eff,k = mean_i b_i delta_ik`` and
      ``y = ((a min(n, N) / 1e5) ** b_eff,0 + d) * prod_{k>=1} (end_k / start_k) ** b_eff,k``.
    - ``method="data"``: ``b_eff,k = sum_i b_i delta_ik / sum_i delta_ik``; effective samples
      ``S_k = S_{k-1} + (a * samples in pass k / 1e5) * mean_i delta_ik`` and
      ``y = S_0 ** b_eff,0 * prod_{k>=1} (S_k / S_{k-1}) ** b_eff,k + d``.

    With ``m = 1`` this is :func:`pool_error`. ``a`` is shared by the buckets.

    Args:
        samples_seen: ``n``, any shape ``S``, > 0.
        bucket_size: samples per bucket, broadcastable to ``S``, > 0.
        a: shared sample-count scale (> 0).
        b: ``[m]`` utility exponents (< 0).
        tau: ``[m]`` per-bucket half-lives in passes of the bucket alone (> 0).
        d: irreducible error (>= 0).
        method: ``"utility"`` or ``"data"``.

    Returns:
        ``[*S]`` float64 errors.
    """
    _check_method(method)
    a = _as_scalar("a", a, lo=0.0, strict=True)
    d = _as_scalar("d", d, lo=0.0)
    b_arr = np.atleast_1d(_as_exponents("b", b))
    t_arr = np.atleast_1d(_as_positive("tau", tau))
    if b_arr.ndim != 1 or t_arr.shape != b_arr.shape:
        raise ValueError(
            f"b and tau must be vectors of the same length, got shapes {b_arr.shape} and "
            f"{t_arr.shape}"
        )
    m = b_arr.shape[0]
    n = _as_positive("samples_seen", samples_seen)
    N = _as_positive("bucket_size", bucket_size) * m
    n, N = np.broadcast_arrays(n, N)
    start, end = pass_samples(n, N)  # [*S, K+1]
    k = np.arange(start.shape[-1], dtype=np.float64)  # [K+1]
    delta = np.power(0.5, k[:, None] / (m * t_arr)[None, :])  # [K+1, m]
    first = a * np.minimum(n, N) / NORMALIZER  # [*S]
    if method == "utility":
        b_eff = (delta * b_arr).mean(axis=-1)  # [K+1]
        log_ratio = _log_pass_ratios(n, N)  # [*S, K]
        y0 = np.power(first, b_eff[0]) + d
        return y0 * np.exp((log_ratio * b_eff[1:]).sum(axis=-1))
    # effective data
    # passes where every bucket's decay underflowed to 0 add no effective samples (ratio 1),
    # so their exponent does not matter: 0 there instead of 0/0
    den = delta.sum(axis=-1)
    b_eff = np.divide((delta * b_arr).sum(axis=-1), den, out=np.zeros_like(den), where=den > 0)
    grow = a * (end - start) / NORMALIZER * delta.mean(axis=-1)  # [*S, K+1]
    s = np.cumsum(grow, axis=-1)  # S_k, [*S, K+1]
    log_ratio = np.log(s[..., 1:] / s[..., :-1])  # 0 for unreached passes
    log_y = b_eff[0] * np.log(s[..., 0]) + (log_ratio * b_eff[1:]).sum(axis=-1)
    return np.exp(log_y) + d
