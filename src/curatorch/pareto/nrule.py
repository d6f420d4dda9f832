"""The MMPareto rule for n objectives on one shared parameter group.

A parameter group (one encoder, a shared trunk, the shared encoder of a multi-task model)
receives the gradients ``g_1 .. g_n`` of ``n`` objectives, each a list of per-tensor
gradients over the group's parameters (inner products run over the whole list). The
two-objective rule (:mod:`curatorch.pareto.rule`) generalises where the paper's reasoning
applies, which is all of it: the direction must not conflict with any objective, and the
step must not shrink because the objectives disagree.

1. **Direction.** Objectives whose gradient is exactly zero on the group are dropped
   (they neither conflict nor pull). With ``k`` left: when no pair conflicts
   (``g_i . g_j > 0`` for all ``i != j``), equal weights ``1/k``; otherwise the weights of
   the min-norm element ``d = sum_i w_i g_i`` of the convex hull of the ``g_i``
   (``w >= 0``, ``sum w = 1``; :func:`min_norm_simplex`). ``v = k sum_i w_i g_i`` (the
   factor ``k`` makes equal weights the plain sum, as the factor 2 does for two).
2. **Magnitude**, per parameter tensor (``scale="tensor"``, the authors' choice) or over
   the whole group (``"encoder"``): ``gamma * v * max(1, |sum_i g_i| / |v|)``.

Guarantees. The min-norm element satisfies ``g_i . d >= |d|^2 >= 0`` for every ``i`` (its
optimality condition), and without conflict ``g_i . sum_j g_j = |g_i|^2 + sum_{j != i}
g_i . g_j > 0``; so with ``scale="encoder"`` (one positive factor) the result never has a
negative inner product with any objective's gradient. With ``scale="tensor"`` each tensor
gets its own factor and that can fail in conflict, as for two objectives (the authors'
trade-off, measured in ``docs/pareto.md``); with a single tensor it holds.

Edge cases. All gradients zero: zero. One non-zero gradient: ``gamma * g``. In conflict,
a min-norm element that is rounding noise (``|d|^2 <= 100 eps min_i |g_i|^2`` over the
non-zero gradients, ``eps`` of the gradients' dtype, float32's for narrower ones) means the
objectives are Pareto-stationary on this group: zero (the rescaling would blow the noise up
to ``gamma |sum g|`` in a random direction). The threshold is relative to the shortest
gradient because ``|d| <= min_i |g_i|`` always.

For two non-zero gradients this is exactly :func:`curatorch.pareto.mmpareto_combine`:
:func:`mmpareto_weights_n` then uses the closed form's weights and its stationarity test
(``sin^2 <= 100 eps``); the authors' 0.999/0.001 clamps only arise with a zero gradient,
which is dropped here with the same result; :func:`mmpareto_combine_n` calls the closed form
as its fast path, and the tests check the general path against it.

Solvers on the ``n x n`` Gram matrix ``G_ij = g_i . g_j`` (float64, on the host):
``"wolfe"`` (Wolfe's min-norm-point algorithm, exact in finitely many steps, the default),
``"closed"`` (three points in closed form, exact, several times cheaper than Wolfe's
iterations on the host; more than three go to Wolfe), ``"enumerate"`` (every support set's
KKT system, the slow exact twin, n <= 12) and ``"frank_wolfe"`` (Sener & Koltun's
Algorithm 2, as torchjd's MGDA, approximate). ``"closed"`` and ``"wolfe"`` find the same
point; their weights agree to rounding where the point has unique weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from curatorch.pareto.rule import (
    DEFAULT_GAMMA,
    FlatLayout,
    PairStats,
    _check_gamma,
    _check_scale,
    mmpareto_combine,
    mmpareto_weights,
    rescale_flat,
)
from curatorch.pareto.rule import stationary as _pair_stationary

__all__ = [
    "SOLVERS",
    "NWeights",
    "check_gram",
    "gram_matrix",
    "min_norm_simplex",
    "mmpareto_combine_n",
    "mmpareto_weights_n",
]

SOLVERS = ("wolfe", "closed", "enumerate", "frank_wolfe")
_STATIONARY_EPS = 100.0
_ENUMERATE_MAX = 12


def _as_gram(gram: Tensor | np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    if isinstance(gram, Tensor):
        gram = gram.detach().to("cpu", torch.float64).numpy()
    g = np.asarray(gram, dtype=np.float64)
    return g


def check_gram(gram: Tensor | np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """``gram`` as a float64 ``[n, n]`` array, checked: square, n >= 1, finite,
    symmetric to rounding, non-negative diagonal."""
    g = _as_gram(gram)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] < 1:
        raise ValueError(f"gram must be a square [n, n] matrix with n >= 1, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError("gram must be finite, got NaN or inf entries")
    scale = max(float(np.max(np.abs(g))), 1e-300)
    if np.max(np.abs(g - g.T)) > 1e-6 * scale:
        raise ValueError("gram must be symmetric (G_ij = g_i . g_j), got an asymmetric matrix")
    if np.min(np.diag(g)) < 0:
        raise ValueError("gram must have a non-negative diagonal (squared norms)")
    return g


def gram_matrix(grads: Sequence[Sequence[Tensor]]) -> tuple[Tensor, FlatLayout]:
    """Flatten ``n`` objectives' per-tensor gradients into one ``[n, N]`` buffer (float32
    or wider) and return it with its layout; ``buffer @ buffer.T`` is the Gram matrix."""
    _check_grads(grads)
    layout = FlatLayout([t.shape for t in grads[0]])
    flat = torch.cat([t.reshape(-1) for g in grads for t in g])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return flat.view(len(grads), -1), layout


def _check_grads(grads: Sequence[Sequence[Tensor]]) -> None:
    if len(grads) < 1:
        raise ValueError("grads must hold at least one objective's gradients, got none")
    first = grads[0]
    if len(first) == 0:
        raise ValueError("grads[0] must hold at least one tensor, got an empty sequence")
    for i, g in enumerate(grads):
        if len(g) != len(first):
            raise ValueError(
                f"grads[{i}] must list the same tensors as grads[0], "
                f"got {len(g)} and {len(first)} tensors"
            )
        for j, (a, b) in enumerate(zip(g, first, strict=True)):
            if a.shape != b.shape:
                raise ValueError(
                    f"grads[{i}][{j}] must have the shape of grads[0][{j}], "
                    f"got {tuple(a.shape)} and {tuple(b.shape)}"
                )


# ------------------------------------------------------------------------ solvers
def _affine_min(g: np.ndarray, support: list[int]) -> np.ndarray:
    """Weights ``a`` (sum 1) of the point of least norm in the affine hull of the support
    points: ``a = G_S^+ 1 / (1' G_S^+ 1)`` (pseudo-inverse: duplicate points are fine)."""
    sub = g[support][:, support]
    k = len(support)
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = sub
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:  # a solve is ~3x cheaper than lstsq on these tiny systems
        sol = np.linalg.solve(kkt, rhs)
        if float(np.abs(kkt @ sol - rhs).max()) > 1e-9 * (1.0 + float(np.abs(sol).max())):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:  # singular: duplicate or affinely dependent points
        sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0]
    return sol[:k]


