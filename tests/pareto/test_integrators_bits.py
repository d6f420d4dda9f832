"""The multimodal integrators' fast paths keep the bits of their slow twins.

The step-time work on MMPareto (``benchmarks/pareto_step.py``) must not change a rule's
results: each shortcut (the unimodal losses as roots of one backward instead of their
sum, CPU products with a 0-d float64 factor instead of the Python scalar, per-tensor
``float()`` read-backs instead of one stack) is compared bit for bit (``torch.equal``)
with the plain formulation, and the integrators' ``.grad`` with a direct per-tensor
transcription of the rule that uses none of them, on a float32 model over steps that
include conflicts.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import build_integrator, min_norm_weights, mmpareto_weights
from curatorch.pareto.integrators import _floats, _mul, _mul_
from curatorch.pareto.rule import PairStats, _factor, stationary


def make_model(seed: int = 0) -> MultimodalClassifier:
    torch.manual_seed(seed)
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"),
        input_shapes=((1, 4, 4), (3, 4, 4)),
        num_classes=5,
        hidden=16,
        embed_dim=8,
    )
    return MultimodalClassifier(cfg)  # float32: the dtype whose products the shortcut keeps


def losses(model: MultimodalClassifier, step: int):
    g = torch.Generator().manual_seed(step)
    x = {"a": torch.randn(12, 1, 4, 4, generator=g), "b": torch.randn(12, 3, 4, 4, generator=g)}
    y = torch.randint(0, 5, (12,), generator=g)
    out = model(x)
    lm = F.cross_entropy(out["logits"], y)
    return lm, {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_cpu_products_keep_the_python_scalars_bits(dtype: torch.dtype) -> None:
    """The slow twin: ``torch._foreach_mul(_)`` with the Python scalar (bfloat16 and
    float16 keep it: their products with a 0-d tensor round differently)."""
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        ts = [
            (torch.randn(n, generator=gen, dtype=torch.float64) * 10.0 ** (trial % 7 - 3)).to(dtype)
            for n in (1, 7, 64, 300)
        ]
        c = float(torch.randn((), generator=gen, dtype=torch.float64)) * 10.0 ** (trial % 5 - 2)
        want = torch._foreach_mul(ts, c)
        got = _mul(ts, c)
        assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True)), (trial, c)
        cache: dict[torch.dtype, torch.Tensor] = {}
        for _ in range(2):  # the second time from the cache
            inplace, want_ = [t.clone() for t in ts], [t.clone() for t in ts]
            _mul_(inplace, c, cache)
            torch._foreach_mul_(want_, c)
            assert all(torch.equal(a, b) for a, b in zip(inplace, want_, strict=True)), (trial, c)
        assert len(cache) == (1 if dtype in (torch.float32, torch.float64) else 0)
    assert _mul([], 2.0) == []
    mixed = [torch.randn(5, generator=gen), torch.randn(5, generator=gen, dtype=torch.float64)]
    got, want = _mul(mixed, 1.3), torch._foreach_mul(mixed, 1.3)  # the Python scalar
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_floats_equal_one_stacked_read_back() -> None:
    gen = torch.Generator().manual_seed(1)
    norms = torch._foreach_norm([torch.randn(n, generator=gen) for n in (3, 64, 1000)])
    assert _floats(norms) == torch.stack(norms).tolist()


def test_unimodal_roots_give_the_bits_of_their_sums_backward() -> None:
    model = make_model()
    lm, lu = losses(model, 0)
    integ = build_integrator(
        "mmpareto", encoders=model.encoder_parameters(), heads=model.head_parameters()
    )
    inputs = integ._enc_all + integ.heads
    want_m = torch.autograd.grad(lm, inputs, retain_graph=True, allow_unused=True)
    want_u = torch.autograd.grad(lu["a"] + lu["b"], inputs, retain_graph=True, allow_unused=True)
    integ._check_losses(lm, lu)
    g_m, g_u, heads = integ._per_loss_grads(lm, lu)
    n = len(integ._enc_all)
    assert all(torch.equal(a, b) for a, b in zip(g_m, want_m[:n], strict=True))
    assert all(torch.equal(a, b) for a, b in zip(g_u, want_u[:n], strict=True))
    for got, a, b in zip(heads, want_m[n:], want_u[n:], strict=True):
        assert torch.equal(got, a if b is None else b if a is None else a + b)


def _direct_encoder(method: str, g_m: list, g_u: list, gamma: float = 1.5) -> list:
    """One encoder's gradient by the rule, per tensor, with plain tensor ops and Python
    scalars (no foreach, no 0-d factors): the slow twin of the integrators' combine."""
    s = [a + b for a, b in zip(g_m, g_u, strict=True)]
    norm = [float(torch.linalg.vector_norm(t)) for t in (*g_m, *g_u, *s)]
    k = len(g_m)
    mm, uu, ss = (math.fsum(x * x for x in norm[i * k : (i + 1) * k]) for i in range(3))
    stats = PairStats(mm=mm, mu=(ss - mm - uu) / 2, uu=uu)
    if method == "mmpareto":
        if not stats.conflict:
            return [t * gamma for t in s]
        if stationary(stats, g_m[0].dtype):
            return [torch.zeros_like(t) for t in g_m]
        a_m, a_u = mmpareto_weights(stats)
        v = [torch.add(a * (2 * a_m), b, alpha=2 * a_u) for a, b in zip(g_m, g_u, strict=True)]
        v_norms = [float(torch.linalg.vector_norm(t)) for t in v]
        return [t * _factor(norm[2 * k + i], v_norms[i], gamma) for i, t in enumerate(v)]
    if method == "mgda":
        (w_m, w_u), mult = min_norm_weights(stats), 2.0
    else:  # pcgrad
        c_m = stats.mu / stats.uu if stats.mu < 0 and stats.uu > 0 else 0.0
        c_u = stats.mu / stats.mm if stats.mu < 0 and stats.mm > 0 else 0.0
        (w_m, w_u), mult = (1.0 - c_u, 1.0 - c_m), 1.0
    if w_m == w_u:
        return [t * (mult * w_m) for t in s]
    return [torch.add(a * (mult * w_m), b, alpha=mult * w_u) for a, b in zip(g_m, g_u, strict=True)]


