"""Gradient integrators over parameter groups with any number of objectives.

The multimodal integrators (:mod:`curatorch.pareto.integrators`) give each modality's
encoder two objectives, the multimodal loss and its own unimodal loss. Other models share
parameters between more objectives: a multi-task model's shared encoder receives every
task's gradient; an early-fusion transformer's trunk receives the multimodal loss and
every unimodal loss. A :class:`GroupIntegrator` takes the groups as data::

    integ = build_group_integrator(
        "mmpareto",
        groups={"shared": (encoder.parameters(), ("digit", "parity", "ink"))},
        heads=[*heads.parameters()],
    )
    optimizer.zero_grad()
    diag = integ.backward(losses={"digit": l1, "parity": l2, "ink": l3})
    optimizer.step()

Each group receives the method's combination of the gradients of *its* objectives on its
parameters; ``heads`` (every other trained parameter) receive the plain gradient of the
sum of all the losses. ``backward`` accumulates into ``.grad`` like
:meth:`torch.Tensor.backward`. Per-loss gradients cost one backward per loss (each
restricted to the groups that loss is an objective of, plus the heads); ``uniform``
without diagnostics costs one backward of the sum.

Methods (``k`` = the group's number of objectives):

- ``uniform``: ``sum_i g_i``;
- ``first``: the group's first objective only (``("multimodal", m)``: the multimodal loss
  alone, the ``multimodal`` baseline);
- ``mgda``: ``k sum_i w_i g_i`` with the min-norm weights on every step (for ``k = 2`` the
  two-objective closed form with the authors' 0.999/0.001 clamps, as ``MGDA``);
- ``pcgrad``: PCGrad (Yu et al. 2020): each ``g_i`` projected onto the normal plane of
  every ``g_j`` it conflicts with, the others visited in a random order (seeded by
  ``generator``; irrelevant and not drawn for ``k <= 2``), then summed;
- ``mmpareto``: the n-objective MMPareto rule (:mod:`curatorch.pareto.nrule`; for ``k =
  2`` the closed form of :func:`curatorch.pareto.mmpareto_combine`).

With two objectives per group these give the same gradients as the multimodal
integrators (tested on late-fusion models), up to float rounding of the summation order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from curatorch.pareto.integrators import _reachable_leaves, check_all_owned
from curatorch.pareto.nrule import SOLVERS, min_norm_simplex, mmpareto_weights_n
from curatorch.pareto.rule import (
    DEFAULT_GAMMA,
    FlatLayout,
    PairStats,
    _check_gamma,
    _check_scale,
    min_norm_weights,
    mmpareto_weights,
    rescale_flat,
    stationary,
)

__all__ = [
    "GROUP_INTEGRATORS",
    "FirstObjective",
    "GroupDiagnostics",
    "GroupIntegrator",
    "GroupMGDA",
    "GroupMMPareto",
    "GroupPCGrad",
    "GroupUniform",
    "build_group_integrator",
    "pcgrad_weights",
]


@dataclass
class GroupDiagnostics:
    """One ``backward`` call's per-group figures, flattened by :meth:`to_dict`.

    ``records[group]`` holds ``cos`` (the least pairwise cosine of the group's objectives;
    for two, their cosine), ``conflict`` (``cos <= 0``), ``weight/<obj>`` (the method's
    coefficient of each objective's gradient before the magnitude rule), ``norm/<obj>``
    (``|g_obj|``) and ``norm_out`` (the norm of what the group received), plus
    ``cos/<a>~<b>`` for every pair when the group has three or more objectives.
    """

    records: dict[str, dict[str, float | bool]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{"cos/<group>": .., "conflict/<group>": .., "weight/<group>/<obj>": ..}``."""
        out: dict[str, Any] = {}
        for group, rec in self.records.items():
            for key, value in rec.items():
                head, _, tail = key.partition("/")
                out[f"{head}/{group}" + (f"/{tail}" if tail else "")] = value
        return out


def pcgrad_weights(gram: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    """PCGrad's coefficients ``c`` (``[k]``; the result is ``sum_i c_i g_i``) from the Gram
    matrix ``[k, k]``: for each ``i``, ``g_i`` is projected in turn onto the normal plane
    of every ``g_j`` (``j != i``, in the order of ``torch.randperm(k, generator)``) with
    which the current projection conflicts. The inner products are with the original
    ``g_j``, as in the paper's Algorithm 1 (and torchjd's ``PCGrad``)."""
    k = gram.shape[0]
    total = np.zeros(k)
    for i in range(k):
        if k <= 2:
            order: Sequence[int] = range(k)
        else:
            device = generator.device if generator is not None else None
            order = torch.randperm(k, generator=generator, device=device).tolist()
        w = np.zeros(k)
        w[i] = 1.0
        for j in order:
            if j == i:
                continue
            ip = float(gram[j] @ w)
            if ip < 0.0:
                w[j] -= ip / gram[j, j]
        total += w
    return total


def _cosines(gram: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    denom = np.outer(norms, norms)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, gram / np.where(denom > 0, denom, 1.0), 0.0)


class GroupIntegrator:
    """Base class: validates the groups and losses, computes per-loss gradients, fills
    ``.grad``. Subclasses set :meth:`coefficients` (or override :meth:`combine`).

    Args:
        groups: group name -> ``(parameters, objective names)``; disjoint parameter
            groups, at least one objective each (unique names).
        heads: every other trained parameter; they receive the gradient of the summed
            losses.
    """

    name: ClassVar[str] = ""
    needs_per_loss: ClassVar[bool] = True

    def __init__(
        self,
        *,
        groups: Mapping[str, tuple[Iterable[Tensor], Sequence[str]]],
        heads: Iterable[Tensor] = (),
    ) -> None:
        if not isinstance(groups, Mapping) or not groups:
            raise ValueError(f"groups must be a non-empty mapping, got {groups!r}")
        self.params: dict[str, list[Tensor]] = {}
        self.objectives: dict[str, tuple[str, ...]] = {}
        seen: dict[int, str] = {}
        for name, spec in groups.items():
            if not (isinstance(spec, tuple | list) and len(spec) == 2):
                raise ValueError(
                    f"groups[{name!r}] must be (parameters, objective names), got {spec!r}"
                )
            params = [p for p in spec[0] if p.requires_grad]
            objs = tuple(spec[1])
            if not params:
                raise ValueError(f"groups[{name!r}] has no trainable parameters")
            if not objs or len(set(objs)) != len(objs) or not all(isinstance(o, str) for o in objs):
                raise ValueError(f"groups[{name!r}] must name unique objectives, got {list(objs)}")
            for p in params:
                if id(p) in seen:
                    raise ValueError(
                        f"a parameter is in both groups[{seen[id(p)]!r}] and groups[{name!r}]; "
                        "groups must be disjoint"
                    )
                seen[id(p)] = name
            self.params[name], self.objectives[name] = params, objs
        self.heads = [p for p in heads if p.requires_grad]
        for p in self.heads:
            if id(p) in seen:
                raise ValueError(
                    f"a parameter is in both heads and groups[{seen[id(p)]!r}]; pass it once"
                )
        self._owned_checked = False
        self._exact_sum: bool | None = None
        self.all_objectives = tuple(
            dict.fromkeys(o for objs in self.objectives.values() for o in objs)
        )

    def _check_losses(self, losses: Mapping[str, Tensor]) -> None:
        if not isinstance(losses, Mapping):
            raise ValueError(f"losses must be a mapping name -> scalar tensor, got {losses!r}")
        missing = [o for o in self.all_objectives if o not in losses]
        if missing:
            raise ValueError(
                f"losses lacks objectives {missing} named by the groups (got {sorted(losses)})"
            )
        for name, loss in losses.items():
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                raise ValueError(f"losses[{name!r}] must be a scalar tensor")
        if not self._owned_checked:  # the graph's structure is fixed: walk it once
            owned = [p for ps in self.params.values() for p in ps] + self.heads
            check_all_owned(losses.values(), owned)
            self._owned_checked = True

    def _per_loss_grads(
        self, losses: Mapping[str, Tensor]
    ) -> tuple[dict[str, dict[str, list[Tensor]]], list[Tensor | None]]:
        """``(grads[group][objective] -> per-tensor list, heads' summed gradient)``: one
        backward per loss, restricted to the groups it is an objective of and the heads
        (a head no loss reaches gets ``None``, as :meth:`torch.Tensor.backward` leaves it)."""
        grads: dict[str, dict[str, list[Tensor]]] = {g: {} for g in self.params}
        heads: list[Tensor | None] = [None] * len(self.heads)
        names = list(losses)
        for i, name in enumerate(names):
            targets = [g for g, objs in self.objectives.items() if name in objs]
            inputs = [p for g in targets for p in self.params[g]] + self.heads
            if not inputs:
                continue
            raw = torch.autograd.grad(
                losses[name], inputs, retain_graph=i < len(names) - 1, allow_unused=True
            )
            start = 0
            for g in targets:
                ps = self.params[g]
                part = raw[start : start + len(ps)]
                grads[g][name] = [
                    torch.zeros_like(p) if r is None else r for p, r in zip(ps, part, strict=True)
                ]
                start += len(ps)
            for j, r in enumerate(raw[start:]):
                if r is not None:
                    heads[j] = r if heads[j] is None else heads[j] + r  # type: ignore[operator]
        return grads, heads

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        """``(c, zero)``: the group gets ``sum_i c_i g_i`` (``zero``: it gets zero)."""
        raise NotImplementedError

    def combine(
        self, flat: Tensor, gram: np.ndarray, layout: FlatLayout
    ) -> tuple[Tensor, np.ndarray]:
        """The group's gradient ``[N]`` from its objectives' flat gradients ``[k, N]`` and
        their Gram matrix; returns ``(gradient, coefficients)``."""
        c, zero = self.coefficients(gram, flat.dtype)
        out = torch.as_tensor(c, dtype=flat.dtype, device=flat.device) @ flat  # [N]
        if zero:
            out.zero_()
        return out, c

    def _group_backward(
        self, name: str, grads: Mapping[str, list[Tensor]], diagnose: bool = True
    ) -> dict[str, Any] | None:
        objs = self.objectives[name]
        per_obj = [grads[o] for o in objs]
        layout = FlatLayout([p.shape for p in self.params[name]])
        flat = torch.cat([t.reshape(-1) for g in per_obj for t in g])
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.float()
        flat = flat.view(len(objs), -1)  # [k, N]
        gram = np.asarray((flat @ flat.T).tolist(), dtype=np.float64)  # one read-back
        gram = (gram + gram.T) / 2  # exactly symmetric (reduced-precision matmuls need not be)
        out, c = self.combine(flat, gram, layout)
        for p, g in zip(self.params[name], layout.unflatten(out), strict=True):
            g = g.to(p.dtype)
            p.grad = g if p.grad is None else p.grad.add_(g)
        if not diagnose:
            return None
        cos = _cosines(gram)
        # the least cosine over the pairs the rule looks at: with three or more objectives
        # it drops zero gradients, so they do not count as conflicts (two keep the
        # closed form's convention: a zero gradient is g_m . g_u = 0, a conflict)
        live = (
            [i for i in range(len(objs)) if gram[i, i] > 0] if len(objs) >= 3 else range(len(objs))
        )
        pairs = [cos[i, j] for i in live for j in live if i < j]
        least = float(min(pairs)) if pairs else 1.0
        rec: dict[str, Any] = {"cos": least, "conflict": least <= 0}
        for i, o in enumerate(objs):
            rec[f"weight/{o}"] = float(c[i])
            rec[f"norm/{o}"] = math.sqrt(max(gram[i, i], 0.0))
        if len(objs) >= 3:
            for i in range(len(objs)):
                for j in range(i + 1, len(objs)):
                    rec[f"cos/{objs[i]}~{objs[j]}"] = float(cos[i, j])
        rec["norm_out"] = float(torch.linalg.vector_norm(out))
        return rec

    def _sum_is_exact(self, losses: Mapping[str, Tensor]) -> bool:
        """Whether every loss reaches only groups that name it as an objective (walked on
        the first call and cached): then one backward of the sum gives each group the sum
        of its objectives' gradients, else the per-loss path must restrict them."""
        if self._exact_sum is None:
            owner = {id(p): g for g, ps in self.params.items() for p in ps}
            self._exact_sum = all(
                name in self.objectives[owner[leaf]]
                for name, loss in losses.items()
                for leaf in _reachable_leaves(loss)
                if leaf in owner
            )
        return self._exact_sum

    def _sum_backward(self, losses: Mapping[str, Tensor]) -> None:
        total = sum(losses.values())
        inputs = [p for ps in self.params.values() for p in ps] + self.heads
        torch.autograd.backward(total, inputs=inputs)  # type: ignore[arg-type]

    def backward(self, *, losses: Mapping[str, Tensor], diagnose: bool = False) -> GroupDiagnostics:
        """Accumulate this method's gradients into ``.grad``.

        Args:
            losses: objective name -> scalar loss; every objective a group names must be
                there; others only train the heads.
            diagnose: compute and return the per-group diagnostics (an empty record
                otherwise: they cost host syncs; for ``uniform`` they also cost the
                per-loss backward passes).
        """
        self._check_losses(losses)
        if not self.needs_per_loss and not diagnose and self._sum_is_exact(losses):
            self._sum_backward(losses)
            return GroupDiagnostics()
        grads, heads = self._per_loss_grads(losses)
        diag = GroupDiagnostics()
        for name in self.params:
            rec = self._group_backward(name, grads[name], diagnose)
            if rec is not None:
                diag.records[name] = rec
        for p, g in zip(self.heads, heads, strict=True):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        return diag

    def __repr__(self) -> str:
        groups = {g: list(o) for g, o in self.objectives.items()}
        return f"{type(self).__name__}(groups={groups})"


class GroupUniform(GroupIntegrator):
    """``sum_i g_i`` on every group (one backward of the summed loss)."""

    name = "uniform"
    needs_per_loss = False

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        return np.ones(gram.shape[0]), False


class FirstObjective(GroupIntegrator):
    """Each group gets its first objective's gradient only (heads still get every loss's)."""

    name = "first"

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        c = np.zeros(gram.shape[0])
        c[0] = 1.0
        return c, False


class GroupMGDA(GroupIntegrator):
    """``k sum_i w_i g_i``, ``w`` the min-norm weights, on every step."""

    name = "mgda"

    def __init__(self, *, groups: Any, heads: Iterable[Tensor] = (), solver: str = "wolfe"):
        super().__init__(groups=groups, heads=heads)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        self.solver = solver

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        k = gram.shape[0]
        if k == 2:
            w = np.array(min_norm_weights(PairStats(gram[0, 0], gram[0, 1], gram[1, 1])))
        else:
            w = min_norm_simplex(gram, solver=self.solver)
        return k * w, False


class GroupPCGrad(GroupIntegrator):
    """PCGrad over each group's objectives (see :func:`pcgrad_weights`).

    Args:
        generator: the random order's generator (``k >= 3`` only); ``None`` uses torch's
            global generator (as torchjd's ``PCGrad`` does).
    """

    name = "pcgrad"

    def __init__(
        self, *, groups: Any, heads: Iterable[Tensor] = (), generator: torch.Generator | None = None
    ):
        super().__init__(groups=groups, heads=heads)
        self.generator = generator

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        return pcgrad_weights(gram, self.generator), False


class GroupMMPareto(GroupIntegrator):
    """The MMPareto rule on each group (:func:`curatorch.pareto.mmpareto_combine_n`).

    Args:
        gamma: final scale (1.5 in the paper); positive.
        scale: ``"tensor"`` (per-tensor rescaling, the authors') or ``"encoder"`` (one
            factor per group).
        solver: the min-norm solver for three or more objectives.
    """

    name = "mmpareto"

    def __init__(
        self,
        *,
        groups: Any,
        heads: Iterable[Tensor] = (),
        gamma: float = DEFAULT_GAMMA,
        scale: str = "tensor",
        solver: str = "wolfe",
    ) -> None:
        _check_gamma(gamma)
        _check_scale(scale)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
        super().__init__(groups=groups, heads=heads)
        self.gamma, self.scale, self.solver = float(gamma), scale, solver

    def coefficients(self, gram: np.ndarray, dtype: torch.dtype) -> tuple[np.ndarray, bool]:
        if gram.shape[0] == 2:
            stats = PairStats(gram[0, 0], gram[0, 1], gram[1, 1])
            return 2 * np.array(mmpareto_weights(stats)), stationary(stats, dtype)
        d = mmpareto_weights_n(gram, dtype=dtype, solver=self.solver)
        return d.mult * np.array(d.weights), d.stationary

    def combine(
        self, flat: Tensor, gram: np.ndarray, layout: FlatLayout
    ) -> tuple[Tensor, np.ndarray]:
        v, c = super().combine(flat, gram, layout)
        return rescale_flat(v, flat, layout, self.gamma, self.scale)[0], c


GROUP_INTEGRATORS: dict[str, type[GroupIntegrator]] = {
    cls.name: cls for cls in (GroupUniform, FirstObjective, GroupMGDA, GroupPCGrad, GroupMMPareto)
}


def build_group_integrator(
    name: str,
    *,
    groups: Mapping[str, tuple[Iterable[Tensor], Sequence[str]]],
    heads: Iterable[Tensor] = (),
    **options: Any,
) -> GroupIntegrator:
    """The group integrator registered as ``name`` (:data:`GROUP_INTEGRATORS`) with
    ``options`` (``gamma``/``scale``/``solver`` for MMPareto, ``solver`` for MGDA,
    ``generator`` for PCGrad)."""
    if name not in GROUP_INTEGRATORS:
        raise ValueError(f"name must be one of {sorted(GROUP_INTEGRATORS)}, got {name!r}")
    try:
        return GROUP_INTEGRATORS[name](groups=groups, heads=heads, **options)
    except TypeError as exc:
        raise ValueError(
            f"group integrator {name!r} does not take options {sorted(options)}"
        ) from exc
