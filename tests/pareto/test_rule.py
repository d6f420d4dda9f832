"""mmpareto_combine against a direct dense computation of the rule (its slow twin)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from curatorch.pareto import mmpareto_combine, pair_stats

SHAPES = [(7, 5), (5,), (3, 2, 2), (1,)]


def dense_rule(g_m, g_u, gamma=1.5, scale="tensor"):
    """The rule written out in float64 numpy, branch by branch."""
    m = [np.asarray(t, dtype=np.float64) for t in g_m]
    u = [np.asarray(t, dtype=np.float64) for t in g_u]
    fm = np.concatenate([t.ravel() for t in m])
    fu = np.concatenate([t.ravel() for t in u])
    mm, mu, uu = fm @ fm, fm @ fu, fu @ fu
    cos = mu / math.sqrt(mm * uu) if mm * uu > 0 else 0.0
    if cos > 0:
        a_m = 0.5
    elif mu >= mm:
        a_m = 0.999
    elif mu >= uu:
        a_m = 0.001
    else:
        a_m = (uu - mu) / np.sum((fm - fu) ** 2)
    a_u = 1 - a_m
    v = [2 * (a_m * a + a_u * b) for a, b in zip(m, u, strict=True)]
    s = [a + b for a, b in zip(m, u, strict=True)]
    if scale == "tensor":
        out = []
        for vt, st in zip(v, s, strict=True):
            nv = np.linalg.norm(vt)
            out.append(gamma * vt * (max(1.0, np.linalg.norm(st) / nv) if nv > 0 else 1.0))
        return out
    nv = math.sqrt(sum(np.sum(t**2) for t in v))
    ns = math.sqrt(sum(np.sum(t**2) for t in s))
    f = max(1.0, ns / nv) if nv > 0 else 1.0
    return [gamma * f * t for t in v]


def random_pair(gen: torch.Generator, conflict: bool | None):
    while True:
        g_m = [torch.randn(s, generator=gen, dtype=torch.float64) for s in SHAPES]
        g_u = [torch.randn(s, generator=gen, dtype=torch.float64) * 2 for s in SHAPES]
        if conflict is None or pair_stats(g_m, g_u).conflict == conflict:
            return g_m, g_u


@pytest.mark.parametrize("scale", ["tensor", "encoder"])
@pytest.mark.parametrize("conflict", [True, False])
def test_combine_equals_dense_rule(conflict: bool, scale: str) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        g_m, g_u = random_pair(gen, conflict)
        gamma = float(torch.rand((), generator=gen)) + 0.5
        got = mmpareto_combine(g_m, g_u, gamma, scale=scale)
        want = dense_rule(g_m, g_u, gamma, scale)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a.numpy(), b, rtol=1e-10, atol=1e-12)


def test_combine_float32_matches_dense() -> None:
    gen = torch.Generator().manual_seed(2)
    g_m, g_u = random_pair(gen, True)
    got = mmpareto_combine([t.float() for t in g_m], [t.float() for t in g_u])
    assert all(t.dtype == torch.float32 for t in got)
    for a, b in zip(got, dense_rule(g_m, g_u), strict=True):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-5)


def test_no_conflict_is_gamma_times_sum() -> None:
    g = [torch.randn(4, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)]
    h = [2 * t + 0.01 for t in g]
    out = mmpareto_combine(g, h, gamma=1.5)
    for o, a, b in zip(out, g, h, strict=True):
        torch.testing.assert_close(o, 1.5 * (a + b))


def _inner(a, b) -> float:
    return float(sum((x * y).sum() for x, y in zip(a, b, strict=True)))


def test_conflict_result_is_non_negative_against_both() -> None:
    gen = torch.Generator().manual_seed(3)
    for _ in range(60):
        g_m, g_u = random_pair(gen, True)
        # one rescaling factor for the encoder: guaranteed
        out = mmpareto_combine(g_m, g_u, scale="encoder")
        assert _inner(out, g_m) >= -1e-9 and _inner(out, g_u) >= -1e-9
        # the authors' per-tensor rescaling, single-tensor encoder: guaranteed too
        one_m, one_u = [g_m[0]], [g_u[0]]
        if pair_stats(one_m, one_u).conflict:
            out1 = mmpareto_combine(one_m, one_u)
            assert _inner(out1, one_m) >= -1e-9 and _inner(out1, one_u) >= -1e-9


def test_per_tensor_rescaling_can_break_the_guarantee() -> None:
    """Documented limitation of the authors' per-tensor rescaling (docs/pareto.md)."""
    f64 = torch.float64
    g_m = [torch.tensor([1.0, -1.0], dtype=f64), torch.tensor([3.0], dtype=f64)]
    g_u = [torch.tensor([-1.0, 1.0], dtype=f64), torch.tensor([-1.0], dtype=f64)]
    assert pair_stats(g_m, g_u).conflict
    out = mmpareto_combine(g_m, g_u, scale="tensor")
    enc = mmpareto_combine(g_m, g_u, scale="encoder")
    assert min(_inner(enc, g_m), _inner(enc, g_u)) >= 0
    assert min(_inner(out, g_m), _inner(out, g_u)) < 0


@pytest.mark.parametrize("which", ["both", "m", "u"])
def test_zero_gradients_give_no_nan(which: str) -> None:
    z = [torch.zeros(3, 2), torch.zeros(2)]
    r = [torch.randn(3, 2), torch.randn(2)]
    g_m = z if which in ("both", "m") else r
    g_u = z if which in ("both", "u") else r
    for scale in ("tensor", "encoder"):
        out = mmpareto_combine(g_m, g_u, scale=scale)
        assert all(torch.isfinite(t).all() for t in out)
    if which == "both":
        assert all((t == 0).all() for t in out)


def test_validation_names_the_parameter() -> None:
    g = [torch.ones(2)]
    with pytest.raises(ValueError, match="gamma"):
        mmpareto_combine(g, g, gamma=0.0)
    with pytest.raises(ValueError, match="scale"):
        mmpareto_combine(g, g, scale="layer")
    with pytest.raises(ValueError, match="same shape"):
        mmpareto_combine(g, [torch.ones(3)])
    with pytest.raises(ValueError, match="same tensors"):
        mmpareto_combine(g, g + g)
