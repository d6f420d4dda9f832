"""Fuzzed gradient integrators: random shapes, zero, parallel, anti-parallel and nearly
anti-parallel gradients give finite outputs that never conflict with either objective
(MMPareto with one rescaling factor per encoder, or with one tensor; MGDA; PCGrad), and
the same for the n-objective rule."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from curatorch.pareto import (
    INTEGRATORS,
    build_integrator,
    min_norm_weights,
    mmpareto_combine,
    mmpareto_combine_n,
    pair_stats,
)

FAST = settings(max_examples=80, deadline=None)

KINDS = ("random", "zero_m", "zero_u", "zero_both", "parallel", "anti", "near_anti")

shapes = st.lists(
    st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4
)


def _inner(a, b) -> float:
    return math.fsum(float((x.double() * y.double()).sum()) for x, y in zip(a, b, strict=True))


def _norm(a) -> float:
    return math.sqrt(max(_inner(a, a), 0.0))


def _pair(kind: str, shape_list, dtype, magnitude: float, ratio: float, noise: float, seed: int):
    """``(g_m, g_u)`` lists of the given kind (``ratio``: |g_u| / |g_m|)."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda: [torch.randn(s, generator=g, dtype=torch.float64) for s in shape_list]  # noqa: E731
    g_m, other = draw(), draw()
    if kind == "random":
        g_u = [ratio * t for t in other]
    elif kind == "parallel":
        g_u = [ratio * t for t in g_m]
    elif kind == "anti":
        g_u = [-ratio * t for t in g_m]
    elif kind == "near_anti":
        g_u = [-ratio * t + noise * ratio * o for t, o in zip(g_m, other, strict=True)]
    else:
        g_u = [ratio * t for t in other]
    if kind in ("zero_m", "zero_both"):
        g_m = [torch.zeros_like(t) for t in g_m]
    if kind in ("zero_u", "zero_both"):
        g_u = [torch.zeros_like(t) for t in g_u]
    scale = lambda ts: [(magnitude * t).to(dtype) for t in ts]  # noqa: E731
    return scale(g_m), scale(g_u)


def _tolerance(dtype) -> float:
    return 1e3 * torch.finfo(dtype).eps


def _assert_no_conflict(out, g_m, g_u, dtype, what: str) -> None:
    """``out.g >= 0`` for both objectives, up to rounding relative to the norms."""
    n_out = _norm(out)
    tol = _tolerance(dtype)
    for name, g in (("g_m", g_m), ("g_u", g_u)):
        assert _inner(out, g) >= -tol * n_out * _norm(g), f"{what}: conflicts with {name}"


@FAST
@given(
    shape_list=shapes,
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    # squared norms stay normal numbers in the dtype (float32: 1e-8 .. 1e8)
    log_mag=st.integers(-8, 8),
    ratio=st.floats(1e-3, 1e3),
    noise=st.sampled_from([1e-12, 1e-8, 1e-5, 1e-3, 1e-1]),
    gamma=st.floats(0.1, 10.0),
    scale=st.sampled_from(["tensor", "encoder"]),
    seed=st.integers(0, 2**16),
)
def test_mmpareto_combine_finite_and_conflict_free(
    shape_list, kind, dtype, log_mag, ratio, noise, gamma, scale, seed
) -> None:
    g_m, g_u = _pair(kind, shape_list, dtype, 10.0**log_mag, ratio, noise, seed)
    out = mmpareto_combine(g_m, g_u, gamma, scale=scale)
    assert [t.shape for t in out] == [t.shape for t in g_m]
    assert all(t.dtype == dtype and torch.isfinite(t).all() for t in out)
    stats = pair_stats(g_m, g_u)
    if kind == "zero_both":
        assert all((t == 0).all() for t in out)
    if not stats.conflict:  # no conflict: gamma (g_m + g_u)
        tol = _tolerance(dtype)
        for o, a, b in zip(out, g_m, g_u, strict=True):
            torch.testing.assert_close(o, gamma * (a + b), rtol=tol, atol=tol * _norm(g_m + g_u))
    elif scale == "encoder" or len(shape_list) == 1:
        _assert_no_conflict(out, g_m, g_u, dtype, f"mmpareto/{scale}")
    # the result is never longer than gamma times the longer of the uniform sum and v
    bound = gamma * (_norm(g_m) + _norm(g_u)) * 2 * (1 + _tolerance(dtype))
    assert _norm(out) <= bound + 1e-30


