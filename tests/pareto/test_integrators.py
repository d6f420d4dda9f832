"""Integrators: .grad equals the rule on the full per-loss gradients (slow twin), and
properties run over every implementation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import (
    INTEGRATORS,
    OGMGE,
    VJP_MODES,
    MMPareto,
    build_integrator,
    min_norm_weights,
    mmpareto_combine,
    pair_stats,
    split_features,
    true_class_confidence,
)


def make_model(seed: int = 0) -> MultimodalClassifier:
    torch.manual_seed(seed)
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"),
        input_shapes=((1, 4, 4), (3, 4, 4)),
        num_classes=5,
        hidden=16,
        embed_dim=8,
    )
    return MultimodalClassifier(cfg).double()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {"a": torch.randn(12, 1, 4, 4, generator=g), "b": torch.randn(12, 3, 4, 4, generator=g)}
    return {k: v.double() for k, v in x.items()}, torch.randint(0, 5, (12,), generator=g)


def losses(model, x, y):
    out = model(x)
    lm = F.cross_entropy(out["logits"], y)
    lu = {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")}
    conf = {m: true_class_confidence(out["unimodal_logits"][m], y) for m in ("a", "b")}
    return lm, lu, conf


def full_grads(model, loss):
    """The slow twin: a full backward of one loss over every parameter."""
    params = list(model.parameters())
    gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return {id(p): torch.zeros_like(p) if g is None else g for p, g in zip(params, gs, strict=True)}


def reference(model, method, lm, lu):
    """What each method should give, from full per-loss gradients."""
    gm = full_grads(model, lm)
    gu = {m: full_grads(model, lu[m]) for m in lu}
    want = {}
    for p in model.head_parameters():
        want[id(p)] = gm[id(p)] + sum(gu[m][id(p)] for m in lu)
    for mod, params in model.encoder_parameters().items():
        a = [gm[id(p)] for p in params]
        b = [gu[mod][id(p)] for p in params]
        if method == "mmpareto":
            out = mmpareto_combine(a, b, 1.5)
        elif method == "uniform":
            out = [x + y for x, y in zip(a, b, strict=True)]
        elif method == "multimodal":
            out = a
        elif method == "mgda":
            am, au = min_norm_weights(pair_stats(a, b))
            out = [2 * (am * x + au * y) for x, y in zip(a, b, strict=True)]
        elif method == "pcgrad":
            fa = torch.cat([t.flatten() for t in a])
            fb = torch.cat([t.flatten() for t in b])
            d = fa @ fb
            if d < 0:
                pa, pb = fa - d / (fb @ fb) * fb, fb - d / (fa @ fa) * fa
            else:
                pa, pb = fa, fb
            flat = pa + pb
            out, i = [], 0
            for t in a:
                out.append(flat[i : i + t.numel()].view_as(t))
                i += t.numel()
        for p, g in zip(params, out, strict=True):
            want[id(p)] = g
    return want


@pytest.mark.parametrize("method", ["mmpareto", "uniform", "multimodal", "mgda", "pcgrad"])
@pytest.mark.parametrize("diagnose", [False, True])
def test_grad_equals_rule_on_full_per_loss_gradients(method: str, diagnose: bool) -> None:
    model = make_model()
    x, y = batch()
    for step in range(3):  # also after updates, where conflicts appear
        lm, lu, _ = losses(model, x, y)
        want = reference(model, method, lm, lu)
        integ = build_integrator(
            method, encoders=model.encoder_parameters(), heads=model.head_parameters()
        )
        model.zero_grad(set_to_none=True)
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, diagnose=diagnose)
        for p in model.parameters():
            torch.testing.assert_close(p.grad, want[id(p)], rtol=1e-9, atol=1e-12)
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad * (step + 1)


def test_non_separable_losses_use_the_exact_path() -> None:
    """A unimodal loss that reaches another encoder: g_u must still be its own loss's."""
    torch.manual_seed(0)
    enc_a, enc_b, head = (
        nn.Linear(3, 2).double(),
        nn.Linear(3, 2).double(),
        nn.Linear(4, 1).double(),
    )
    xa, xb = torch.randn(5, 3).double(), torch.randn(5, 3).double()
    za, zb = enc_a(xa), enc_b(xb)
    lm = head(torch.cat([za, zb], 1)).square().mean()
    lu = {"a": (za.sum(1) + 0.3 * zb.sum(1)).square().mean(), "b": zb.square().mean()}
    integ = MMPareto(
        encoders={"a": enc_a.parameters(), "b": enc_b.parameters()}, heads=head.parameters()
    )
    integ.backward(multimodal_loss=lm, unimodal_losses=lu)
    assert integ._separable is False
    own = list(enc_a.parameters())
    g_m = torch.autograd.grad(lm, own, retain_graph=True)
    g_u = torch.autograd.grad(lu["a"], own, retain_graph=True)
    for p, w in zip(own, mmpareto_combine(list(g_m), list(g_u)), strict=True):
        torch.testing.assert_close(p.grad, w)


