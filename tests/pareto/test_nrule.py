"""The n-objective MMPareto rule and its min-norm solvers, against slow twins."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from curatorch.pareto import (
    PairStats,
    min_norm_simplex,
    mmpareto_combine,
    mmpareto_combine_n,
    mmpareto_weights,
    mmpareto_weights_n,
)
from curatorch.pareto.rule import stationary

SHAPES = [(6, 4), (5,), (2, 3, 2)]


def random_grams(seed: int, count: int):
    """Gram matrices of n random vectors in d dims, some rank-deficient (n > d)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 8))
        d = int(rng.integers(1, 10))
        x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=(n, 1))
        yield x, x @ x.T


def brute_min_norm(x: np.ndarray, steps: int = 60) -> float:
    """|d|^2 of the min-norm hull point by a dense grid search over simplex vertices'
    pairs refined by the exact two-point formula (a third, independent estimate)."""
    best = min(float(v @ v) for v in x)
    for a, b in itertools.combinations(x, 2):
        diff = a - b
        den = float(diff @ diff)
        t = 0.0 if den == 0 else float(np.clip((b @ b - a @ b) / den, 0, 1))
        p = t * a + (1 - t) * b
        best = min(best, float(p @ p))
    return best


@pytest.mark.parametrize("solver", ["wolfe", "frank_wolfe"])
def test_solvers_agree_with_enumeration(solver: str) -> None:
    tol = 1e-9 if solver == "wolfe" else 2e-3  # Frank-Wolfe converges like 1/t: approximate
    for x, gram in random_grams(0, 200):
        w_ref = min_norm_simplex(gram, solver="enumerate")
        w = min_norm_simplex(gram, solver=solver, tol=1e-12 if solver == "wolfe" else 1e-8)
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-9
        val, ref = float(w @ gram @ w), float(w_ref @ gram @ w_ref)
        scale = float(np.max(np.diag(gram)))
        assert ref <= val + 1e-9 * scale  # the enumeration is the minimum
        assert val <= ref + tol * scale
        assert val <= brute_min_norm(x) + tol * scale  # never worse than any edge


def test_min_norm_point_satisfies_optimality() -> None:
    """``g_i . d >= |d|^2`` for every i: the property the no-conflict guarantee rests on."""
    for x, gram in random_grams(1, 200):
        w = min_norm_simplex(gram)
        d = w @ x
        scale = float(np.max(np.diag(gram)))
        assert np.all(x @ d >= d @ d - 1e-9 * scale)


def test_two_objective_weights_equal_the_closed_form() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        x = rng.normal(size=(2, 5)) * rng.uniform(0.1, 3.0, size=(2, 1))
        gram = x @ x.T
        got = mmpareto_weights_n(gram)
        want = mmpareto_weights(PairStats(gram[0, 0], gram[0, 1], gram[1, 1]))
        np.testing.assert_allclose(got.weights, want, rtol=1e-9, atol=1e-12)
        assert got.mult == 2 and got.conflict == (gram[0, 1] <= 0)


def dense_rule_n(grads, gamma=1.5, scale="tensor"):
    """The n-objective rule in float64 numpy, with the enumeration solver."""
    g = [[np.asarray(t, dtype=np.float64) for t in obj] for obj in grads]
    flat = np.stack([np.concatenate([t.ravel() for t in obj]) for obj in g])  # [n, N]
    gram = flat @ flat.T
    live = [i for i in range(len(g)) if gram[i, i] > 0]
    w = np.zeros(len(g))
    sub = gram[np.ix_(live, live)]
    if any(sub[i, j] <= 0 for i in range(len(live)) for j in range(len(live)) if i != j):
        w[live] = min_norm_simplex(sub, solver="enumerate")
    elif live:
        w[live] = 1 / len(live)
    coeff = len(live) * w
    v = [sum(c * obj[j] for c, obj in zip(coeff, g, strict=True)) for j in range(len(g[0]))]
    s = [sum(obj[j] for obj in g) for j in range(len(g[0]))]
    if scale == "tensor":
        out = []
        for vt, st in zip(v, s, strict=True):
            nv = np.linalg.norm(vt)
            out.append(gamma * vt * (max(1.0, np.linalg.norm(st) / nv) if nv > 0 else 1.0))
        return out
    nv = np.sqrt(sum(np.sum(t**2) for t in v))
    ns = np.sqrt(sum(np.sum(t**2) for t in s))
    return [gamma * t * (max(1.0, ns / nv) if nv > 0 else 1.0) for t in v]