@FAST
@given(
    kind=st.sampled_from(KINDS),
    ratio=st.floats(1e-2, 1e2),
    noise=st.sampled_from([1e-12, 1e-6, 1e-2]),
    seed=st.integers(0, 2**16),
)
def test_min_norm_weights_are_convex(kind, ratio, noise, seed) -> None:
    g_m, g_u = _pair(kind, [(3, 2), (4,)], torch.float64, 1.0, ratio, noise, seed)
    a_m, a_u = min_norm_weights(pair_stats(g_m, g_u))
    assert 0.0 <= a_m <= 1.0 and a_u == pytest.approx(1.0 - a_m)


def _encoder_losses(in_dim, out_dim, kind, ratio, noise, seed):
    """A linear encoder with g_m and g_u of the given kind: ``L = sum(z * t)`` is linear in
    ``t``, so ``t_u = -c t_m`` makes ``g_u = -c g_m``."""
    g = torch.Generator().manual_seed(seed)
    enc = nn.Sequential(nn.Linear(in_dim, out_dim), nn.Tanh(), nn.Linear(out_dim, 2)).double()
    head = nn.Linear(2, 3).double()
    x = torch.randn(5, in_dim, generator=g, dtype=torch.float64)
    t_m = torch.randn(5, 2, generator=g, dtype=torch.float64)
    other = torch.randn(5, 2, generator=g, dtype=torch.float64)
    t_u = {
        "random": ratio * other,
        "parallel": ratio * t_m,
        "anti": -ratio * t_m,
        "near_anti": -ratio * t_m + noise * other,
        "zero_m": ratio * other,
        "zero_u": 0 * other,
        "zero_both": 0 * other,
    }[kind]
    if kind in ("zero_m", "zero_both"):
        t_m = 0 * t_m
    z = enc(x)
    lm = (z * t_m).sum() + head(z.detach()).sum() * 0.1
    lu = (z * t_u).sum()
    return enc, head, lm, lu


