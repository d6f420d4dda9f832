"""Gradient integrators: fill ``.grad`` from a multimodal loss and per-modality unimodal losses.

A multimodal classifier has one encoder per modality, a fusion head trained by the
multimodal loss and one unimodal head per modality trained by that modality's unimodal
loss. An integrator decides what gradient each encoder receives; every parameter that is
not in an encoder group (the heads and fusion layers) receives the plain gradient of the
summed losses. All integrators share one call::

    integ = MMPareto(encoders={"audio": enc_a.parameters(), "video": enc_v.parameters()},
                     heads=[*fusion.parameters(), *head_a.parameters(), *head_v.parameters()])
    optimizer.zero_grad()
    diag = integ.backward(multimodal_loss=loss_mm, unimodal_losses={"audio": la, "video": lv})
    optimizer.step()

``backward`` accumulates into ``.grad`` like :meth:`torch.Tensor.backward` (zero them first)
and returns :class:`StepDiagnostics`. It works on any model, not only curatorch's.

Per-loss gradients are computed efficiently from one forward pass: one backward of the
multimodal loss restricted to the encoders and heads, then one with every unimodal loss as
a root (each runs only through its own encoder and head), or one per unimodal loss
restricted to its own encoder where a loss reaches another encoder. (The authors'
reference code runs four full backward passes.) A unimodal loss's gradient on *another*
modality's encoder is outside the rule and not used; in a late-fusion model it is zero.
The per-tensor arithmetic that follows (sums, norms, products) is one ``torch._foreach_*``
call per step each, with one read-back of the norms; what it costs next to a uniform step
is measured in ``docs/benchmarks.md``.

With ``features`` (:func:`split_features`: the fusion head and each unimodal head read
separate detached copies of the encoder outputs ``z_k``), the heads are backpropagated
once, for the summed loss, which leaves ``d_m,k = dL_mm/dz_k`` and ``d_u,k = dL_k/dz_k``
on the copies; then the encoders are backpropagated once, a batched vector-Jacobian
product ``vjp(z, [d_m; d_u])`` (``is_grads_batched``) that gives ``g_m`` and ``g_u``
stacked (``vjp="batched"``), or two plain ones (``vjp="loop"``, the default). The result
equals the path without ``features`` up to float rounding; on CPU it is not faster (the
encoders' backward flops are the same, and the extra engine call and vmap cost more
than they save; measured in ``docs/pareto.md``), so our trainer does not use it::

    split = split_features(model.encode(inputs))           # z_k -> two leaves each
    out = model.forward_from_features(split.fusion, split.unimodal)
    integ.backward(multimodal_loss=..., unimodal_losses=..., features=split)

Methods:

- ``uniform``: the gradient of ``L_mm + sum_k L_k`` everywhere;
- ``multimodal``: encoders get the multimodal gradient only; the unimodal heads are still
  trained by their losses (on the encoders' current features, like linear probes);
- ``mgda``: per encoder, the two-objective min-norm combination on every step,
  ``2 (a_m g_m + a_u g_u)`` (the factor 2 makes equal weights the plain sum);
- ``pcgrad``: per encoder, each gradient projected onto the normal plane of the other when
  they conflict, then summed (Yu et al. 2020; with two objectives the order is irrelevant);
- ``ogm_ge``: OGM-GE (Peng et al. 2022) on top of ``multimodal``: the dominant modality
  ``k`` (``rho_k = s_k / mean_{j != k} s_j > 1``, ``s`` = confidence on the true class
  summed over the batch) has its encoder gradient multiplied by ``1 - tanh(alpha rho_k)``
  plus Gaussian noise with that gradient's standard deviation (per tensor);
- ``mmpareto``: the MMPareto rule (:func:`curatorch.pareto.mmpareto_combine`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.overrides import has_torch_function

from curatorch.pareto.rule import (
    DEFAULT_GAMMA,
    PairStats,
    _check_gamma,
    _check_scale,
    _factor,
    min_norm_weights,
    mmpareto_weights,
    stationary,
)

__all__ = [
    "INTEGRATORS",
    "MGDA",
    "OGMGE",
    "VJP_MODES",
    "GradientIntegrator",
    "MMPareto",
    "ModalityDiagnostics",
    "MultimodalOnly",
    "PCGrad",
    "SplitFeatures",
    "StepDiagnostics",
    "Uniform",
    "build_integrator",
    "split_features",
    "true_class_confidence",
]


@dataclass
class ModalityDiagnostics:
    """One encoder's gradients on one step.

    ``cos`` is ``cos(g_m, g_u)``; ``conflict`` is ``cos <= 0``; ``weight_m``/``weight_u``
    are the weights the method put on ``g_m``/``g_u`` (MMPareto and MGDA: the paper's
    ``a_m, a_u``, before the factor 2; PCGrad: its effective coefficients); ``norm_m``,
    ``norm_u``, ``norm_out`` are the L2 norms of ``g_m``, ``g_u`` and of the gradient the
    encoder received, over all its parameters (gradient units).
    """

    cos: float
    conflict: bool
    weight_m: float
    weight_u: float
    norm_m: float
    norm_u: float
    norm_out: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class StepDiagnostics:
    """Per-modality diagnostics of one ``backward`` call (empty when not computed), plus
    method-specific scalars in ``extra`` (e.g. OGM-GE's coefficients)."""

    modalities: dict[str, ModalityDiagnostics] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-able record: ``{"cos/gray": 0.12, "conflict/gray": False, ...}``."""
        rec: dict[str, Any] = {}
        for mod, d in self.modalities.items():
            for key, value in d.to_dict().items():
                rec[f"{key}/{mod}"] = value
        rec.update(self.extra)
        return rec


def true_class_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax probability of the true class summed over the batch (0-d, no grad).

    Args:
        logits: ``[B, C]`` class scores of one modality.
        labels: ``[B]`` int64 class indices.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be [B, C], got shape {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must be [B] with B={logits.shape[0]}, got shape {tuple(labels.shape)}"
        )
    with torch.no_grad():
        probs = torch.softmax(logits.float(), dim=1)
        return probs.gather(1, labels.view(-1, 1)).sum()


@dataclass(frozen=True)
class SplitFeatures:
    """Encoder outputs cut off from the heads (build with :func:`split_features`).

    ``encoded[k]`` is ``z_k``, still attached to encoder ``k``'s graph; the fusion head
    must read ``fusion[k]`` and unimodal head ``k`` must read ``unimodal[k]``, two
    detached leaves equal to ``z_k``. All three map modality -> ``[B, ...]``.
    """

    encoded: dict[str, Tensor]
    fusion: dict[str, Tensor]
    unimodal: dict[str, Tensor]


def split_features(features: Mapping[str, Tensor]) -> SplitFeatures:
    """Two detached leaves of each encoder output: one for the fusion head, one for that
    modality's unimodal head (see :class:`SplitFeatures`).

    Args:
        features: modality -> encoder output ``z_k`` (requires grad).
    """
    if not isinstance(features, Mapping) or not features:
        raise ValueError(f"features must be a non-empty mapping, got {features!r}")
    for mod, z in features.items():
        if not isinstance(z, Tensor) or not z.requires_grad:
            raise ValueError(
                f"features[{mod!r}] must be an encoder output that requires grad, "
                f"got {type(z).__name__}"
            )
    return SplitFeatures(
        encoded=dict(features),
        fusion={m: z.detach().requires_grad_() for m, z in features.items()},
        unimodal={m: z.detach().requires_grad_() for m, z in features.items()},
    )


VJP_MODES = ("loop", "batched")


def _reachable_leaves(loss: Tensor) -> set[int]:
    """``id`` of every leaf tensor the autograd graph of ``loss`` reaches."""
    leaves: set[int] = set()
    seen: set[int] = set()
    stack = [loss.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)  # AccumulateGrad nodes hold the leaf
        if variable is not None:
            leaves.add(id(variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return leaves


def unowned_parameters(losses: Iterable[Tensor], owned: Iterable[Tensor]) -> list[Tensor]:
    """The ``nn.Parameter`` leaves the losses' graphs reach that are not in ``owned``: a
    trainable parameter an integrator was not given would silently get no gradient."""
    known = {id(p) for p in owned}
    found: dict[int, Tensor] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn for loss in losses]
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        variable = getattr(fn, "variable", None)
        if isinstance(variable, torch.nn.Parameter) and id(variable) not in known:
            found[id(variable)] = variable
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return list(found.values())


def check_all_owned(losses: Iterable[Tensor], owned: Iterable[Tensor]) -> None:
    """Raise naming the count and shapes of trainable parameters the losses reach that are
    in no parameter group and not in ``heads``."""
    missing = unowned_parameters(losses, owned)
    if missing:
        shapes = ", ".join(str(tuple(p.shape)) for p in missing[:4])
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise ValueError(
            f"the losses reach {len(missing)} trainable parameter(s) given neither as a group "
            f"(encoder) nor in heads (shapes {shapes}{more}); they would get no gradient: "
            "pass them in heads (plain summed gradient) or a group, or freeze them "
            "(requires_grad=False)"
        )


try:  # the engine entry torch.autograd.grad runs, without grad's argument handling
    from torch.autograd.graph import _engine_run_backward
except ImportError:  # pragma: no cover - a torch without it takes torch.autograd.grad
    _engine_run_backward = None


def _grad(
    outputs: Sequence[Tensor], inputs: Sequence[Tensor], *, retain_graph: bool
) -> tuple[Tensor | None, ...]:
    """``torch.autograd.grad(outputs, inputs, retain_graph=retain_graph, allow_unused=True)``
    for scalar losses: the same engine run with the same seeds (ones), so the same bits,
    without ``grad``'s per-call argument handling, which on a small model costs about as
    much as backpropagating a head (tens of microseconds a call on a 2-core CPU). Tensor
    subclasses (``__torch_function__``) and a torch without the entry go through
    ``torch.autograd.grad``."""
    if _engine_run_backward is None or has_torch_function((*outputs, *inputs)):
        return torch.autograd.grad(
            list(outputs), list(inputs), retain_graph=retain_graph, allow_unused=True
        )
    seeds = tuple(torch.ones_like(o, memory_format=torch.preserve_format) for o in outputs)
    return _engine_run_backward(
        tuple(outputs), seeds, retain_graph, False, tuple(inputs), True, accumulate_grad=False
    )


def _zeros_for_none(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> list[Tensor]:
    if all(g is not None for g in grads):  # the common case: nothing to fill
        return list(grads)  # type: ignore[arg-type]
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def _add_present(acc: list[Tensor], grads: Sequence[Tensor | None]) -> None:
    """``acc[j] += grads[j]`` in place wherever ``grads[j]`` is not None."""
    present = [(j, g) for j, g in enumerate(grads) if g is not None]
    if present:
        torch._foreach_add_([acc[j] for j, _ in present], [g for _, g in present])


def _merge(
    params: Sequence[Tensor], first: Sequence[Tensor | None], second: Sequence[Tensor | None]
) -> list[Tensor]:
    """``first[j] + second[j]``, taking either alone where the other is None (a head that
    only one of the two losses reaches: no zeros made, no addition) and zeros where both
    are."""
    out = []
    for p, a, b in zip(params, first, second, strict=True):
        if a is None:
            out.append(torch.zeros_like(p) if b is None else b)
        else:
            out.append(a if b is None else a + b)
    return out


#: dtypes whose product with a 0-d tensor of their own dtype has the Python scalar's bits
_EXACT_0D = (torch.float32, torch.float64)


def _scalar(
    tensors: Sequence[Tensor], value: float, cache: dict[torch.dtype, Tensor] | None = None
) -> float | Tensor:
    """The factor to pass to ``torch._foreach_mul(tensors, ...)``, with the bits of the
    Python scalar ``value``: on the CPU, for tensors all float32 or all float64, a 0-d
    tensor of their dtype (kept in ``cache`` by dtype when given; the Python scalar enters
    the product rounded to that dtype too), since the scalar overload converts the scalar
    once per tensor (three more dispatches each), which on small tensors costs more than
    the products; elsewhere the Python scalar (the fused kernels take it directly)."""
    dtype = tensors[0].dtype
    if dtype not in _EXACT_0D or tensors[0].device.type != "cpu":
        return value
    if any(t.dtype != dtype for t in tensors):
        return value
    if cache is None:
        return torch.scalar_tensor(value, dtype=dtype)
    if dtype not in cache:
        cache[dtype] = torch.scalar_tensor(value, dtype=dtype)
    return cache[dtype]


def _mul_(
    tensors: list[Tensor], value: float, cache: dict[torch.dtype, Tensor] | None = None
) -> None:
    """``t *= value`` in place for each tensor (bits of ``torch._foreach_mul_`` with the
    Python scalar; see :func:`_scalar`)."""
    if tensors:
        torch._foreach_mul_(tensors, _scalar(tensors, value, cache))


def _mul(tensors: list[Tensor], value: float) -> list[Tensor]:
    """``[t * value for t in tensors]`` (bits of ``torch._foreach_mul`` with the Python
    scalar; see :func:`_scalar`)."""
    return list(torch._foreach_mul(tensors, _scalar(tensors, value))) if tensors else []


def _floats(tensors: Sequence[Tensor]) -> list[float]:
    """Python floats of 0-d tensors: one ``item()`` each on the CPU (cheaper than a stack
    or ``float()``), one stacked read-back elsewhere (one device sync, not one per tensor)."""
    if tensors[0].device.type == "cpu":  # a foreach list is on one device
        return [t.item() for t in tensors]
    return torch.stack(list(tensors)).tolist()


def _accumulate(params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
    for p, g in zip(params, grads, strict=True):
        if p.grad is None:
            p.grad = g
        else:
            p.grad.add_(g)


class GradientIntegrator:
    """Base class: validates the parameter groups and the losses, fills ``.grad``.

    Args:
        encoders: modality name -> that modality's encoder parameters (disjoint groups).
        heads: every other trained parameter (fusion and unimodal heads); they receive the
            gradient of the summed losses.
        vjp: with ``features``, how ``g_m`` and ``g_u`` are backpropagated through the
            encoders: ``"loop"`` (two vector-Jacobian products, the default) or
            ``"batched"`` (one, ``is_grads_batched``); same result up to float rounding.
    """

    name: ClassVar[str] = ""
    #: whether the method needs each loss's gradient on the encoders every step
    needs_per_loss: ClassVar[bool] = True

    def __init__(
        self,
        *,
        encoders: Mapping[str, Iterable[Tensor]],
        heads: Iterable[Tensor] = (),
        vjp: str = "loop",
    ) -> None:
        if not isinstance(encoders, Mapping) or not encoders:
            raise ValueError(f"encoders must be a non-empty mapping, got {encoders!r}")
        if vjp not in VJP_MODES:
            raise ValueError(f"vjp must be one of {list(VJP_MODES)}, got {vjp!r}")
        self.vjp = vjp
        self.modalities: tuple[str, ...] = tuple(encoders)
        self.encoders: dict[str, list[Tensor]] = {}
        seen: dict[int, str] = {}
        for mod, params in encoders.items():
            plist = [p for p in params if p.requires_grad]
            if not plist:
                raise ValueError(f"encoders[{mod!r}] has no trainable parameters")
            for p in plist:
                if id(p) in seen:
                    raise ValueError(
                        f"a parameter is in both encoders[{seen[id(p)]!r}] and "
                        f"encoders[{mod!r}]; encoder groups must be disjoint"
                    )
                seen[id(p)] = mod
            self.encoders[mod] = plist
        self.heads: list[Tensor] = []
        for p in heads:
            if not p.requires_grad:
                continue
            if id(p) in seen:
                raise ValueError(
                    f"a parameter is in both heads and encoders[{seen[id(p)]!r}]; "
                    "pass each parameter once"
                )
            seen[id(p)] = "heads"
            self.heads.append(p)
        self._owner = {id(p): mod for mod, ps in self.encoders.items() for p in ps}
        self._enc_all = [p for mod in self.modalities for p in self.encoders[mod]]
        self._separable: bool | None = None
        self._features_checked = False
        self._owned_checked = False

    # -- validation -------------------------------------------------------------------
    def _check_losses(self, multimodal_loss: Tensor, unimodal_losses: Mapping[str, Tensor]) -> None:
        if not isinstance(multimodal_loss, Tensor) or multimodal_loss.ndim != 0:
            raise ValueError(
                f"multimodal_loss must be a scalar tensor, got {type(multimodal_loss).__name__} "
                f"of shape {tuple(getattr(multimodal_loss, 'shape', ()))}"
            )
        if set(unimodal_losses) != set(self.modalities):
            raise ValueError(
                f"unimodal_losses must have one loss per modality {list(self.modalities)}, "
                f"got {sorted(unimodal_losses)}"
            )
        for mod, loss in unimodal_losses.items():
            if not isinstance(loss, Tensor) or loss.ndim != 0:
                raise ValueError(f"unimodal_losses[{mod!r}] must be a scalar tensor")
        if not self._owned_checked:  # the graph's structure is fixed: walk it once
            check_all_owned(
                [multimodal_loss, *unimodal_losses.values()], self._enc_all + self.heads
            )
            self._owned_checked = True

    def _check_features(
        self,
        features: SplitFeatures,
        multimodal_loss: Tensor,
        unimodal_losses: Mapping[str, Tensor],
    ) -> None:
        """The split must be exact: every loss reaches the encoders only through the
        leaves, the multimodal loss only the fusion leaves, ``L_k`` only unimodal leaf
        ``k``, and ``z_k`` only encoder ``k``. Walks the graphs on the first call (the
        structure is fixed from step to step), then checks only the keys."""
        if not isinstance(features, SplitFeatures):
            raise ValueError(
                f"features must be a SplitFeatures (see split_features), "
                f"got {type(features).__name__}"
            )
        for part in ("encoded", "fusion", "unimodal"):
            keys = set(getattr(features, part))
            if keys != set(self.modalities):
                raise ValueError(
                    f"features.{part} must have one tensor per modality "
                    f"{list(self.modalities)}, got {sorted(keys)}"
                )
        if self._features_checked:
            return
        fusion = {id(features.fusion[m]): m for m in self.modalities}
        uni = {id(features.unimodal[m]): m for m in self.modalities}

        def bad(loss: Tensor, allowed_uni: str | None, allow_fusion: bool) -> str | None:
            for leaf in _reachable_leaves(loss):
                if leaf in self._owner:
                    return f"encoder {self._owner[leaf]!r}'s parameters directly"
                if leaf in fusion and not allow_fusion:
                    return f"the fusion features of {fusion[leaf]!r}"
                if leaf in uni and uni[leaf] != allowed_uni:
                    return f"the unimodal features of {uni[leaf]!r}"
            return None

        problems = [("multimodal_loss", bad(multimodal_loss, None, True))]
        problems += [
            (f"unimodal_losses[{m!r}]", bad(unimodal_losses[m], m, False)) for m in self.modalities
        ]
        for m in self.modalities:
            for leaf in _reachable_leaves(features.encoded[m]):
                if self._owner.get(leaf, m) != m:
                    problems.append((f"features.encoded[{m!r}]", f"encoder {self._owner[leaf]!r}"))
                    break
        for what, reason in problems:
            if reason is not None:
                raise ValueError(
                    f"{what} reaches {reason}; with features, the fusion head must read "
                    "only features.fusion, each unimodal head only its own "
                    "features.unimodal entry, and z_k only its own encoder "
                    "(or call backward without features)"
                )
        self._features_checked = True

    # -- gradients --------------------------------------------------------------------
    def _check_separable(self, unimodal_losses: Mapping[str, Tensor]) -> bool:
        """Whether no unimodal loss reaches another modality's encoder (a walk of the
        autograd graph, done on the first call and cached)."""
        if self._separable is None:
            self._separable = all(
                self._owner.get(leaf, mod) == mod
                for mod in self.modalities
                for leaf in _reachable_leaves(unimodal_losses[mod])
            )
        return self._separable

    def _per_loss_grads(
        self, multimodal_loss: Tensor, unimodal_losses: Mapping[str, Tensor]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """``(g_m, g_u, heads' summed-loss gradient)``; ``g_m``/``g_u`` list every encoder
        parameter's gradient in the order of ``self._enc_all``.

        One backward of the multimodal loss; then, when the unimodal losses are separable
        (each reaches only its own encoder, as in any late-fusion model), one backward with
        them as roots (the bits of their sum's), else one per modality restricted to its
        encoder.
        """
        n_enc = len(self._enc_all)
        inputs = self._enc_all + self.heads
        raw = _grad((multimodal_loss,), inputs, retain_graph=True)
        g_m = _zeros_for_none(self._enc_all, raw[:n_enc])
        if self._check_separable(unimodal_losses):
            # the losses as roots of one backward: each gets the seed 1, as through a sum
            # (no addition node; the bits of backpropagating L_1 + ... + L_M)
            roots = [unimodal_losses[mod] for mod in self.modalities]
            raw_u = _grad(roots, inputs, retain_graph=False)
            g_u = _zeros_for_none(self._enc_all, raw_u[:n_enc])
            return g_m, g_u, _merge(self.heads, raw[n_enc:], raw_u[n_enc:])
        head_grads = _zeros_for_none(self.heads, raw[n_enc:])  # summed in place below
        g_u = []
        for i, mod in enumerate(self.modalities):
            own = self.encoders[mod]
            raw = _grad(
                (unimodal_losses[mod],), own + self.heads, retain_graph=i < len(self.modalities) - 1
            )
            g_u += _zeros_for_none(own, raw[: len(own)])
            _add_present(head_grads, raw[len(own) :])
        return g_m, g_u, head_grads

    def _head_backward(
        self,
        features: SplitFeatures,
        multimodal_loss: Tensor,
        unimodal_losses: Mapping[str, Tensor],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """One backward of the summed loss through the heads only: ``(d_m, d_u, heads'
        gradient)``, ``d_m[k] = dL_mm/dz_k`` and ``d_u[k] = dL_k/dz_k`` (``[B, ...]``)."""
        self._check_features(features, multimodal_loss, unimodal_losses)
        total = multimodal_loss
        for mod in self.modalities:
            total = total + unimodal_losses[mod]
        leaves = [features.fusion[m] for m in self.modalities]
        leaves += [features.unimodal[m] for m in self.modalities]
        raw = torch.autograd.grad(total, self.heads + leaves, allow_unused=True)
        h, k = len(self.heads), len(self.modalities)
        deltas = _zeros_for_none(leaves, raw[h:])
        return deltas[:k], deltas[k:], _zeros_for_none(self.heads, raw[:h])

    def _encoder_grads(
        self, features: SplitFeatures, d_m: list[Tensor], d_u: list[Tensor]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``(g_m, g_u)`` of every encoder parameter from the feature gradients: one
        batched vector-Jacobian product (``vjp="batched"``) or two (``"loop"``)."""
        z = [features.encoded[m] for m in self.modalities]
        params = self._enc_all
        if self.vjp == "batched":
            stacked = [torch.stack([a, b]) for a, b in zip(d_m, d_u, strict=True)]  # [2, B, ...]
            raw = torch.autograd.grad(
                z, params, grad_outputs=stacked, is_grads_batched=True, allow_unused=True
            )
            both = [
                torch.zeros((2, *p.shape), dtype=p.dtype, device=p.device) if g is None else g
                for p, g in zip(params, raw, strict=True)
            ]  # [2, *p.shape] each
            return [g[0] for g in both], [g[1] for g in both]
        g_m = torch.autograd.grad(z, params, grad_outputs=d_m, retain_graph=True, allow_unused=True)
        g_u = torch.autograd.grad(z, params, grad_outputs=d_u, allow_unused=True)
        return _zeros_for_none(params, g_m), _zeros_for_none(params, g_u)

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        """``(w_m, w_u, mult)``: the encoder gets ``mult * (w_m g_m + w_u g_u)``. Methods
        that need per-loss gradients override this (or :meth:`combine`)."""
        raise NotImplementedError

    def combine(
        self,
        g_m: list[Tensor],
        g_u: list[Tensor],
        s: list[Tensor],
        stats: PairStats,
        s_norms: list[float],
    ) -> tuple[list[Tensor], float, float, float]:
        """One encoder's gradient from its per-tensor ``g_m``, ``g_u`` and ``s = g_m +
        g_u`` (a fresh list this method may scale in place; ``s_norms`` their norms);
        returns ``(grads, weight_m, weight_u, |grads|)``, ``grads`` fresh tensors. The
        default is ``mult * (w_m g_m + w_u g_u)`` with :meth:`weights`."""
        w_m, w_u, mult = self.weights(stats)
        if w_m == w_u:
            out = s
            _mul_(out, mult * w_m)
        else:
            out = _mul(g_m, mult * w_m)
            if w_u != 0.0:
                torch._foreach_add_(out, g_u, alpha=mult * w_u)
        sq = w_m * w_m * stats.mm + 2 * w_m * w_u * stats.mu + w_u * w_u * stats.uu
        return out, w_m, w_u, mult * math.sqrt(max(sq, 0.0))

    def combine_all(
        self,
        g_m: list[Tensor],
        g_u: list[Tensor],
        s: list[Tensor],
        stats: list[PairStats],
        s_norms: list[list[float]],
    ) -> tuple[list[Tensor], list[tuple[float, float, float]]]:
        """Every encoder's gradient (per tensor, in the order of the encoders' parameters)
        from the per-tensor lists over all encoders and each encoder's
        :class:`PairStats` and ``s`` norms; returns it with each encoder's ``(weight_m,
        weight_u, |grads|)``. The default is :meth:`combine` on each encoder's slice."""
        out: list[Tensor] = []
        records, start = [], 0
        for st, norms, params in zip(stats, s_norms, self.encoders.values(), strict=True):
            end = start + len(params)
            grads, w_m, w_u, norm = self.combine(
                g_m[start:end], g_u[start:end], s[start:end], st, norms
            )
            out += grads
            records.append((w_m, w_u, norm))
            start = end
        return out, records

    def _per_loss_backward(
        self,
        multimodal_loss: Tensor,
        unimodal_losses: Mapping[str, Tensor],
        features: SplitFeatures | None = None,
    ) -> StepDiagnostics:
        if features is None:
            g_m, g_u, head_grads = self._per_loss_grads(multimodal_loss, unimodal_losses)
        else:
            d_m, d_u, head_grads = self._head_backward(features, multimodal_loss, unimodal_losses)
            g_m, g_u = self._encoder_grads(features, d_m, d_u)
        # per-tensor |g_m|, |g_u|, |g_m + g_u| in one kernel and one read-back; the inner
        # product is g_m.g_u = (|s|^2 - |g_m|^2 - |g_u|^2) / 2 (no flattening copies)
        s = list(torch._foreach_add(g_m, g_u))
        n = len(g_m)
        norms = _floats(torch._foreach_norm(g_m + g_u + s))  # [3n]
        sq = [x * x for x in norms]
        stats, s_norms, start = [], [], 0
        for params in self.encoders.values():  # in the order of self.modalities
            end = start + len(params)
            mm = math.fsum(sq[start:end])
            uu = math.fsum(sq[n + start : n + end])
            ss = math.fsum(sq[2 * n + start : 2 * n + end])
            stats.append(PairStats(mm=mm, mu=(ss - mm - uu) / 2, uu=uu))
            s_norms.append(norms[2 * n + start : 2 * n + end])
            start = end
        grads, records = self.combine_all(g_m, g_u, s, stats, s_norms)
        _accumulate(self._enc_all, grads)
        diag = StepDiagnostics()
        for mod, st, (w_m, w_u, norm_out) in zip(self.modalities, stats, records, strict=True):
            diag.modalities[mod] = ModalityDiagnostics(
                cos=st.cos,
                conflict=st.conflict,
                weight_m=w_m,
                weight_u=w_u,
                norm_m=math.sqrt(st.mm),
                norm_u=math.sqrt(st.uu),
                norm_out=norm_out,
            )
        _accumulate(self.heads, head_grads)
        return diag

    def backward(
        self,
        *,
        multimodal_loss: Tensor,
        unimodal_losses: Mapping[str, Tensor],
        confidences: Mapping[str, Tensor] | None = None,
        diagnose: bool = False,
        features: SplitFeatures | None = None,
    ) -> StepDiagnostics:
        """Accumulate this method's gradient into ``.grad`` of the encoders and heads.

        Args:
            multimodal_loss: scalar loss of the fused prediction.
            unimodal_losses: modality -> scalar loss of that modality's own head.
            confidences: modality -> confidence on the true class summed over the batch
                (see :func:`true_class_confidence`); only OGM-GE uses it.
            diagnose: also compute the per-modality diagnostics for methods that do not
                need per-loss gradients (costs the per-loss backward passes). Methods that
                need them always return diagnostics.
            features: the :func:`split_features` the losses were computed from (the heads
                read its detached leaves): one backward through the heads and one
                (batched) through the encoders instead of one per loss. ``None``: the
                losses' graphs reach the encoders directly (any model).
        """
        self._check_losses(multimodal_loss, unimodal_losses)
        return self._per_loss_backward(multimodal_loss, unimodal_losses, features)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(modalities={list(self.modalities)})"


class Uniform(GradientIntegrator):
    """The plain gradient of ``L_mm + sum_k L_k`` (one backward pass)."""

    name = "uniform"
    needs_per_loss = False

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        return 1.0, 1.0, 1.0

    def backward(  # type: ignore[no-untyped-def]
        self, *, multimodal_loss, unimodal_losses, confidences=None, diagnose=False, features=None
    ):
        self._check_losses(multimodal_loss, unimodal_losses)
        if diagnose:
            return self._per_loss_backward(multimodal_loss, unimodal_losses, features)
        if features is not None:
            d_m, d_u, head_grads = self._head_backward(features, multimodal_loss, unimodal_losses)
            _accumulate(self.heads, head_grads)
            torch.autograd.backward(
                [features.encoded[m] for m in self.modalities],
                grad_tensors=[a + b for a, b in zip(d_m, d_u, strict=True)],
                inputs=self._enc_all,
            )
            return StepDiagnostics()
        total = multimodal_loss + sum(unimodal_losses[m] for m in self.modalities)
        torch.autograd.backward(total, inputs=self._enc_all + self.heads)
        return StepDiagnostics()


class MultimodalOnly(GradientIntegrator):
    """Encoders get the multimodal gradient only; heads still get every loss's gradient."""

    name = "multimodal"
    needs_per_loss = False

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        return 1.0, 0.0, 1.0

    def _cheap_backward(
        self,
        multimodal_loss: Tensor,
        unimodal_losses: Mapping[str, Tensor],
        features: SplitFeatures | None = None,
    ) -> None:
        if features is not None:
            d_m, _, head_grads = self._head_backward(features, multimodal_loss, unimodal_losses)
            _accumulate(self.heads, head_grads)
            torch.autograd.backward(
                [features.encoded[m] for m in self.modalities],
                grad_tensors=d_m,
                inputs=self._enc_all,
            )
            return
        torch.autograd.backward(
            multimodal_loss, inputs=self._enc_all + self.heads, retain_graph=True
        )
        if self.heads:
            uni = sum(unimodal_losses[m] for m in self.modalities)
            # only the heads: autograd runs just the paths from the losses to the heads
            grads = torch.autograd.grad(uni, self.heads, allow_unused=True)
            _accumulate(
                self.heads,
                [
                    torch.zeros_like(p) if g is None else g
                    for p, g in zip(self.heads, grads, strict=True)
                ],
            )

    def backward(  # type: ignore[no-untyped-def]
        self, *, multimodal_loss, unimodal_losses, confidences=None, diagnose=False, features=None
    ):
        self._check_losses(multimodal_loss, unimodal_losses)
        if diagnose:
            return self._per_loss_backward(multimodal_loss, unimodal_losses, features)
        self._cheap_backward(multimodal_loss, unimodal_losses, features)
        return StepDiagnostics()


class MGDA(GradientIntegrator):
    """Per encoder, the min-norm combination ``2 (a_m g_m + a_u g_u)`` on every step."""

    name = "mgda"

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        a_m, a_u = min_norm_weights(stats)
        return a_m, a_u, 2.0


class PCGrad(GradientIntegrator):
    """Per encoder: on conflict (``g_m.g_u < 0``) each gradient loses its component along
    the other, then the two are summed: ``(1 - mu/mm) g_m + (1 - mu/uu) g_u``."""

    name = "pcgrad"

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        mu = stats.mu
        # g_m' = g_m - (mu/uu) g_u and g_u' = g_u - (mu/mm) g_m, only on conflict
        c_m = mu / stats.uu if mu < 0 and stats.uu > 0 else 0.0
        c_u = mu / stats.mm if mu < 0 and stats.mm > 0 else 0.0
        return 1.0 - c_u, 1.0 - c_m, 1.0


class MMPareto(GradientIntegrator):
    """The MMPareto rule on each encoder (see :func:`curatorch.pareto.mmpareto_combine`).

    Diagnostics report the paper's weights ``(a_m, a_u)``; the direction is
    ``2 (a_m g_m + a_u g_u)`` rescaled to at least the uniform sum's norm, times gamma.

    Args:
        gamma: final scale of the encoder gradients (1.5 in the paper); positive.
        scale: ``"tensor"`` (authors' per-tensor rescaling) or ``"encoder"``.
    """

    name = "mmpareto"

    def __init__(
        self,
        *,
        encoders: Mapping[str, Iterable[Tensor]],
        heads: Iterable[Tensor] = (),
        gamma: float = DEFAULT_GAMMA,
        scale: str = "tensor",
        vjp: str = "loop",
    ) -> None:
        _check_gamma(gamma)
        _check_scale(scale)
        super().__init__(encoders=encoders, heads=heads, vjp=vjp)
        self.gamma = float(gamma)
        self.scale = scale
        self._gamma_0d: dict[torch.dtype, Tensor] = {}  # gamma as _scalar passes it

    def weights(self, stats: PairStats) -> tuple[float, float, float]:
        a_m, a_u = mmpareto_weights(stats)
        return a_m, a_u, 2.0

    def combine_all(
        self,
        g_m: list[Tensor],
        g_u: list[Tensor],
        s: list[Tensor],
        stats: list[PairStats],
        s_norms: list[list[float]],
    ) -> tuple[list[Tensor], list[tuple[float, float, float]]]:
        if any(st.conflict for st in stats):
            return super().combine_all(g_m, g_u, s, stats, s_norms)
        # no encoder in conflict: gamma (g_m + g_u) everywhere, one product for them all
        _mul_(s, self.gamma, self._gamma_0d)
        return s, [(0.5, 0.5, self.gamma * math.sqrt(math.fsum(x * x for x in n))) for n in s_norms]

    def combine(
        self,
        g_m: list[Tensor],
        g_u: list[Tensor],
        s: list[Tensor],
        stats: PairStats,
        s_norms: list[float],
    ) -> tuple[list[Tensor], float, float, float]:
        if not stats.conflict:  # (1/2, 1/2): v = g_m + g_u, |v| = |g_m + g_u|, factor gamma
            _mul_(s, self.gamma, self._gamma_0d)
            return s, 0.5, 0.5, self.gamma * math.sqrt(math.fsum(x * x for x in s_norms))
        a_m, a_u = mmpareto_weights(stats)
        if stationary(stats, g_m[0].dtype):  # anti-parallel: v would be rounding noise
            return [torch.zeros_like(t) for t in g_m], a_m, a_u, 0.0
        v = _mul(g_m, 2 * a_m)
        torch._foreach_add_(v, g_u, alpha=2 * a_u)  # v = 2 (a_m g_m + a_u g_u), per tensor
        v_norms = _floats(torch._foreach_norm(v))
        if self.scale == "encoder":
            v_norm = math.sqrt(math.fsum(x * x for x in v_norms))
            f = _factor(math.sqrt(math.fsum(x * x for x in s_norms)), v_norm, self.gamma)
            _mul_(v, f)
            return v, a_m, a_u, f * v_norm
        factors = [_factor(sn, vn, self.gamma) for sn, vn in zip(s_norms, v_norms, strict=True)]
        torch._foreach_mul_(v, factors)  # per-tensor factors (the authors' rescaling)
        norm = math.sqrt(math.fsum((f * vn) ** 2 for f, vn in zip(factors, v_norms, strict=True)))
        return v, a_m, a_u, norm


class OGMGE(MultimodalOnly):
    """OGM-GE: the dominant modality's encoder gradient scaled by ``1 - tanh(alpha rho)``
    plus Gaussian noise with its standard deviation.

    Args:
        alpha: modulation strength (>= 0).
        generator: random generator of the noise (for reproducible runs).
    """

    name = "ogm_ge"

    def __init__(
        self,
        *,
        encoders: Mapping[str, Iterable[Tensor]],
        heads: Iterable[Tensor] = (),
        alpha: float = 0.5,
        generator: torch.Generator | None = None,
        vjp: str = "loop",
    ) -> None:
        if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        super().__init__(encoders=encoders, heads=heads, vjp=vjp)
        if len(self.modalities) < 2:
            raise ValueError(f"OGM-GE needs at least two modalities, got {list(self.modalities)}")
        self.alpha = float(alpha)
        self.generator = generator

    def coefficients(self, confidences: Mapping[str, Tensor | float]) -> dict[str, float]:
        """Modality -> gradient coefficient: ``1 - tanh(alpha rho)`` where ``rho > 1``
        (the dominant modality), else 1."""
        if confidences is None or set(confidences) != set(self.modalities):
            got = None if confidences is None else sorted(confidences)
            raise ValueError(
                f"confidences must have one entry per modality {list(self.modalities)}, got {got}"
            )
        s = {m: float(confidences[m]) for m in self.modalities}
        out = {}
        for m in self.modalities:
            others = sum(s[j] for j in self.modalities if j != m) / (len(self.modalities) - 1)
            rho = s[m] / max(others, 1e-12)
            out[m] = 1.0 - math.tanh(self.alpha * rho) if rho > 1 else 1.0
        return out

    def backward(  # type: ignore[no-untyped-def]
        self, *, multimodal_loss, unimodal_losses, confidences=None, diagnose=False, features=None
    ):
        self._check_losses(multimodal_loss, unimodal_losses)
        coeff = self.coefficients(confidences)  # type: ignore[arg-type]
        # remember earlier .grad so that only this step's contribution is modulated
        before = {id(p): (None if p.grad is None else p.grad.clone()) for p in self._enc_all}
        if diagnose:
            diag = self._per_loss_backward(multimodal_loss, unimodal_losses, features)
        else:
            self._cheap_backward(multimodal_loss, unimodal_losses, features)
            diag = StepDiagnostics()
        for mod in self.modalities:
            k = coeff[mod]
            diag.extra[f"ogm_coeff/{mod}"] = k
            if k >= 1.0:
                continue
            for p in self.encoders[mod]:
                if p.grad is None:
                    continue
                prev = before[id(p)]
                g = p.grad if prev is None else p.grad - prev
                std = g.std() if g.numel() > 1 else g.abs()
                noise = torch.randn(
                    g.shape, generator=self.generator, dtype=g.dtype, device=g.device
                )
                g = g * k + noise * std
                p.grad = g if prev is None else prev + g
        return diag


INTEGRATORS: dict[str, type[GradientIntegrator]] = {
    cls.name: cls for cls in (Uniform, MultimodalOnly, MGDA, PCGrad, OGMGE, MMPareto)
}


def build_integrator(
    name: str,
    *,
    encoders: Mapping[str, Iterable[Tensor]],
    heads: Iterable[Tensor] = (),
    **options: Any,
) -> GradientIntegrator:
    """The integrator registered as ``name`` (see :data:`INTEGRATORS`), built with
    ``options`` (``gamma``/``scale`` for MMPareto, ``alpha``/``generator`` for OGM-GE,
    ``vjp`` for all)."""
    if name not in INTEGRATORS:
        raise ValueError(f"name must be one of {sorted(INTEGRATORS)}, got {name!r}")
    cls = INTEGRATORS[name]
    try:
        return cls(encoders=encoders, heads=heads, **options)
    except TypeError as exc:
        raise ValueError(f"integrator {name!r} does not take options {sorted(options)}") from exc
