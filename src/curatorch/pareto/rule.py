"""The MMPareto rule on one encoder's gradients (Wei & Hu, ICML 2024).

For one modality's encoder, ``g_m`` is the gradient of the multimodal loss and ``g_u`` the
gradient of that modality's unimodal loss, both over all the encoder's parameters (a list
of per-tensor gradients; the inner products below run over the whole list):

1. weights ``(a_m, a_u)``: ``(1/2, 1/2)`` when ``cos(g_m, g_u) > 0``; otherwise the
   two-objective min-norm (MGDA) weights ``a_m = (g_u.g_u - g_m.g_u) / |g_m - g_u|^2``,
   ``a_u = 1 - a_m``, with ``a_m = 0.999`` when ``g_m.g_u >= g_m.g_m`` and ``0.001`` when
   ``g_m.g_u >= g_u.g_u`` (checked in that order, as the authors' solver does);
2. per parameter tensor: direction ``v = 2 (a_m g_m + a_u g_u)``, final gradient
   ``gamma * v * max(1, |g_m + g_u| / |v|)``.

The per-tensor rescaling of step 2 (``scale="tensor"``, the authors' code and the default)
multiplies each tensor by its own factor, so in conflict the result is not guaranteed to
keep a non-negative inner product with ``g_m`` and ``g_u`` over the whole encoder (on
random multi-tensor gradients it fails in about 1 % of conflicting cases; with a single
tensor it always holds). ``scale="encoder"`` applies one factor computed from the norms
over the whole encoder, which keeps that guarantee.

Edge cases (where the authors' code divides by zero): a tensor whose ``v`` is exactly zero
gets a zero gradient; two zero gradients give zero, never NaN. Conflicting gradients that
are anti-parallel to working precision (``sin^2(g_m, g_u) <= 100 eps`` of their dtype) are
a Pareto-stationary pair: their min-norm ``v`` is zero in exact arithmetic, but computed it
is rounding noise that the rescaling would blow up to ``gamma |g_m + g_u|`` in a random
direction, conflicting with one of the objectives; such an encoder gets zero.

Implementation: the gradients are flattened into one ``[2, N]`` buffer; the three inner
products come from one Gram matrix and are read back as Python floats (one device sync
per encoder, as the authors' ``if cos > 0`` also has), so the scalar logic costs no kernel
launches; per-tensor norms and factors use ``torch._foreach_norm``/``_foreach_mul_`` on
views of the buffer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_GAMMA",
    "SCALES",
    "FlatLayout",
    "PairStats",
    "flatten_pair",
    "min_norm_weights",
    "mmpareto_combine",
    "mmpareto_weights",
    "pair_stats",
    "rescale_flat",
    "stationary",
    "stats_from_flat",
]

DEFAULT_GAMMA = 1.5
SCALES = ("tensor", "encoder")
_EDGE_HIGH, _EDGE_LOW = 0.999, 0.001


@dataclass(frozen=True)
class PairStats:
    """Inner products of two gradients over all tensors of one encoder.

    ``mm = g_m.g_m``, ``mu = g_m.g_u``, ``uu = g_u.g_u`` (squared gradient units).
    """

    mm: float
    mu: float
    uu: float

    @property
    def cos(self) -> float:
        """``cos(g_m, g_u)``; 0 when either gradient is zero."""
        denom = math.sqrt(self.mm * self.uu)
        return self.mu / denom if denom > 0 else 0.0

    @property
    def conflict(self) -> bool:
        """``cos(g_m, g_u) <= 0`` (the sign of ``mu``)."""
        return self.mu <= 0


def _check_pair(g_m: Sequence[Tensor], g_u: Sequence[Tensor]) -> None:
    if len(g_m) != len(g_u):
        raise ValueError(
            f"g_m and g_u must list the same tensors, got {len(g_m)} and {len(g_u)} tensors"
        )
    if len(g_m) == 0:
        raise ValueError("g_m must hold at least one tensor, got an empty sequence")
    for i, (a, b) in enumerate(zip(g_m, g_u, strict=True)):
        if a.shape != b.shape:
            raise ValueError(
                f"g_m[{i}] and g_u[{i}] must have the same shape, "
                f"got {tuple(a.shape)} and {tuple(b.shape)}"
            )


def _check_gamma(gamma: float) -> None:
    if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {list(SCALES)}, got {scale!r}")


class FlatLayout:
    """How a list of tensors maps onto one flat vector: their shapes and sizes."""

    def __init__(self, shapes: Sequence[Sequence[int]]) -> None:
        self.shapes = [tuple(int(d) for d in s) for s in shapes]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.n = sum(self.sizes)

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        """Views of ``flat`` ``[N]`` shaped like the tensors."""
        parts = flat.split(self.sizes)
        return [part.view(shape) for part, shape in zip(parts, self.shapes, strict=True)]


def flatten_pair(g_m: Sequence[Tensor], g_u: Sequence[Tensor]) -> Tensor:
    """``[2, N]``: row 0 the flattened ``g_m``, row 1 the flattened ``g_u`` (float32 or
    wider)."""
    flat = torch.cat([t.reshape(-1) for t in (*g_m, *g_u)])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    return flat.view(2, -1)


def stats_from_flat(pair: Tensor) -> PairStats:
    """:class:`PairStats` of a ``[2, N]`` pair (one Gram matrix, one read-back)."""
    (mm, mu), (_, uu) = (pair @ pair.T).tolist()  # [2, 2]
    return PairStats(mm=mm, mu=mu, uu=uu)


def pair_stats(g_m: Sequence[Tensor], g_u: Sequence[Tensor]) -> PairStats:
    """``g_m.g_m``, ``g_m.g_u``, ``g_u.g_u`` summed over the tensors."""
    _check_pair(g_m, g_u)
    return stats_from_flat(flatten_pair(g_m, g_u))


def min_norm_weights(stats: PairStats) -> tuple[float, float]:
    """Two-objective min-norm weights ``(a_m, a_u)``: the convex combination of ``g_m`` and
    ``g_u`` of least norm, with the authors' edge cases (0.999 / 0.001)."""
    mm, mu, uu = stats.mm, stats.mu, stats.uu
    if mu >= mm:
        a_m = _EDGE_HIGH
    elif mu >= uu:
        a_m = _EDGE_LOW
    else:
        a_m = (uu - mu) / (mm + uu - 2 * mu)  # |g_m - g_u|^2 > 0 here
    return a_m, 1.0 - a_m


