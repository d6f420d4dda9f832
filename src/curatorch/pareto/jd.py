"""MMPareto as a `torchjd <https://github.com/TorchJD/torchjd>`_ aggregator.

Not imported by :mod:`curatorch.pareto`; import it explicitly (``pip install
'curatorch[jd]'`` installs torchjd)::

    from torchjd.autojac import backward, jac_to_grad
    from curatorch.pareto.jd import MMParetoAggregator, parameter_sizes

torchjd maps a Jacobian matrix ``[m, n]`` (row ``i``: objective ``i``'s gradient over the
parameters, flattened) to one vector ``[n]`` with an ``Aggregator``.
:class:`MMParetoAggregator` is :func:`curatorch.pareto.mmpareto_combine_n` over the rows;
:class:`MMParetoWeighting` is the same rule as a torchjd ``Weighting`` of the Gramian
``[m, m]`` (one magnitude factor for the whole row, ``scale="encoder"``), for
``GramianWeightedAggregator``, ``jac_to_grad``'s returned weights and the ``autogram``
engine.

How MMPareto's parameter groups map onto torchjd. torchjd aggregates the Jacobian of all
``tensors`` over all ``inputs`` as *one* matrix: the rows are the objectives, the columns
every input's entries, flattened and concatenated in the order of the tensors given to
``jac_to_grad``. MMPareto integrates per group (one encoder, one shared trunk), so each
group needs its own ``jac_to_grad`` call, with its own parameters and its own
aggregator. The ``.jac`` fields are per tensor, so one ``backward`` over every group's
parameters suffices (``backward`` once per group with ``inputs`` = that group works too)::

    losses = [loss_mm, loss_a, loss_b]           # late fusion, modalities a and b
    groups = model.encoder_parameters()          # {"a": [...], "b": [...]}
    backward(losses, inputs=[p for ps in groups.values() for p in ps], retain_graph=True)
    for params in groups.values():
        jac_to_grad(params, MMParetoAggregator(sizes=parameter_sizes(params)))
    torch.autograd.backward(sum(losses), inputs=model.head_parameters())

For a late-fusion model encoder ``a``'s rows are ``(g_m, g_u_a, 0)`` (``L_b`` does not
reach encoder ``a``; torchjd materialises its row as zeros). The n-objective rule drops
zero rows, so this equals the two-objective rule on ``(g_m, g_u_a)``, i.e. curatorch's
:class:`curatorch.pareto.MMPareto` integrator (tested, to rounding): with two non-zero rows
the n-objective weights use the closed form's weights and its stationarity test
(``sin^2(g_m, g_u) <= 100 eps``). Passing ``[L_mm, L_a]`` alone for encoder ``a`` (one
``backward`` per group) takes the pair's closed form directly.

For a multi-task model, ``torchjd.autojac.mtl_backward(losses, features=z,
shared_params=...)`` fills the heads' ``.grad`` with their own task's gradient and the
shared parameters' ``.jac`` with one row per task; ``jac_to_grad(shared,
MMParetoAggregator(sizes=...))`` then gives :class:`curatorch.pareto.GroupMMPareto`'s
shared gradient (tested).

What cannot be expressed in one torchjd call:

- heads that get the plain summed gradient while the encoders get the rule (curatorch's
  integrators do both in one ``backward``): the heads need a separate
  ``torch.autograd.backward`` (or ``mtl_backward``'s per-task heads, which get only their
  own task's gradient: the same thing when each head is reached by one loss);
- several groups in one ``jac_to_grad``: the aggregator would see one matrix over all the
  groups and combine the objectives once for all of them;
- ``mtl_backward`` needs one shared representation read by every task's head; a
  late-fusion multimodal model (one encoder per modality, a fusion head reading all of
  them) is not of that shape, so it goes through ``backward``/``jac_to_grad``;
- the per-tensor magnitude rule (``scale="tensor"``, the authors') needs ``sizes``, the
  number of entries of each tensor in ``jac_to_grad``'s order, because torchjd flattens
  and concatenates the inputs' Jacobians; without ``sizes`` the row is one tensor and both
  scale modes give the encoder-wide factor;
- ``jac_to_grad(..., optimize_gramian_computation=True)`` and ``autogram`` need a
  Gramian weighting, which the per-tensor mode is not (its factors depend on per-tensor
  norms): use :class:`MMParetoWeighting` (the encoder-wide factor) there.

The aggregator is not differentiable (it runs under ``torch.no_grad``; the min-norm
weights come from a host-side solver), like torchjd's ``PCGrad``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

try:
    from torchjd.aggregation import Aggregator, Weighting
except ImportError as exc:  # pragma: no cover - exercised by a test that hides torchjd
    raise ImportError(
        "curatorch.pareto.jd needs torchjd (>= 0.18), which is not installed; "
        "install the extra: pip install 'curatorch[jd]'"
    ) from exc

from curatorch.pareto.nrule import SOLVERS, mmpareto_combine_n, mmpareto_weights_n
from curatorch.pareto.rule import (
    DEFAULT_GAMMA,
    PairStats,
    _check_gamma,
    _check_scale,
    _factor,
    mmpareto_weights,
    stationary,
)

__all__ = ["MMParetoAggregator", "MMParetoWeighting", "parameter_sizes"]


def _check_solver(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")


def _check_sizes(sizes: Sequence[int] | None) -> tuple[int, ...] | None:
    if sizes is None:
        return None
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise ValueError(f"sizes must be a sequence of positive ints, got {sizes!r}")
    out = tuple(sizes)
    if not out:
        raise ValueError("sizes must hold at least one tensor size, got an empty sequence")
    bad = [s for s in out if isinstance(s, bool) or not isinstance(s, int) or s < 1]
    if bad:
        raise ValueError(f"sizes must be positive ints, got {list(out)} (bad entries {bad})")
    return out


def parameter_sizes(params: Iterable[Tensor]) -> list[int]:
    """Number of entries of each tensor, in order: the ``sizes`` of
    :class:`MMParetoAggregator` for ``jac_to_grad(params, ...)`` (pass the same order)."""
    return [int(p.numel()) for p in params]


class MMParetoAggregator(Aggregator):
    """MMPareto (Wei & Hu, ICML 2024; n objectives) as a torchjd ``Aggregator``:
    ``forward(matrix [m, n]) -> [n]`` is :func:`curatorch.pareto.mmpareto_combine_n` of
    the ``m`` rows.

    Args:
        gamma: the final scale (the paper's 1.5); positive.
        scale: ``"tensor"`` (per-tensor magnitude rule, the authors') or ``"encoder"``
            (one factor for the row). Per tensor needs ``sizes`` to know the tensors.
        sizes: entries per tensor along the row (they must sum to ``n``), in
            ``jac_to_grad``'s order (see :func:`parameter_sizes`); ``None``: the row is one
            tensor (both scales coincide).
        solver: the min-norm solver for three or more non-zero rows
            (:func:`curatorch.pareto.min_norm_simplex`).

    Zero rows (objectives that do not reach these parameters) are dropped by the rule. An
    empty matrix (``m = 0``) aggregates to zeros.
    """

    def __init__(
        self,
        gamma: float = DEFAULT_GAMMA,
        scale: str = "tensor",
        sizes: Sequence[int] | None = None,
        solver: str = "wolfe",
    ) -> None:
        _check_gamma(gamma)
        _check_scale(scale)
        _check_solver(solver)
        super().__init__()
        self.gamma, self.scale, self.solver = float(gamma), scale, solver
        self.sizes = _check_sizes(sizes)

    def _split_sizes(self, n: int) -> list[int]:
        if self.sizes is None:
            return [n]
        if sum(self.sizes) != n:
            raise ValueError(
                f"sizes must sum to the matrix's number of columns n={n}, "
                f"got sizes summing to {sum(self.sizes)}"
            )
        return list(self.sizes)

    def forward(self, matrix: Tensor, /) -> Tensor:
        """``[m, n] -> [n]``: the rule on the rows (shapes as ``[m]`` gradients)."""
        m, n = matrix.shape
        sizes = self._split_sizes(n)
        with torch.no_grad():
            if m == 0:
                return torch.zeros(n, dtype=matrix.dtype, device=matrix.device)
            rows = [list(row.split(sizes)) for row in matrix]  # [m] lists of [size_j]
            out = mmpareto_combine_n(rows, self.gamma, scale=self.scale, solver=self.solver)
            return torch.cat(out)  # [n]

    def __repr__(self) -> str:
        sizes = None if self.sizes is None else list(self.sizes)
        return (
            f"{type(self).__name__}(gamma={self.gamma}, scale={self.scale!r}, "
            f"sizes={sizes}, solver={self.solver!r})"
        )

    def __str__(self) -> str:
        return "MMPareto"


def _coefficients(
    gram: np.ndarray, dtype: torch.dtype, gamma: float, solver: str = "wolfe"
) -> np.ndarray:
    """``c`` (``[m]``) with ``sum_i c_i g_i`` = the rule with one magnitude factor
    (``scale="encoder"``), from the Gram matrix ``[m, m]`` alone (float64):
    ``c = f k w``, ``f = gamma max(1, |sum_i g_i| / |k sum_i w_i g_i|)``, zero when the
    objectives are Pareto-stationary (``dtype``, the gradients', sets that threshold)."""
    m = gram.shape[0]
    if m == 2:  # the closed form of mmpareto_combine (as mmpareto_combine_n)
        stats = PairStats(float(gram[0, 0]), float(gram[0, 1]), float(gram[1, 1]))
        c, zero = 2 * np.array(mmpareto_weights(stats)), stationary(stats, dtype)
    else:
        d = mmpareto_weights_n(gram, dtype=dtype, solver=solver)
        c, zero = d.mult * np.array(d.weights), d.stationary
    if zero:
        return np.zeros(m)
    ones = np.ones(m)
    s_norm = math.sqrt(max(float(ones @ gram @ ones), 0.0))
    v_norm = math.sqrt(max(float(c @ gram @ c), 0.0))
    return _factor(s_norm, v_norm, gamma) * c


class MMParetoWeighting(Weighting):
    """MMPareto as a torchjd ``Weighting`` of the Gramian: ``forward(gramian [m, m]) ->
    weights [m]`` with ``weights @ matrix`` equal to ``MMParetoAggregator(scale="encoder")``
    (one magnitude factor for the whole row; the norms come from the Gramian).

    ``GramianWeightedAggregator(MMParetoWeighting())`` is then a torchjd aggregator whose
    ``jac_to_grad`` returns these weights and allows ``optimize_gramian_computation``; the
    weighting also works with ``torchjd.autogram.Engine`` (``losses.backward(weights)``).

    Args:
        gamma: the final scale (the paper's 1.5); positive.
        solver: the min-norm solver for three or more non-zero objectives.
    """

    def __init__(self, gamma: float = DEFAULT_GAMMA, solver: str = "wolfe") -> None:
        _check_gamma(gamma)
        _check_solver(solver)
        super().__init__()
        self.gamma, self.solver = float(gamma), solver

    def forward(self, gramian: Tensor, /) -> Tensor:
        """``[m, m] -> [m]`` (the Gramian's dtype and device)."""
        if gramian.ndim != 2 or gramian.shape[0] != gramian.shape[1]:
            raise ValueError(f"gramian must be a square [m, m] matrix, got {tuple(gramian.shape)}")
        if gramian.shape[0] == 0:
            return torch.zeros(0, dtype=gramian.dtype, device=gramian.device)
        gram = gramian.detach().to("cpu", torch.float64).numpy()
        gram = (gram + gram.T) / 2  # symmetric to the last bit (float32 Gramians)
        c = _coefficients(gram, gramian.dtype, self.gamma, self.solver)
        return torch.as_tensor(c, dtype=gramian.dtype, device=gramian.device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(gamma={self.gamma}, solver={self.solver!r})"