@pytest.mark.parametrize("method", sorted(INTEGRATORS))
def test_every_integrator_fills_finite_grads_and_accumulates(method: str) -> None:
    model = make_model()
    x, y = batch()
    gen = torch.Generator().manual_seed(0)
    opts = {"generator": gen} if method == "ogm_ge" else {}
    integ = build_integrator(
        method, encoders=model.encoder_parameters(), heads=model.head_parameters(), **opts
    )
    lm, lu, conf = losses(model, x, y)
    d1 = integ.backward(multimodal_loss=lm, unimodal_losses=lu, confidences=conf, diagnose=True)
    first = {id(p): p.grad.clone() for p in model.parameters()}
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert set(d1.modalities) == {"a", "b"}
    rec = d1.to_dict()
    assert -1.0 <= rec["cos/a"] <= 1.0 and isinstance(rec["conflict/b"], bool)
    if method != "ogm_ge":  # .grad accumulates like Tensor.backward
        lm, lu, conf = losses(model, x, y)
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, confidences=conf)
        for p in model.parameters():
            torch.testing.assert_close(p.grad, 2 * first[id(p)])


@pytest.mark.parametrize("method", ["mmpareto", "mgda", "pcgrad"])
def test_conflict_free_methods_do_not_conflict(method: str) -> None:
    """Property over the conflict-resolving integrators: in conflict the encoder gradient
    is non-negative against g_m and g_u (MMPareto with one rescaling factor)."""
    gen = torch.Generator().manual_seed(5)
    for trial in range(15):
        enc = nn.Linear(4, 3).double()
        x = torch.randn(6, 4, generator=gen).double()
        z = enc(x)
        t1, t2 = (
            torch.randn(6, 3, generator=gen).double(),
            torch.randn(6, 3, generator=gen).double(),
        )
        lm, lu = (z * t1).sum(), (z * t2).sum()
        params = list(enc.parameters())
        g_m = torch.autograd.grad(lm, params, retain_graph=True)
        g_u = torch.autograd.grad(lu, params, retain_graph=True)
        opts = {"scale": "encoder"} if method == "mmpareto" else {}
        integ = build_integrator(method, encoders={"m": params}, **opts)
        integ.backward(multimodal_loss=lm, unimodal_losses={"m": lu})
        dm = sum((p.grad * g).sum() for p, g in zip(params, g_m, strict=True))
        du = sum((p.grad * g).sum() for p, g in zip(params, g_u, strict=True))
        if pair_stats(list(g_m), list(g_u)).conflict:
            assert dm >= -1e-9 and du >= -1e-9, trial


def test_ogm_ge_coefficients_and_noise() -> None:
    model = make_model()
    integ = OGMGE(
        encoders=model.encoder_parameters(),
        heads=model.head_parameters(),
        alpha=0.5,
        generator=torch.Generator().manual_seed(0),
    )
    k = integ.coefficients({"a": torch.tensor(6.0), "b": torch.tensor(3.0)})
    assert k["b"] == 1.0 and k["a"] == pytest.approx(1 - torch.tanh(torch.tensor(1.0)).item())
    with pytest.raises(ValueError, match="confidences"):
        integ.coefficients({"a": 1.0})


def test_validation_errors_name_the_input() -> None:
    model = make_model()
    enc = model.encoder_parameters()
    with pytest.raises(ValueError, match="encoders"):
        MMPareto(encoders={})
    with pytest.raises(ValueError, match="disjoint"):
        MMPareto(encoders={"a": enc["a"], "b": enc["a"]})
    with pytest.raises(ValueError, match="name must be one of"):
        build_integrator("nash", encoders=enc)
    integ = MMPareto(encoders=enc, heads=model.head_parameters())
    x, y = batch()
    lm, lu, _ = losses(model, x, y)
    with pytest.raises(ValueError, match="unimodal_losses"):
        integ.backward(multimodal_loss=lm, unimodal_losses={"a": lu["a"]})
    with pytest.raises(ValueError, match="multimodal_loss"):
        integ.backward(multimodal_loss=lm.expand(2), unimodal_losses=lu)