def _wolfe(g: np.ndarray, tol: float, max_iters: int) -> np.ndarray | None:
    """Wolfe's (1976) min-norm-point algorithm in Gram form (``g`` scaled so that its
    largest diagonal entry is 1); ``None`` when it has not converged in ``max_iters``."""
    n = g.shape[0]
    start = int(np.argmin(np.diag(g)))
    support, w = [start], np.array([1.0])
    for _ in range(max_iters):
        x_dot = g[:, support] @ w  # [n] x . p_j
        xx = float(w @ x_dot[support])
        j = int(np.argmin(x_dot))
        if j in support or x_dot[j] >= xx - tol:
            out = np.zeros(n)
            out[support] = w
            return out
        support, w = [*support, j], np.append(w, 0.0)
        for _ in range(len(support) + 1):  # minor cycles: each drops >= 1 point
            a = _affine_min(g, support)
            if np.all(a > tol):
                w = a
                break
            neg = a <= tol
            theta = min(1.0, float(np.min(w[neg] / np.maximum(w[neg] - a[neg], 1e-300))))
            w = w + theta * (a - w)
            keep = w > tol
            support = [s for s, k in zip(support, keep, strict=True) if k]
            w = w[keep] / w[keep].sum()
    return None


def _enumerate(g: np.ndarray, tol: float) -> np.ndarray:
    """Every support set's KKT point; the feasible one of least norm (the slow twin)."""
    n = g.shape[0]
    if n > _ENUMERATE_MAX:
        raise ValueError(f"solver 'enumerate' takes n <= {_ENUMERATE_MAX} objectives, got {n}")
    best, best_val = None, math.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            a = _affine_min(g, list(support))
            if np.any(a < -tol):
                continue
            w = np.zeros(n)
            w[list(support)] = np.clip(a, 0.0, None)
            w /= w.sum()
            val = float(w @ g @ w)
            if best is None or val < best_val:
                best, best_val = w, val
    return best if best is not None else np.full(n, 1.0 / n)