@pytest.mark.parametrize("method", ["mmpareto", "mgda", "pcgrad"])
def test_integrator_keeps_the_bits_of_the_direct_rule(method: str) -> None:
    model = make_model()
    enc, heads = model.encoder_parameters(), model.head_parameters()
    integ = build_integrator(method, encoders=enc, heads=heads)
    conflicts = 0
    for step in range(40):
        lm, lu = losses(model, step)
        inputs = [p for ps in enc.values() for p in ps] + heads
        raw_m = torch.autograd.grad(lm, inputs, retain_graph=True, allow_unused=True)
        raw_u = torch.autograd.grad(lu["a"] + lu["b"], inputs, retain_graph=True, allow_unused=True)
        want, start = {}, 0
        for ps in enc.values():
            part = slice(start, start + len(ps))
            for p, g in zip(ps, _direct_encoder(method, raw_m[part], raw_u[part]), strict=True):
                want[id(p)] = g
            start += len(ps)
        for p, a, b in zip(heads, raw_m[start:], raw_u[start:], strict=True):
            want[id(p)] = b if a is None else a if b is None else a + b
        model.zero_grad(set_to_none=True)
        diag = integ.backward(multimodal_loss=lm, unimodal_losses=lu)
        conflicts += sum(d.conflict for d in diag.modalities.values())
        for p in model.parameters():
            assert torch.equal(p.grad, want[id(p)]), (method, step)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
    assert conflicts > 0  # both branches of the rule were compared


def test_engine_call_gives_the_bits_of_autograd_grad(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_grad`` (the engine run without ``torch.autograd.grad``'s argument handling) and
    its fallback (``torch.autograd.grad`` itself) against ``torch.autograd.grad``."""
    from curatorch.pareto import integrators

    model = make_model()
    inputs = list(model.parameters())
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(integrators, "_engine_run_backward", None)
        lm, lu = losses(model, 3)
        want_m = torch.autograd.grad(lm, inputs, retain_graph=True, allow_unused=True)
        want_u = torch.autograd.grad(
            [lu["a"], lu["b"]], inputs, retain_graph=True, allow_unused=True
        )
        got_m = integrators._grad((lm,), inputs, retain_graph=True)
        got_u = integrators._grad((lu["a"], lu["b"]), inputs, retain_graph=False)
        for got, want in ((got_m, want_m), (got_u, want_u)):
            assert len(got) == len(want)
            for a, b in zip(got, want, strict=True):
                assert (a is None and b is None) or torch.equal(a, b)
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            integrators._grad((lu["a"],), inputs, retain_graph=False)