def random_objectives(gen: torch.Generator, n: int, shapes=SHAPES, conflict: bool | None = None):
    # without conflict wanted, a shared component makes conflict-free draws likely
    shared = 3.0 if conflict is False else 0.0
    while True:
        base = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        grads = [
            [
                (torch.randn(s, generator=gen, dtype=torch.float64) + shared * b) * (i + 1)
                for s, b in zip(shapes, base, strict=True)
            ]
            for i in range(n)
        ]
        flat = torch.stack([torch.cat([t.flatten() for t in g]) for g in grads])
        gram = flat @ flat.T
        has = bool((gram[~torch.eye(n, dtype=torch.bool)] <= 0).any())
        if conflict is None or has == conflict:
            return grads


@pytest.mark.parametrize("scale", ["tensor", "encoder"])
@pytest.mark.parametrize("n", [3, 4, 6])
def test_combine_n_equals_dense_rule(n: int, scale: str) -> None:
    gen = torch.Generator().manual_seed(n)
    for conflict in (True, False, None):
        for _ in range(5):
            grads = random_objectives(gen, n, conflict=conflict)
            got = mmpareto_combine_n(grads, 1.3, scale=scale)
            for a, b in zip(got, dense_rule_n(grads, 1.3, scale), strict=True):
                np.testing.assert_allclose(a.numpy(), b, rtol=1e-8, atol=1e-10)


def test_combine_n_two_objectives_is_the_closed_form() -> None:
    gen = torch.Generator().manual_seed(5)
    for _ in range(10):
        g_m, g_u = random_objectives(gen, 2)
        for scale in ("tensor", "encoder"):
            got = mmpareto_combine_n([g_m, g_u], scale=scale)
            want = mmpareto_combine(g_m, g_u, scale=scale)
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
            # and the general n path on the same pair agrees with it
            dense = dense_rule_n([g_m, g_u], scale=scale)
            for a, b in zip(got, dense, strict=True):
                np.testing.assert_allclose(a.numpy(), b, rtol=1e-8, atol=1e-10)


def _inner(a, b) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))


@pytest.mark.parametrize("n", [3, 5])
def test_encoder_scale_never_conflicts_with_any_objective(n: int) -> None:
    gen = torch.Generator().manual_seed(10 + n)
    for _ in range(80):
        grads = random_objectives(gen, n, conflict=True)
        out = mmpareto_combine_n(grads, scale="encoder")
        norm = max(_inner(g, g) for g in grads)
        assert all(_inner(out, g) >= -1e-9 * norm for g in grads)
        single = [[g[0]] for g in grads]  # one tensor: the per-tensor mode keeps it too
        out1 = mmpareto_combine_n(single, scale="tensor")
        assert all(_inner(out1, g) >= -1e-9 * norm for g in single)


def test_tensor_scale_can_break_the_guarantee_with_several_tensors() -> None:
    """The authors' per-tensor rescaling trades the guarantee away (docs/pareto.md)."""
    gen = torch.Generator().manual_seed(3)
    broken = 0
    for _ in range(400):
        grads = random_objectives(gen, 3, shapes=[(3,), (1,)], conflict=True)
        out = mmpareto_combine_n(grads, scale="tensor")
        broken += min(_inner(out, g) for g in grads) < 0
    assert broken > 0