def _segment(gii: float, gij: float, gjj: float) -> tuple[float, float]:
    """``(t, |t p_i + (1 - t) p_j|^2)``: the point of the segment ``[p_i, p_j]`` nearest the
    origin, from their Gram entries (the two-point closed form, clamped to the segment)."""
    den = gii + gjj - 2.0 * gij  # |p_i - p_j|^2
    t = min(max((gjj - gij) / den, 0.0), 1.0) if den > 0 else float(gii <= gjj)
    return t, t * t * gii + 2.0 * t * (1.0 - t) * gij + (1.0 - t) * (1.0 - t) * gjj


def _closed_form3(g: np.ndarray) -> np.ndarray:
    """The min-norm point of three points' triangle in closed form (``g`` their ``3 x 3``
    Gram, scaled): the nearest point of their plane, from the ``2 x 2`` normal equations
    in the edge vectors ``p_1 - p_3``, ``p_2 - p_3``, when its barycentric weights are all
    positive, and each edge's nearest point (:func:`_segment`); the least of these
    candidates. A convex function's minimum over a triangle is at the plane's minimiser
    when that lies inside, else on the boundary, so the least candidate is the minimum
    (degenerate triangles have no interior candidate: an edge holds their minimum)."""
    rows = g.tolist()
    (g11, g12, g13), (_, g22, g23), (_, _, g33) = rows
    best_w, best = [0.0, 0.0, 1.0], g33
    for (i, j), (gii, gij, gjj) in (
        ((0, 1), (g11, g12, g22)),
        ((0, 2), (g11, g13, g33)),
        ((1, 2), (g22, g23, g33)),
    ):
        t, val = _segment(gii, gij, gjj)
        if val < best:
            best_w, best = [0.0, 0.0, 0.0], val
            best_w[i], best_w[j] = t, 1.0 - t
    a11, a22 = g11 - 2.0 * g13 + g33, g22 - 2.0 * g23 + g33
    a12 = g12 - g13 - g23 + g33
    det = a11 * a22 - a12 * a12
    if det > 1e-12 * max(a11 * a22, 1e-300):  # a proper triangle
        r1, r2 = g33 - g13, g33 - g23  # -(p_k - p_3) . p_3
        a, b = (r1 * a22 - r2 * a12) / det, (a11 * r2 - a12 * r1) / det
        w = [a, b, 1.0 - a - b]
        if min(w) > 0:
            val = sum(w[i] * w[j] * rows[i][j] for i in range(3) for j in range(3))
            if val < best:
                best_w = w
    return np.array(best_w)