def mmpareto_weights(stats: PairStats) -> tuple[float, float]:
    """MMPareto's weights: ``(1/2, 1/2)`` without conflict, the min-norm weights with it."""
    return min_norm_weights(stats) if stats.conflict else (0.5, 0.5)


_STATIONARY_EPS = 100.0


def stationary(stats: PairStats, dtype: torch.dtype) -> bool:
    """Whether two conflicting, non-zero gradients are anti-parallel to working precision,
    ``sin^2(g_m, g_u) <= 100 eps`` (``eps`` of ``dtype``, float32's for narrower types):
    their min-norm combination is zero in exact arithmetic; computed, it is rounding noise.
    """
    if not stats.conflict or stats.mm <= 0 or stats.uu <= 0:
        return False
    wide = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    return 1.0 - stats.cos**2 <= _STATIONARY_EPS * torch.finfo(wide).eps


def _factor(s_norm: float, v_norm: float, gamma: float) -> float:
    """``gamma * max(1, s_norm / v_norm)``; ``gamma`` where ``v_norm`` is 0 (``v`` is 0)."""
    return gamma * max(1.0, s_norm / v_norm) if v_norm > 0 else gamma


def rescale_flat(
    v: Tensor, pair: Tensor, layout: FlatLayout, gamma: float, scale: str
) -> tuple[Tensor, float]:
    """``gamma * v * max(1, |g_m + g_u| / |v|)`` on flat ``[N]`` vectors, with the norms
    per tensor of ``layout`` (``scale="tensor"``) or over the whole vector (``"encoder"``).

    ``v`` is scaled in place (pass a fresh buffer, not a view of ``pair``). Returns
    ``(v, |result|)``.
    """
    s = pair.sum(0)  # [N] the uniform sum g_m + g_u
    if scale == "encoder":
        v_norm, s_norm = torch.stack(
            [torch.linalg.vector_norm(v), torch.linalg.vector_norm(s)]
        ).tolist()
        f = _factor(s_norm, v_norm, gamma)
        return v.mul_(f), f * v_norm
    v_parts = list(v.split(layout.sizes))
    norms = torch.stack(torch._foreach_norm(v_parts + list(s.split(layout.sizes)))).tolist()
    t = len(v_parts)
    factors = [_factor(norms[t + i], norms[i], gamma) for i in range(t)]
    torch._foreach_mul_(v_parts, factors)  # per-tensor factors, in place on v
    return v, math.sqrt(sum((f * n) ** 2 for f, n in zip(factors, norms[:t], strict=True)))


def mmpareto_combine(
    g_m: Sequence[Tensor],
    g_u: Sequence[Tensor],
    gamma: float = DEFAULT_GAMMA,
    *,
    scale: str = "tensor",
) -> list[Tensor]:
    """Integrate one encoder's multimodal and unimodal gradients with the MMPareto rule.

    Args:
        g_m: per-tensor gradients of the multimodal loss, one per encoder parameter.
        g_u: per-tensor gradients of this modality's unimodal loss, same shapes and order.
        gamma: the final scale (the paper's 1.5); positive.
        scale: ``"tensor"`` (the authors' per-tensor magnitude rescaling) or ``"encoder"``
            (one rescaling factor for the whole encoder; see the module docstring).

    Returns:
        The integrated gradient, one tensor per parameter (same shapes and dtypes).
        Without conflict this is ``gamma * (g_m + g_u)``. In conflict the direction
        ``v`` has a non-negative inner product with both ``g_m`` and ``g_u``; so has the
        result with ``scale="encoder"`` (and with ``"tensor"`` for a single tensor).
    """
    _check_gamma(gamma)
    _check_scale(scale)
    _check_pair(g_m, g_u)
    layout = FlatLayout([t.shape for t in g_m])
    pair = flatten_pair(g_m, g_u)  # [2, N]
    stats = stats_from_flat(pair)
    a_m, a_u = mmpareto_weights(stats)
    v = 2 * a_m * pair[0] + 2 * a_u * pair[1]  # [N]
    if stationary(stats, pair.dtype):  # v is rounding noise: zero, not rescaled noise
        v.zero_()
    out = layout.unflatten(rescale_flat(v, pair, layout, float(gamma), scale)[0])
    return [o.to(t.dtype) for o, t in zip(out, g_m, strict=True)]