def make_conv_model(seed: int = 0) -> MultimodalClassifier:
    torch.manual_seed(seed)
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"),
        input_shapes=((1, 4, 4), (3, 4, 4)),
        num_classes=5,
        encoder="conv",
        hidden=6,
        embed_dim=8,
    )
    return MultimodalClassifier(cfg).double()


def split_losses(model, x, y):
    split = split_features(model.encode(x))
    out = model.forward_from_features(split.fusion, split.unimodal)
    lm = F.cross_entropy(out["logits"], y)
    lu = {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")}
    return split, lm, lu


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
@pytest.mark.parametrize("vjp", VJP_MODES)
@pytest.mark.parametrize("method", sorted(INTEGRATORS))
@pytest.mark.parametrize("diagnose", [False, True])
def test_split_features_path_equals_per_loss_path(
    encoder: str, vjp: str, method: str, diagnose: bool
) -> None:
    """Slow twin of the one-head-backward path: heads on detached leaves, then g_m and g_u
    through the encoders (batched vector-Jacobian product or two) equals per-loss backward
    passes from the losses (itself checked against the rule above), over several steps."""
    model = make_conv_model() if encoder == "conv" else make_model()
    x, y = batch()
    for step in range(3):
        gens = [torch.Generator().manual_seed(step) for _ in range(2)]
        grads = []
        for use_split, gen in zip((False, True), gens, strict=True):
            opts = {"generator": gen} if method == "ogm_ge" else {}
            integ = build_integrator(
                method,
                encoders=model.encoder_parameters(),
                heads=model.head_parameters(),
                vjp=vjp,
                **opts,
            )
            if use_split:
                split, lm, lu = split_losses(model, x, y)
            else:
                split, (lm, lu, _) = None, losses(model, x, y)
            conf = {m: torch.tensor(float(i + 1)) for i, m in enumerate(("a", "b"))}
            model.zero_grad(set_to_none=True)
            d = integ.backward(
                multimodal_loss=lm,
                unimodal_losses=lu,
                confidences=conf,
                diagnose=diagnose,
                features=split,
            )
            grads.append(({id(p): p.grad.clone() for p in model.parameters()}, d.to_dict()))
        (want, d_want), (got, d_got) = grads
        for p in model.parameters():
            torch.testing.assert_close(got[id(p)], want[id(p)], rtol=1e-9, atol=1e-12)
        assert d_got.keys() == d_want.keys()
        for k, v in d_want.items():
            assert d_got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * want[id(p)] * (step + 1)


def test_split_features_rejects_a_mixed_graph() -> None:
    model = make_model()
    x, y = batch()
    integ = MMPareto(encoders=model.encoder_parameters(), heads=model.head_parameters())
    split = split_features(model.encode(x))
    # the unimodal head of "a" reads the fusion leaf: d_m and d_u would mix
    out = model.forward_from_features(
        split.fusion, {"a": split.fusion["a"], "b": split.unimodal["b"]}
    )
    lm = F.cross_entropy(out["logits"], y)
    lu = {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")}
    with pytest.raises(ValueError, match=r"unimodal_losses\['a'\] reaches the fusion features"):
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, features=split)
    # the heads on the encoder outputs themselves: the losses reach the encoders directly
    split = split_features(model.encode(x))
    out = model.forward_from_features(split.encoded)
    lm = F.cross_entropy(out["logits"], y)
    lu = {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")}
    with pytest.raises(ValueError, match="parameters directly"):
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, features=split)
    with pytest.raises(ValueError, match="features must be a SplitFeatures"):
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, features=split.encoded)
    with pytest.raises(ValueError, match="vjp must be one of"):
        MMPareto(encoders=model.encoder_parameters(), vjp="vmap")
    with pytest.raises(ValueError, match=r"features\['a'\] must be an encoder output"):
        split_features({"a": torch.zeros(3, 2)})


def test_classifier_forward_from_features_matches_forward() -> None:
    model = make_model()
    x, _ = batch()
    out, again = model(x), model.forward_from_features(model.encode(x))
    torch.testing.assert_close(again["logits"], out["logits"])
    for m in ("a", "b"):
        torch.testing.assert_close(again["unimodal_logits"][m], out["unimodal_logits"][m])


def test_a_forgotten_parameter_is_an_error_not_a_silent_freeze() -> None:
    model = make_model()
    x, y = batch()
    lm, lu, _ = losses(model, x, y)
    integ = build_integrator("mmpareto", encoders=model.encoder_parameters(), heads=[])
    with pytest.raises(ValueError, match="given neither as a group"):
        integ.backward(multimodal_loss=lm, unimodal_losses=lu)
