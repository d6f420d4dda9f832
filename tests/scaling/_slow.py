"""Slow twins of the law: plain loops over passes, written from the formulas in the issue
(one scalar at a time), to check the vectorised functions against."""

from __future__ import annotations

import math
from collections.abc import Sequence

NORM = 1e5


def utility_error(
    n: float, N: float, a: float, b: Sequence[float], tau: Sequence[float], d: float
) -> float:
    """Combined utility law for ``m = len(b)`` buckets of ``N`` samples each."""
    m = len(b)
    pool = m * N
    K = int(n // pool)

    def b_eff(k: int) -> float:
        return sum(bi * 0.5 ** (k / (m * ti)) for bi, ti in zip(b, tau, strict=False)) / m

    y = (a * min(n, pool) / NORM) ** b_eff(0) + d
    for k in range(1, K + 1):
        ratio = min((k + 1) * pool, n) / (k * pool)
        if ratio != 1.0:
            y *= ratio ** b_eff(k)
    return y


def data_error(
    n: float, N: float, a: float, b: Sequence[float], tau: Sequence[float], d: float
) -> float:
    """Combined effective-data law for ``m = len(b)`` buckets of ``N`` samples each."""
    m = len(b)
    pool = m * N
    K = int(n // pool)
    deltas = [[0.5 ** (k / (m * t)) for t in tau] for k in range(K + 1)]
    s_prev = 0.0
    y = 1.0
    for k in range(K + 1):
        in_pass = min((k + 1) * pool, n) - k * pool
        s = s_prev + (a * in_pass / NORM) * sum(deltas[k]) / m
        be = sum(bi * dk for bi, dk in zip(b, deltas[k], strict=False)) / sum(deltas[k])
        if k == 0:
            y = s**be
        elif s != s_prev:
            y *= (s / s_prev) ** be
        s_prev = s
    return y + d


def effective(n: float, N: float, tau: float) -> float:
    total, k = 0.0, 0
    while k * N < n:
        total += (min((k + 1) * N, n) - k * N) * 0.5 ** (k / tau)
        k += 1
    return total


def close(x: float, y: float, tol: float = 1e-12) -> bool:
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)
