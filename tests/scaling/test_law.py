from __future__ import annotations

import numpy as np
import pytest

from curatorch.scaling import (
    combined_error,
    effective_samples,
    pass_samples,
    pool_error,
    repetition_decay,
)
from tests.scaling import _slow
from tests.scaling.helpers import REFERENCE_DATA, REFERENCE_UTILITY

TMARS_UTILITY = dict(
    a=0.025,
    b=[-0.16, -0.125, -0.1, -0.085],
    tau=[6.7272727272727275, 8.545454545454547, 5.2727272727272725, 2.2727272727272725],
)
TMARS_DATA = dict(
    a=0.022,
    b=[-0.18227272727272728, -0.14484848484848487, -0.13530303030303031, -0.09757575757575758],
    tau=[4.0, 4.363636363636363, 2.909090909090909, 1.4545454545454546],
)
BUDGETS = [32e6, 64e6, 128e6, 640e6]


@pytest.mark.parametrize(
    "method,p,ref",
    [("utility", TMARS_UTILITY, REFERENCE_UTILITY), ("data", TMARS_DATA, REFERENCE_DATA)],
)
def test_matches_reference_implementation(method, p, ref):
    for k in range(1, 5):
        acc = 100 * (
            1
            - combined_error(
                BUDGETS,
                bucket_size=12.8e6,
                a=p["a"],
                b=p["b"][:k],
                tau=p["tau"][:k],
                d=0.1,
                method=method,
            )
        )
        np.testing.assert_allclose(acc, [row[k - 1] for row in ref], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["utility", "data"])
def test_vectorised_matches_slow_twin(method):
    rng = np.random.default_rng(0)
    slow = _slow.utility_error if method == "utility" else _slow.data_error
    for _ in range(20):
        m = int(rng.integers(1, 5))
        N = float(rng.integers(1000, 50_000))
        b = list(-rng.uniform(0.01, 0.4, m))
        tau = list(rng.uniform(0.5, 20, m))
        a, d = float(rng.uniform(0.01, 2)), float(rng.uniform(0, 0.3))
        # inside passes, on pass boundaries and before the first pass ends
        n = np.concatenate(
            [rng.uniform(1, 15 * m * N, 8), m * N * np.array([1.0, 2.0, 5.0]), [N / 3]]
        )
        got = combined_error(n, bucket_size=N, a=a, b=b, tau=tau, d=d, method=method)
        want = [slow(x, N, a, b, tau, d) for x in n]
        np.testing.assert_allclose(got, want, rtol=1e-11)


def test_single_pool_forms():
    n = np.array([5e3, 1e4, 2.5e4, 9.9e4])
    y = pool_error(n, pool_size=1e4, a=1.5, b=-0.2, tau=3.0, d=0.05)
    np.testing.assert_allclose(
        y, combined_error(n, bucket_size=1e4, a=1.5, b=[-0.2], tau=[3.0], d=0.05)
    )
    # effective data with one pool: (a S / 1e5) ** b + d
    s = effective_samples(n, pool_size=1e4, tau=3.0)
    np.testing.assert_allclose(s, [_slow.effective(x, 1e4, 3.0) for x in n], rtol=1e-12)
    yd = pool_error(n, pool_size=1e4, a=1.5, b=-0.2, tau=3.0, d=0.05, method="data")
    np.testing.assert_allclose(yd, (1.5 * s / 1e5) ** -0.2 + 0.05, rtol=1e-12)
    # no repetition: the plain power law
    np.testing.assert_allclose(
        pool_error(5e3, pool_size=1e4, a=1.5, b=-0.2, tau=3.0, d=0.05),
        (1.5 * 5e3 / 1e5) ** -0.2 + 0.05,
    )


def test_continuous_across_pass_boundaries_and_monotone():
    N = 1e4
    n = np.array([2 * N - 1e-3, 2 * N, 2 * N + 1e-3])
    y = pool_error(n, pool_size=N, a=1.0, b=-0.3, tau=2.0, d=0.1)
    assert np.ptp(y) < 1e-6
    grid = np.linspace(100, 30 * N, 500)
    y = pool_error(grid, pool_size=N, a=1.0, b=-0.3, tau=2.0, d=0.1)
    assert (np.diff(y) <= 1e-15).all()  # more samples never hurt


def test_repetition_decay_and_pass_samples():
    np.testing.assert_allclose(repetition_decay([0, 2, 4], 2.0), [1.0, 0.5, 0.25])
    start, end = pass_samples([25.0, 10.0], 10.0)
    np.testing.assert_array_equal(start, [[0, 10, 20], [0, 10, 20]])
    np.testing.assert_array_equal(end, [[10, 20, 25], [10, 10, 20]])


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(samples_seen=-1.0), "samples_seen"),
        (dict(samples_seen=float("nan")), "samples_seen"),
        (dict(bucket_size=0.0), "bucket_size"),
        (dict(b=[0.1]), "b"),
        (dict(b=[float("nan")]), "b"),
        (dict(tau=[-1.0]), "tau"),
        (dict(a=0.0), "a"),
        (dict(d=-0.1), "d"),
        (dict(d=float("nan")), "d"),
        (dict(b=[-0.1, -0.2]), "b and tau"),
        (dict(method="magic"), "method"),
    ],
)
def test_validation_names_the_field(kwargs, field):
    args = dict(samples_seen=1e6, bucket_size=1e5, a=0.1, b=[-0.1], tau=[2.0], d=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{field}"):
        combined_error(**args)
