"""Fitting the law to measured points: per-pool ``b`` and ``tau``, shared ``a`` and ``d``.

A deterministic, vectorised grid search (every grid point is evaluated; ties go to the
first in grid order), followed by a bounded local refinement of all parameters together
with :func:`scipy.optimize.least_squares`. The refinement is kept only when it lowers the
sum of squared errors.

For fixed ``(a, d)`` the pools separate: the grid evaluates, for every pool, the squared
errors of all ``(b, tau)`` pairs at every ``(a, d)`` and picks the ``(a, d)`` whose sum of
per-pool minima is smallest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from curatorch.scaling.law import METHODS, NORMALIZER, Method, pass_samples, pool_error
from curatorch.scaling.params import PoolParams

__all__ = [
    "DEFAULT_A_GRID",
    "DEFAULT_B_GRID",
    "DEFAULT_D_GRID",
    "DEFAULT_TAU_GRID",
    "FitResult",
    "fit_pools",
    "predict_points",
]

DEFAULT_A_GRID = np.linspace(0.0001, 0.2, 100)
"""Shared ``a`` values searched when ``a`` is not fixed (the reference implementation's)."""
DEFAULT_B_GRID = np.linspace(-0.005, -0.5, 100)
"""Per-pool ``b`` values searched (the reference implementation's)."""
DEFAULT_TAU_GRID = np.linspace(1.0, 10.0, 100)
"""Per-pool ``tau`` values searched, in passes (the reference implementation's)."""
DEFAULT_D_GRID = np.linspace(0.0, 0.4, 21)
"""Shared ``d`` values searched when ``d`` is not fixed."""

_BOUNDS = {"b": (-10.0, -1e-9), "tau": (1e-3, 1e4), "a": (1e-12, 1e6), "d": (0.0, 1.0)}


@dataclass(frozen=True)
class FitResult:
    """A fit and how well it matches the points.

    Attributes:
        params: fitted parameters (``a_values`` all equal to the shared ``a``).
        pool_sizes: ``[m]`` samples per pool used by the fit.
        predicted: ``[P]`` predicted errors at the points.
        residuals: ``[P]`` measured minus predicted error.
        sse: sum of squared residuals.
        sse_per_pool: ``[m]`` sum of squared residuals of each pool's points.
        grid_sse: sum of squared residuals of the best grid point (before refinement).
        refined: whether the local refinement improved on the grid point (and was kept).
    """

    params: PoolParams
    pool_sizes: tuple[float, ...]
    predicted: NDArray[np.float64]
    residuals: NDArray[np.float64]
    sse: float
    sse_per_pool: tuple[float, ...]
    grid_sse: float
    refined: bool


def _grid(name: str, values: ArrayLike | None, default: NDArray[np.float64]) -> NDArray[np.float64]:
    g = default if values is None else np.atleast_1d(np.asarray(values, dtype=np.float64))
    if g.ndim != 1 or g.size == 0 or not np.isfinite(g).all():
        raise ValueError(f"{name} must be a non-empty vector of finite numbers, got {values!r}")
    return g


def predict_points(
    params: PoolParams,
    *,
    pool: ArrayLike,
    samples_seen: ArrayLike,
    pool_size: ArrayLike,
    method: Method = "utility",
    d: float | None = None,
) -> NDArray[np.float64]:
    """Predicted error at each point ``i`` of pool ``params.names[pool[i]]``; ``[P]``.

    ``pool_size`` is the samples in the point's pool (``[P]`` or a scalar).
    """
    idx = np.asarray(pool, dtype=np.int64)
    n = np.asarray(samples_seen, dtype=np.float64)
    if idx.shape != n.shape or idx.ndim != 1:
        raise ValueError(
            f"pool and samples_seen must be vectors of one shape, got {idx.shape} and {n.shape}"
        )
    if idx.size and (idx.min() < 0 or idx.max() >= len(params.names)):
        raise ValueError(f"pool indices must be in [0, {len(params.names)}), got {idx.max()}")
    size = np.broadcast_to(np.asarray(pool_size, dtype=np.float64), n.shape)
    if d is None:
        d = params.d
    if d is None:
        raise ValueError(f"d: parameter record {params.id!r} has no d_value; pass d explicitly")
    out = np.empty(n.shape, dtype=np.float64)
    for j in np.unique(idx):
        sel = idx == j
        out[sel] = pool_error(
            n[sel],
            pool_size=size[sel],
            a=params.a[j],
            b=params.b[j],
            tau=params.tau[j],
            d=d,
            method=method,
        )
    return out


_GridOut = tuple[NDArray[np.float64], NDArray[np.int64]]


def _best_over_bt(
    coef: NDArray[np.float64], d_grid: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """``SSE(d) = coef[0] + d coef[1] + d^2 coef[2]`` for every ``d`` and flat ``(b, tau)``
    (``coef`` ``[3, B*T]``): the minimum over ``(b, tau)`` and its index, each ``[D]``."""
    dd = d_grid[:, None]  # [D, 1]; broadcasting, not a BLAS call (threads on a busy machine)
    sse = dd * coef[2]  # [D, B*T], then Horner in place
    sse += coef[1]
    sse *= dd
    sse += coef[0]
    arg = np.argmin(sse, axis=-1)
    return np.take_along_axis(sse, arg[:, None], axis=-1)[:, 0], arg


def _grid_sse_utility(
    n: NDArray[np.float64],
    N: NDArray[np.float64],
    y: NDArray[np.float64],
    a_grid: NDArray[np.float64],
    b_grid: NDArray[np.float64],
    tau_grid: NDArray[np.float64],
    d_grid: NDArray[np.float64],
) -> _GridOut:
    """Minimum over ``(b, tau)`` of one pool's SSE for every ``(a, d)``, and its flat
    ``(b, tau)`` index: two ``[A, D]`` arrays.

    With ``f = (a min(n, N) / 1e5) ** b`` and ``M = prod_k ratio_k ** b_k`` the prediction is
    ``(f + d) M``, so the SSE is a quadratic in ``d`` whose coefficients are sums over the
    points; ``M`` does not depend on ``a`` or ``d`` and is computed once.
    """
    start, end = pass_samples(n, N)  # [P, K+1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(end[:, 1:] > start[:, 1:], end[:, 1:] / np.maximum(start[:, 1:], 1.0), 1.0)
    log_r = np.log(ratio)  # [P, K]
    k = np.arange(1, log_r.shape[1] + 1, dtype=np.float64)
    decay = np.power(0.5, k[None, :] / tau_grid[:, None])  # [T, K]
    g = decay @ log_r.T  # [T, P]
    M = np.exp(b_grid[:, None, None] * g[None])  # [B, T, P]
    log_first = np.log(np.minimum(n, N) / NORMALIZER)  # [P]
    s_yy = float(y @ y)
    s2 = (M @ y).ravel()  # [B*T]
    s5 = (M * M).sum(-1).ravel()
    best = np.empty((a_grid.size, d_grid.size))
    arg = np.empty((a_grid.size, d_grid.size), dtype=np.int64)
    for i, a in enumerate(a_grid):
        f = np.exp(b_grid[:, None] * (np.log(a) + log_first)[None, :])  # [B, P]
        fM = f[:, None, :] * M  # [B, T, P]
        s1 = (fM @ y).ravel()
        s3 = (fM * fM).sum(-1).ravel()
        s4 = (fM * M).sum(-1).ravel()
        coef = np.stack([s_yy - 2.0 * s1 + s3, 2.0 * (s4 - s2), s5])  # [3, B*T]
        best[i], arg[i] = _best_over_bt(coef, d_grid)
    return best, arg


def _grid_sse_data(
    n: NDArray[np.float64],
    N: NDArray[np.float64],
    y: NDArray[np.float64],
    a_grid: NDArray[np.float64],
    b_grid: NDArray[np.float64],
    tau_grid: NDArray[np.float64],
    d_grid: NDArray[np.float64],
) -> _GridOut:
    """As :func:`_grid_sse_utility`, under the effective-data law (``y = g + d``)."""
    start, end = pass_samples(n, N)  # [P, K+1]
    k = np.arange(start.shape[1], dtype=np.float64)
    decay = np.power(0.5, k[None, :] / tau_grid[:, None])  # [T, K+1]
    log_e = np.log(decay @ (end - start).T)  # [T, P]
    P = y.size
    best = np.empty((a_grid.size, d_grid.size))
    arg = np.empty((a_grid.size, d_grid.size), dtype=np.int64)
    for i, a in enumerate(a_grid):
        g = np.exp(b_grid[:, None, None] * (np.log(a / NORMALIZER) + log_e)[None])  # [B, T, P]
        r = y - g
        coef = np.stack(
            [
                (r * r).sum(-1).ravel(),
                -2.0 * r.sum(-1).ravel(),
                np.full(r.shape[0] * r.shape[1], float(P)),
            ]
        )  # [3, B*T]
        best[i], arg[i] = _best_over_bt(coef, d_grid)
    return best, arg


@dataclass(frozen=True)
class _Points:
    """Validated points of one fit, and what turns a parameter vector into predictions.

    Attributes:
        names: ``[m]`` pool names.
        idx: ``[P]`` pool index of each point.
        n: ``[P]`` samples seen at each point.
        y: ``[P]`` measured error at each point.
        size: ``[P]`` samples in each point's pool.
        method: the law fitted.
        fit_id: ``id`` of the parameter records built.
    """

    names: tuple[str, ...]
    idx: NDArray[np.integer]
    n: NDArray[np.float64]
    y: NDArray[np.float64]
    size: NDArray[np.float64]
    method: Method
    fit_id: str

    def params(
        self, b_vals: NDArray[np.float64], t_vals: NDArray[np.float64], a_val: float, d_val: float
    ) -> PoolParams:
        """The parameter record of per-pool ``b_vals``, ``t_vals`` and shared ``a``, ``d``."""
        return PoolParams(
            id=self.fit_id,
            names=self.names,
            a=(a_val,) * len(self.names),
            b=tuple(float(v) for v in b_vals),
            tau=tuple(float(v) for v in t_vals),
            d=d_val,
            method=self.method,
        )

    def predict(self, p: PoolParams) -> NDArray[np.float64]:
        """Predicted error of ``p`` at every point; ``[P]``."""
        return predict_points(
            p, pool=self.idx, samples_seen=self.n, pool_size=self.size, method=self.method
        )


def _check_points(
    m: int, pool: ArrayLike, samples_seen: ArrayLike, error: ArrayLike
) -> tuple[NDArray[np.integer], NDArray[np.float64], NDArray[np.float64]]:
    """Validate ``pool`` (indices into ``m`` names), ``samples_seen`` and ``error``.

    Returns:
        ``(idx, n, y)``, each ``[P]``.
    """
    idx = np.asarray(pool)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"pool must be a non-empty vector of integer indices, got {pool!r:.80}")
    P = idx.size
    n = np.asarray(samples_seen, dtype=np.float64)
    y = np.asarray(error, dtype=np.float64)
    for label, arr in (("samples_seen", n), ("error", y)):
        if arr.shape != (P,):
            raise ValueError(f"{label} must have shape [{P}] like pool, got {arr.shape}")
    if idx.min() < 0 or idx.max() >= m:
        raise ValueError(f"pool indices must be in [0, {m}), got {int(idx.max())}")
    bad = ~np.isfinite(n) | (n <= 0)
    if bad.any():
        raise ValueError(f"samples_seen must be finite and > 0, got {n[bad][0]!r}")
    bad = ~np.isfinite(y) | (y < 0) | (y > 1)
    if bad.any():
        raise ValueError(f"error must be in [0, 1], got {y[bad][0]!r}")
    return idx, n, y


def _check_pool_sizes(
    names: tuple[str, ...], idx: NDArray[np.integer], pool_size: ArrayLike
) -> tuple[NDArray[np.float64], list[float]]:
    """Validate ``pool_size`` (scalar, ``[m]`` or ``[P]``) against the points' pools.

    Returns:
        ``(size, sizes)``: the samples in each point's pool, ``[P]``, and in each pool, ``[m]``.
    """
    m, P = len(names), idx.size
    size = np.asarray(pool_size, dtype=np.float64)
    if size.ndim == 0:
        size = np.full(P, float(size))
    elif size.shape == (m,) and m != P:
        size = size[idx]
    elif size.shape != (P,):
        raise ValueError(f"pool_size must be a scalar, [m={m}] or [P={P}], got shape {size.shape}")
    bad = ~np.isfinite(size) | (size <= 0)
    if bad.any():
        raise ValueError(f"pool_size must be finite and > 0, got {size[bad][0]!r}")
    sizes = []
    for j, name in enumerate(names):
        s = np.unique(size[idx == j])
        if s.size == 0:
            raise ValueError(f"pool {name!r} has no points")
        if s.size > 1:
            raise ValueError(f"pool_size of pool {name!r} must be one value, got {s.tolist()}")
        sizes.append(float(s[0]))
    return size, sizes


def _check_grids(
    a: float | None,
    d: float | None,
    a_grid: ArrayLike | None,
    b_grid: ArrayLike | None,
    tau_grid: ArrayLike | None,
    d_grid: ArrayLike | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Validate the fixed ``a`` / ``d`` and the grids; a fixed value is a one-point grid.

    Returns:
        ``(a_grid, b_grid, tau_grid, d_grid)`` as float vectors.
    """
    for label, v, lo, hi in (("a", a, 0.0, None), ("d", d, 0.0, 1.0)):
        if v is not None and not (
            np.isfinite(v) and v >= lo and (hi is None or v <= hi) and (label != "a" or v > 0)
        ):
            raise ValueError(f"{label} must be {'> 0' if label == 'a' else 'in [0, 1]'}, got {v!r}")
    ag = np.array([float(a)]) if a is not None else _grid("a_grid", a_grid, DEFAULT_A_GRID)
    dg = np.array([float(d)]) if d is not None else _grid("d_grid", d_grid, DEFAULT_D_GRID)
    bg = _grid("b_grid", b_grid, DEFAULT_B_GRID)
    tg = _grid("tau_grid", tau_grid, DEFAULT_TAU_GRID)
    if (ag <= 0).any():
        raise ValueError(f"a_grid values must be > 0, got {ag[ag <= 0][0]}")
    if (bg >= 0).any():
        raise ValueError(f"b_grid values must be < 0, got {bg[bg >= 0][0]}")
    if (tg <= 0).any():
        raise ValueError(f"tau_grid values must be > 0, got {tg[tg <= 0][0]}")
    if (dg < 0).any():
        raise ValueError(f"d_grid values must be >= 0, got {dg[dg < 0][0]}")
    return ag, bg, tg, dg


def _grid_search(
    pts: _Points,
    ag: NDArray[np.float64],
    bg: NDArray[np.float64],
    tg: NDArray[np.float64],
    dg: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float]:
    """The grid point whose summed per-pool SSE is smallest (first in grid order on ties).

    Returns:
        ``(b0, t0, a0, d0)``: per-pool ``b`` and ``tau`` (``[m]`` each), shared ``a`` and ``d``.
    """
    grid_fn = _grid_sse_utility if pts.method == "utility" else _grid_sse_data
    idx, n, size, y = pts.idx, pts.n, pts.size, pts.y
    per_pool = [
        grid_fn(n[idx == j], size[idx == j], y[idx == j], ag, bg, tg, dg)
        for j in range(len(pts.names))
    ]
    total = sum(mins for mins, _ in per_pool)  # [A, D]
    ia, idd = np.unravel_index(int(np.argmin(total)), total.shape)
    best_bt = [int(arg[ia, idd]) for _, arg in per_pool]
    b0 = np.array([bg[i // tg.size] for i in best_bt])
    t0 = np.array([tg[i % tg.size] for i in best_bt])
    return b0, t0, float(ag[ia]), float(dg[idd])


def _refine_bounds(m: int, free_a: bool, free_d: bool) -> tuple[list[float], list[float]]:
    """Lower and upper bounds of the refinement vector ``[b, log tau, (log a), (d)]``."""
    lo = [_BOUNDS["b"][0]] * m + [np.log(_BOUNDS["tau"][0])] * m
    hi = [_BOUNDS["b"][1]] * m + [np.log(_BOUNDS["tau"][1])] * m
    if free_a:
        lo.append(np.log(_BOUNDS["a"][0]))
        hi.append(np.log(_BOUNDS["a"][1]))
    if free_d:
        lo.append(_BOUNDS["d"][0])
        hi.append(_BOUNDS["d"][1])
    return lo, hi


def _refine(
    pts: _Points,
    start: tuple[NDArray[np.float64], NDArray[np.float64], float, float],
    free_a: bool,
    free_d: bool,
    grid_sse: float,
) -> tuple[PoolParams, NDArray[np.float64], float] | None:
    """Refine every free parameter together from the grid point ``start = (b0, t0, a0, d0)``.

    Returns:
        ``(params, residuals, sse)`` when the refinement lowers the SSE below ``grid_sse``,
        else ``None`` (also when a step leaves the law's domain).
    """
    from scipy.optimize import least_squares

    b0, t0, a0, d0 = start
    m = len(pts.names)

    def unpack(x: NDArray) -> PoolParams:
        pos = 2 * m
        a_val = float(np.exp(x[pos])) if free_a else a0
        pos += int(free_a)
        d_val = float(x[pos]) if free_d else d0
        return pts.params(x[:m], np.exp(x[m : 2 * m]), a_val, d_val)

    def fun(x: NDArray) -> NDArray:
        return pts.predict(unpack(x)) - pts.y

    x0 = [*b0, *np.log(t0)] + ([np.log(a0)] if free_a else []) + ([d0] if free_d else [])
    lo, hi = _refine_bounds(m, free_a, free_d)
    x0 = np.clip(np.asarray(x0, dtype=np.float64), lo, hi)
    try:
        sol = least_squares(
            fun, x0, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=200 * x0.size
        )
        cand = unpack(sol.x)
        r = pts.y - pts.predict(cand)
        if np.isfinite(r).all() and float(r @ r) < grid_sse:
            return cand, r, float(r @ r)
    except ValueError:  # a step left the law's domain: keep the grid point
        pass
    return None


def _result(
    pts: _Points,
    best: PoolParams,
    sizes: list[float],
    resid: NDArray[np.float64],
    sse: float,
    grid_sse: float,
    refined: bool,
) -> FitResult:
    """The :class:`FitResult` of ``best``, whose record gets the fit's ``extra`` fields."""
    best = PoolParams(
        id=best.id,
        names=best.names,
        a=best.a,
        b=best.b,
        tau=best.tau,
        d=best.d,
        method=pts.method,
        extra={"best_a": best.a[0], "best_loss": sse, "pool_sizes": sizes},
    )
    return FitResult(
        params=best,
        pool_sizes=tuple(sizes),
        predicted=pts.y - resid,
        residuals=resid,
        sse=sse,
        sse_per_pool=tuple(float((resid[pts.idx == j] ** 2).sum()) for j in range(len(sizes))),
        grid_sse=grid_sse,
        refined=refined,
    )


def fit_pools(
    *,
    names: Sequence[str],
    pool: ArrayLike,
    samples_seen: ArrayLike,
    error: ArrayLike,
    pool_size: ArrayLike,
    method: Method = "utility",
    a: float | None = None,
    d: float | None = None,
    a_grid: ArrayLike | None = None,
    b_grid: ArrayLike | None = None,
    tau_grid: ArrayLike | None = None,
    d_grid: ArrayLike | None = None,
    refine: bool = True,
    fit_id: str = "fit",
) -> FitResult:
    """Fit ``b`` and ``tau`` per pool, with ``a`` and ``d`` shared (fixed or fitted).

    Args:
        names: ``[m]`` pool names.
        pool: ``[P]`` index into ``names`` of each point.
        samples_seen: ``[P]`` samples seen at each point (> 0).
        error: ``[P]`` measured error (1 - accuracy) at each point, in [0, 1].
        pool_size: samples in each point's pool, ``[P]`` or ``[m]`` (per pool) or a scalar.
        method: ``"utility"`` or ``"data"`` law.
        a, d: fixed shared values, or ``None`` to search ``a_grid`` / ``d_grid``.
        a_grid, b_grid, tau_grid, d_grid: grids (defaults: :data:`DEFAULT_A_GRID` ...).
        refine: run the local refinement after the grid search.
        fit_id: ``id`` of the returned :class:`PoolParams`.

    Returns:
        A :class:`FitResult` with ``params.method == method``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    names = tuple(names)
    if len(names) == 0:
        raise ValueError("names must not be empty")
    idx, n, y = _check_points(len(names), pool, samples_seen, error)
    size, sizes = _check_pool_sizes(names, idx, pool_size)
    ag, bg, tg, dg = _check_grids(a, d, a_grid, b_grid, tau_grid, d_grid)
    pts = _Points(names=names, idx=idx, n=n, y=y, size=size, method=method, fit_id=fit_id)

    start = _grid_search(pts, ag, bg, tg, dg)
    best = pts.params(*start)
    resid = y - pts.predict(best)
    grid_sse = float(resid @ resid)
    sse, refined = grid_sse, False
    if refine and grid_sse > 0:
        found = _refine(pts, start, a is None, d is None, grid_sse)
        if found is not None:
            (best, resid, sse), refined = found, True
    return _result(pts, best, sizes, resid, sse, grid_sse, refined)