@FAST
@given(
    method=st.sampled_from(sorted(INTEGRATORS)),
    in_dim=st.integers(1, 6),
    out_dim=st.integers(1, 6),
    kind=st.sampled_from(KINDS),
    ratio=st.floats(1e-2, 1e2),
    noise=st.sampled_from([1e-12, 1e-8, 1e-4, 1e-1]),
    diagnose=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_integrators_fill_finite_grads_without_conflict(
    method, in_dim, out_dim, kind, ratio, noise, diagnose, seed
) -> None:
    enc, head, lm, lu = _encoder_losses(in_dim, out_dim, kind, ratio, noise, seed)
    params = list(enc.parameters())
    g_m = torch.autograd.grad(lm, params, retain_graph=True)
    g_u = torch.autograd.grad(lu, params, retain_graph=True)
    opts: dict = {}
    if method == "mmpareto":
        opts = {"scale": "encoder"}
    elif method == "ogm_ge":
        opts = {"generator": torch.Generator().manual_seed(seed)}
    encoders = {"m": params}
    if method == "ogm_ge":  # needs two modalities: a second, independent encoder
        encoders["n"] = list(head.parameters())
    integ = build_integrator(
        method, encoders=encoders, heads=[] if method == "ogm_ge" else head.parameters(), **opts
    )
    unimodal = {"m": lu}
    conf = None
    if method == "ogm_ge":
        unimodal["n"] = head(torch.ones(1, 2, dtype=torch.float64)).sum()
        conf = {"m": torch.tensor(float(ratio)), "n": torch.tensor(1.0)}
    integ.backward(
        multimodal_loss=lm, unimodal_losses=unimodal, confidences=conf, diagnose=diagnose
    )
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    assert all(torch.isfinite(t).all() for t in grads)
    if method in ("mmpareto", "mgda", "pcgrad") and pair_stats(list(g_m), list(g_u)).conflict:
        # MGDA and PCGrad are not rescaled: their rounding noise stays at rounding level
        # against (|g_m| + |g_u|)^2 (MMPareto would blow it up to |g_m + g_u| |g|)
        tol = _tolerance(torch.float64)
        floor = tol * (_norm(g_m) + _norm(g_u)) ** 2
        n_out = _norm(grads)
        for name, g in (("g_m", g_m), ("g_u", g_u)):
            assert _inner(grads, g) >= -tol * n_out * _norm(g) - floor, f"{method} vs {name}"


N_KINDS = ("random", "one_zero", "all_zero", "anti_pair", "near_anti_pair", "shared")


def _objectives(kind, n, shape_list, dtype, magnitude, noise, seed):
    """``n`` objectives' per-tensor gradients of the given kind."""
    g = torch.Generator().manual_seed(seed)
    draw = lambda: [torch.randn(s, generator=g, dtype=torch.float64) for s in shape_list]  # noqa: E731
    grads = [draw() for _ in range(n)]
    if kind == "shared":  # a common component: often no pair conflicts
        base = draw()
        grads = [[3 * b + t for b, t in zip(base, obj, strict=True)] for obj in grads]
    elif kind == "one_zero":
        grads[0] = [torch.zeros_like(t) for t in grads[0]]
    elif kind == "all_zero":
        grads = [[torch.zeros_like(t) for t in obj] for obj in grads]
    elif kind in ("anti_pair", "near_anti_pair") and n >= 2:  # g_1 = -c g_0 (+ noise)
        eps = noise if kind == "near_anti_pair" else 0.0
        grads[1] = [-2.5 * t + eps * o for t, o in zip(grads[0], grads[1], strict=True)]
    return [[(magnitude * t).to(dtype) for t in obj] for obj in grads]


@FAST
@given(
    n=st.integers(1, 6),
    shape_list=shapes,
    kind=st.sampled_from(N_KINDS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    log_mag=st.integers(-6, 6),
    noise=st.sampled_from([1e-12, 1e-6, 1e-2]),
    gamma=st.floats(0.1, 10.0),
    scale=st.sampled_from(["tensor", "encoder"]),
    seed=st.integers(0, 2**16),
)
def test_mmpareto_combine_n_finite_and_conflict_free(
    n, shape_list, kind, dtype, log_mag, noise, gamma, scale, seed
) -> None:
    """The n-objective rule: finite, shaped like the inputs, zero for zero inputs, never
    against any objective with one factor per group (or one tensor)."""
    grads = _objectives(kind, n, shape_list, dtype, 10.0**log_mag, noise, seed)
    out = mmpareto_combine_n(grads, gamma, scale=scale)
    assert [t.shape for t in out] == [t.shape for t in grads[0]]
    assert all(t.dtype == dtype and torch.isfinite(t).all() for t in out)
    if kind == "all_zero":
        assert all((t == 0).all() for t in out)
    if scale == "encoder" or len(shape_list) == 1:
        n_out, tol = _norm(out), _tolerance(dtype)
        for i, g in enumerate(grads):
            assert _inner(out, g) >= -tol * n_out * _norm(g), f"conflicts with objective {i}"
    total = sum(_norm(g) for g in grads)
    assert _norm(out) <= gamma * total * len(grads) * (1 + _tolerance(dtype)) + 1e-30
