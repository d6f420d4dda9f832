from __future__ import annotations

import time

import numpy as np
import pytest

from curatorch.scaling import (
    DEFAULT_A_GRID,
    DEFAULT_B_GRID,
    DEFAULT_D_GRID,
    DEFAULT_TAU_GRID,
    fit_pools,
    pool_error,
)

N = 12.8e6
SEEN = np.array([16, 25.6, 32, 48, 64, 96, 128, 192, 256]) * 1e6
# five pools with parameters on the default grids
B_TRUE = DEFAULT_B_GRID[[31, 24, 19, 16, 23]]
T_TRUE = DEFAULT_TAU_GRID[[63, 83, 47, 14, 55]]


def _points(a, d, method, b=B_TRUE, tau=T_TRUE, noise=0.0):
    # (errors must stay in [0, 1]: the law exceeds 1 when a n / 1e5 is small)
    rng = np.random.default_rng(1)
    pool, seen, err = [], [], []
    for j, (bj, tj) in enumerate(zip(b, tau, strict=False)):
        y = pool_error(SEEN, pool_size=N, a=a, b=bj, tau=tj, d=d, method=method)
        pool += [j] * SEEN.size
        seen += list(SEEN)
        err += list(y + noise * rng.standard_normal(y.shape))
    return dict(
        names=list("ABCDE"),
        pool=np.array(pool),
        samples_seen=np.array(seen),
        error=np.array(err),
        pool_size=N,
    )


@pytest.mark.parametrize("method", ["utility", "data"])
def test_recovers_known_parameters_fixed_a_d(method):
    res = fit_pools(**_points(0.025, 0.1, method), method=method, a=0.025, d=0.1)
    np.testing.assert_allclose(res.params.b, B_TRUE, rtol=1e-12)
    np.testing.assert_allclose(res.params.tau, T_TRUE, rtol=1e-12)
    assert res.sse < 1e-20 and res.grid_sse < 1e-20
    assert res.params.method == method and res.pool_sizes == (N,) * 5


@pytest.mark.parametrize("method", ["utility", "data"])
def test_recovers_shared_a_and_d_five_pools_under_5s(method):
    a, d = DEFAULT_A_GRID[12], DEFAULT_D_GRID[5]
    t0 = time.perf_counter()
    res = fit_pools(**_points(a, d, method), method=method)
    seconds = time.perf_counter() - t0
    assert seconds < 5.0, seconds
    np.testing.assert_allclose(res.params.b, B_TRUE, rtol=1e-9)
    np.testing.assert_allclose(res.params.tau, T_TRUE, rtol=1e-9)
    assert res.params.a[0] == pytest.approx(a) and res.params.d == pytest.approx(d)
    assert res.sse < 1e-20
    assert res.params.extra["best_loss"] == res.sse


def test_refinement_reaches_off_grid_truth():
    b, tau = B_TRUE + 0.0017, T_TRUE + 0.031
    res = fit_pools(**_points(0.025, 0.1, "utility", b=b, tau=tau), a=0.025, d=0.1)
    assert res.refined and res.sse < 1e-14 < res.grid_sse
    np.testing.assert_allclose(res.params.b, b, rtol=1e-4)
    np.testing.assert_allclose(res.params.tau, tau, rtol=1e-3)
    grid_only = fit_pools(
        **_points(0.025, 0.1, "utility", b=b, tau=tau), a=0.025, d=0.1, refine=False
    )
    assert not grid_only.refined and grid_only.sse == grid_only.grid_sse


def test_noisy_points_residuals_reported():
    res = fit_pools(**_points(0.025, 0.1, "utility", noise=0.002), a=0.025, d=0.1)
    assert res.residuals.shape == (45,)
    assert res.sse == pytest.approx(float(res.residuals @ res.residuals))
    assert sum(res.sse_per_pool) == pytest.approx(res.sse)
    assert np.abs(res.residuals).max() < 0.01


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(samples_seen=np.full(45, -1.0)), "^samples_seen"),
        (dict(error=np.full(45, 1.5)), "^error"),
        (dict(pool_size=0.0), "^pool_size"),
        (dict(pool=np.zeros(45, dtype=np.int64)), "pool 'B' has no points"),
        (dict(method="x"), "^method"),
        (dict(a=-1.0), "^a "),
        (dict(d=2.0), "^d "),
        (dict(b_grid=[0.1]), "^b_grid"),
    ],
)
def test_fit_validation(change, match):
    kw = _points(0.025, 0.1, "utility")
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        fit_pools(**kw)