def _frank_wolfe(g: np.ndarray, tol: float, max_iters: int) -> np.ndarray:
    """Sener & Koltun (2018) Algorithm 2: Frank-Wolfe over the simplex from uniform."""
    n = g.shape[0]
    w = np.full(n, 1.0 / n)
    for _ in range(max_iters):
        t = int(np.argmin(g @ w))
        a, b, c = float(w @ g[:, t]), float(w @ g @ w), float(g[t, t])
        if c <= a:
            step = 1.0
        elif b <= a:
            step = 0.0
        else:
            step = (b - a) / (b + c - 2 * a)
        w = (1 - step) * w
        w[t] += step
        if step < tol:
            break
    return w


def min_norm_simplex(
    gram: Tensor | np.ndarray | Sequence[Sequence[float]],
    *,
    solver: str = "wolfe",
    tol: float = 1e-12,
    max_iters: int = 1000,
) -> np.ndarray:
    """Weights ``w`` (``[n]``, ``w >= 0``, ``sum w = 1``) of the least-norm point
    ``sum_i w_i g_i`` of the convex hull of ``n`` vectors, from their Gram matrix
    ``G_ij = g_i . g_j`` (``[n, n]``).

    Args:
        gram: the Gram matrix (tensor, array or nested lists).
        solver: ``"wolfe"`` (exact, default), ``"closed"`` (exact: three points in
            closed form, more by Wolfe's algorithm), ``"enumerate"`` (exact, every support
            set: the slow twin, n <= 12) or ``"frank_wolfe"`` (approximate; ``tol`` is its
            stopping step size, torchjd's ``epsilon``).
        tol: numerical tolerance, relative to the largest squared norm (``"wolfe"``,
            ``"enumerate"``) or the Frank-Wolfe step below which it stops.
        max_iters: iteration cap (``"wolfe"``, ``"frank_wolfe"``).

    The minimiser's *point* is unique; its weights are not when the vectors are affinely
    dependent (any of the optimal weights is returned then).
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if not (isinstance(max_iters, int) and max_iters >= 1):
        raise ValueError(f"max_iters must be an int >= 1, got {max_iters!r}")
    return _min_norm(check_gram(gram), solver, tol, max_iters)


def _min_norm(g: np.ndarray, solver: str, tol: float = 1e-12, max_iters: int = 1000) -> np.ndarray:
    """:func:`min_norm_simplex` on a checked Gram matrix. The weights do not change when
    the Gram is scaled, so it is scaled to a largest diagonal entry of 1 first: the KKT
    systems then mix entries of one size (gradients of norm 1e6 gave entries of 1e12 next
    to the constraint's ones, and a wrong answer)."""
    n = g.shape[0]
    top = float(np.max(np.diag(g)))
    if n == 1 or top <= 0:  # one point, or every point is 0: any weights are optimal
        return np.full(n, 1.0 / n)
    g = g / top
    if solver == "enumerate":
        return _enumerate(g, tol)
    if solver == "frank_wolfe":
        return _frank_wolfe(g, tol, max_iters)
    if solver == "closed" and n == 3:
        return _closed_form3(g)
    w = _wolfe(g, tol, max_iters)
    if w is not None:
        return w
    if n <= _ENUMERATE_MAX:  # the exact slow twin: same answer, never a different rule
        return _enumerate(g, tol)
    raise ValueError(
        f"the min-norm solver did not converge in max_iters={max_iters} for n={n} "
        "objectives; raise max_iters"
    )


# ------------------------------------------------------------------------ the rule
@dataclass(frozen=True)
class NWeights:
    """The rule's decision for one group.

    ``weights[i]`` is objective ``i``'s weight ``w_i`` (0 for a dropped zero gradient;
    they sum to 1 over the non-zero ones), ``mult`` the factor ``k`` (number of non-zero
    objectives) in ``v = k sum_i w_i g_i``, ``conflict`` whether any pair of non-zero
    gradients has ``g_i . g_j <= 0``, ``stationary`` whether the min-norm element is
    rounding noise (the group then gets zero).
    """

    weights: tuple[float, ...]
    mult: float
    conflict: bool
    stationary: bool


def mmpareto_weights_n(
    gram: Tensor | np.ndarray | Sequence[Sequence[float]],
    *,
    dtype: torch.dtype = torch.float32,
    solver: str = "wolfe",
) -> NWeights:
    """MMPareto's weights for ``n`` objectives from their Gram matrix (see the module
    docstring); ``dtype`` is the gradients' (it sets the stationarity threshold)."""
    g = check_gram(gram)
    n = g.shape[0]
    live = [i for i in range(n) if g[i, i] > 0]
    weights = np.zeros(n)
    if not live:
        return NWeights(tuple(weights.tolist()), 0.0, False, False)
    sub = g[np.ix_(live, live)]
    off = sub[~np.eye(len(live), dtype=bool)]
    conflict = bool(np.any(off <= 0))
    stationary = False
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    if len(live) == 2:  # the closed form, its weights and its stationarity test exactly
        pair = PairStats(mm=sub[0, 0], mu=sub[0, 1], uu=sub[1, 1])
        w, stationary = np.array(mmpareto_weights(pair)), _pair_stationary(pair, dtype)
    elif conflict:
        w = _min_norm(sub, solver)
        wide = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        eps = torch.finfo(wide).eps
        # against the *shortest* gradient: |d| <= min |g_i| always, so a threshold on the
        # longest would zero any group holding one short gradient (scale-invariant, like
        # the pair's sin^2 test, which it matches within a factor of 4)
        stationary = float(w @ sub @ w) <= _STATIONARY_EPS * eps * float(np.min(np.diag(sub)))
    else:
        w = np.full(len(live), 1.0 / len(live))
    weights[live] = w
    return NWeights(tuple(weights.tolist()), float(len(live)), conflict, stationary)


def mmpareto_combine_n(
    grads: Sequence[Sequence[Tensor]],
    gamma: float = DEFAULT_GAMMA,
    *,
    scale: str = "tensor",
    solver: str = "wolfe",
) -> list[Tensor]:
    """Integrate ``n`` objectives' gradients on one parameter group with MMPareto.

    Args:
        grads: ``grads[i]`` is objective ``i``'s per-tensor gradient list over the group's
            parameters (same shapes and order for every ``i``); ``n >= 1``.
        gamma: the final scale (the paper's 1.5); positive.
        scale: ``"tensor"`` (per-tensor magnitude rescaling, the authors') or
            ``"encoder"`` (one factor for the group: keeps the no-conflict guarantee).
        solver: the min-norm solver (see :func:`min_norm_simplex`).

    Returns:
        One tensor per parameter (shapes and dtypes of ``grads[0]``). Two objectives go
        through the closed form :func:`curatorch.pareto.mmpareto_combine` (same result).
    """
    _check_gamma(gamma)
    _check_scale(scale)
    _check_grads(grads)
    if len(grads) == 2:
        return mmpareto_combine(grads[0], grads[1], gamma, scale=scale)
    flat, layout = gram_matrix(grads)  # [n, N]
    gram = flat @ flat.T
    gram = (gram + gram.T) / 2  # exactly symmetric (reduced-precision matmuls need not be)
    decision = mmpareto_weights_n(gram, dtype=flat.dtype, solver=solver)
    w = torch.tensor(decision.weights, dtype=flat.dtype, device=flat.device)
    v = (decision.mult * w) @ flat  # [N]
    if decision.stationary:
        v.zero_()
    out = layout.unflatten(rescale_flat(v, flat, layout, float(gamma), scale)[0])
    return [o.to(t.dtype) for o, t in zip(out, grads[0], strict=True)]