def test_zero_objectives_are_dropped() -> None:
    gen = torch.Generator().manual_seed(4)
    g1, g2 = random_objectives(gen, 2, conflict=True)
    zero = [torch.zeros_like(t) for t in g1]
    for scale in ("tensor", "encoder"):
        got = mmpareto_combine_n([g1, zero, g2], scale=scale)
        want = mmpareto_combine(g1, g2, scale=scale)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        alone = mmpareto_combine_n([zero, g1, zero], gamma=1.5, scale=scale)
        for a, b in zip(alone, g1, strict=True):
            torch.testing.assert_close(a, 1.5 * b)
        nothing = mmpareto_combine_n([zero, zero, zero], scale=scale)
        assert all((t == 0).all() for t in nothing)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pareto_stationary_objectives_give_zero(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(6)
    g = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    h = [torch.randn(s, generator=gen, dtype=dtype) for s in SHAPES]
    anti = [-2 * t for t in g]  # g and -2g: the hull holds 0 whatever h is
    for scale in ("tensor", "encoder"):
        out = mmpareto_combine_n([g, h, anti], scale=scale)
        assert all(torch.isfinite(t).all() and (t == 0).all() for t in out)
    d = mmpareto_weights_n(np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert d.conflict and d.stationary


def test_validation_names_the_parameter() -> None:
    g = [[torch.ones(2)], [torch.ones(2)], [-torch.ones(2)]]
    with pytest.raises(ValueError, match="gamma"):
        mmpareto_combine_n(g, gamma=0)
    with pytest.raises(ValueError, match="scale"):
        mmpareto_combine_n(g, scale="row")
    with pytest.raises(ValueError, match=r"grads\[2\]\[0\]"):
        mmpareto_combine_n([[torch.ones(2)], [torch.ones(2)], [torch.ones(3)]])
    with pytest.raises(ValueError, match=r"grads\[1\]"):
        mmpareto_combine_n([[torch.ones(2)], [], [torch.ones(2)]])
    with pytest.raises(ValueError, match="solver"):
        min_norm_simplex(np.eye(3), solver="newton")
    with pytest.raises(ValueError, match="symmetric"):
        min_norm_simplex(np.array([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        min_norm_simplex(np.ones((2, 3)))


def test_large_gradients_do_not_break_the_solver() -> None:
    """Found by the fuzz test: gradients of norm ~1e6 (Gram entries ~1e13 next to the
    constraint's ones) once gave a vertex instead of the min-norm point. The weights are
    scale-invariant and the solver now scales the Gram first."""
    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn((), generator=gen), torch.randn(4, generator=gen)] for _ in range(6)]
    grads[1] = [-2.5 * t for t in grads[0]]  # 0 is in the hull: Pareto-stationary
    big = [[1e6 * t for t in g] for g in grads]
    flat = torch.stack([torch.cat([t.reshape(-1) for t in g]) for g in big]).double()
    for gram in (flat @ flat.T, 1e-12 * (flat @ flat.T)):
        w = min_norm_simplex(gram.numpy())
        d = torch.as_tensor(w) @ flat
        assert float(d @ d) <= 1e-9 * float((flat * flat).sum(1).max())
    out = mmpareto_combine_n(big, scale="encoder")
    assert all((t == 0).all() for t in out)


def test_a_short_gradient_does_not_make_the_group_stationary() -> None:
    """Review finding: a threshold on the *longest* gradient zeroed any conflicting group
    holding one short gradient; |d| <= min |g_i|, so the test is on the shortest."""
    e = torch.eye(3)
    grads = [[e[0]], [e[0] + e[1]], [-2e-3 * e[0] + 2e-3 * e[2]]]
    d = mmpareto_weights_n(np.array([[float(a[0] @ b[0]) for b in grads] for a in grads]))
    assert d.conflict and not d.stationary
    out = mmpareto_combine_n(grads, scale="encoder")
    assert float(out[0].norm()) > 1.0
    assert all(float(out[0] @ g[0]) > 0 for g in grads)


def test_two_live_objectives_use_the_closed_form_stationarity() -> None:
    rng = np.random.default_rng(9)
    for ratio in (1.0, 0.01, 100.0):
        for sin in (0.1, 1e-3, 1e-5):
            a = rng.normal(size=6)
            a /= np.linalg.norm(a)
            b = rng.normal(size=6)
            b -= (b @ a) * a
            b /= np.linalg.norm(b)
            u = ratio * (-np.sqrt(1 - sin**2) * a + sin * b)  # angle: pi - asin(sin)
            gram = np.array([[a @ a, a @ u], [u @ a, u @ u]])
            pair = PairStats(gram[0, 0], gram[0, 1], gram[1, 1])
            for dtype in (torch.float32, torch.float64):
                got = mmpareto_weights_n(gram, dtype=dtype)
                assert got.stationary == stationary(pair, dtype), (ratio, sin, dtype)
                # a zero third row is dropped: the same decision
                big = np.zeros((3, 3))
                big[:2, :2] = gram
                assert mmpareto_weights_n(big, dtype=dtype).stationary == got.stationary


def three_point_grams(seed: int, count: int):
    """Gram matrices of three points: general (interior or boundary minimum), in a line,
    in one or two dimensions, with duplicates, a zero point, and wildly different scales."""
    rng = np.random.default_rng(seed)
    for k in range(count):
        d = int(rng.integers(1, 6))
        x = rng.normal(size=(3, d)) * rng.uniform(0.01, 10.0, size=(3, 1))
        kind = k % 6
        if kind == 1:  # collinear: a degenerate triangle
            x[2] = x[0] + rng.uniform(-2, 2) * (x[1] - x[0])
        elif kind == 2:  # a duplicate point
            x[2] = x[0]
        elif kind == 3:  # the origin is a point: the minimum is 0 at a vertex
            x[1] = 0.0
        elif kind == 4:  # around the origin: an interior minimum in 2 dims
            x = rng.normal(size=(3, 2))
        elif kind == 5:
            x[0] *= 1e6
        yield x, x @ x.T


def test_closed_form_three_points_equals_wolfe_and_enumeration() -> None:
    """The slow twins: Wolfe's algorithm and every support set's KKT point. The minimum
    and the min-norm point are unique (the weights only for a proper triangle)."""
    from curatorch.pareto.nrule import _min_norm

    for k, (x, gram) in enumerate(three_point_grams(0, 600)):
        w = min_norm_simplex(gram, solver="closed")
        assert w.min() >= 0 and abs(w.sum() - 1) < 1e-12
        scale = float(np.max(np.diag(gram)))
        val, point = float(w @ gram @ w), w @ x
        for twin in ("wolfe", "enumerate"):
            w_ref = _min_norm(gram, twin)
            assert abs(val - float(w_ref @ gram @ w_ref)) <= 1e-12 * scale, (k, twin)
            assert np.linalg.norm(point - w_ref @ x) <= 1e-6 * np.sqrt(scale), (k, twin)
        assert val <= brute_min_norm(x) + 1e-12 * scale
        edges = np.vstack([x[0] - x[2], x[1] - x[2]])
        sv = np.linalg.svd(edges, compute_uv=False)
        if len(sv) == 2 and sv[1] > 1e-2 * sv[0]:  # a proper, well-shaped triangle
            np.testing.assert_allclose(w, _min_norm(gram, "wolfe"), atol=1e-7, err_msg=str(k))


def test_closed_solver_takes_more_than_three_points_to_wolfe() -> None:
    for _, gram in random_grams(3, 100):
        if gram.shape[0] != 3:
            np.testing.assert_array_equal(
                min_norm_simplex(gram, solver="closed"), min_norm_simplex(gram, solver="wolfe")
            )


def test_mmpareto_n_with_the_closed_solver_equals_wolfe() -> None:
    gen = torch.Generator().manual_seed(4)
    for _ in range(100):
        grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]]
        grads += [
            [-0.6 * t + torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in grads[0]]
        ]
        grads += [[torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]]
        want = mmpareto_combine_n(grads, solver="wolfe")
        got = mmpareto_combine_n(grads, solver="closed")
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
