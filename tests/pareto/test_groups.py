"""Group integrators: equal to the multimodal integrators on late fusion, equal to the
n-objective rule on full per-loss gradients of a shared encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import (
    GROUP_INTEGRATORS,
    build_group_integrator,
    build_integrator,
    min_norm_simplex,
    mmpareto_combine_n,
    pcgrad_weights,
)

LEGACY = {"uniform": "uniform", "first": "multimodal", "mgda": "mgda", "pcgrad": "pcgrad"}
LEGACY["mmpareto"] = "mmpareto"


def late_model() -> MultimodalClassifier:
    torch.manual_seed(0)
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"), input_shapes=((1, 4, 4), (3, 4, 4)), num_classes=5, hidden=16,
        embed_dim=8,
    )  # fmt: skip
    return MultimodalClassifier(cfg).double()


def late_losses(model):
    g = torch.Generator().manual_seed(1)
    x = {"a": torch.randn(12, 1, 4, 4, generator=g), "b": torch.randn(12, 3, 4, 4, generator=g)}
    y = torch.randint(0, 5, (12,), generator=g)
    out = model({k: v.double() for k, v in x.items()})
    terms = {"multimodal": F.cross_entropy(out["logits"], y)}
    terms.update({m: F.cross_entropy(out["unimodal_logits"][m], y) for m in ("a", "b")})
    return terms


def grads_of(model):
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("method", sorted(GROUP_INTEGRATORS))
def test_two_objective_groups_equal_the_multimodal_integrators(method: str) -> None:
    model = late_model()
    terms = late_losses(model)
    legacy = build_integrator(
        LEGACY[method], encoders=model.encoder_parameters(), heads=model.head_parameters()
    )
    legacy.backward(
        multimodal_loss=terms["multimodal"],
        unimodal_losses={m: terms[m] for m in ("a", "b")},
        diagnose=True,
    )
    want = grads_of(model)
    model.zero_grad(set_to_none=True)
    terms = late_losses(model)
    groups = {m: (ps, ("multimodal", m)) for m, ps in model.encoder_parameters().items()}
    integ = build_group_integrator(method, groups=groups, heads=model.head_parameters())
    diag = integ.backward(losses=terms, diagnose=True).to_dict()
    for a, b in zip(grads_of(model), want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert set(diag) >= {"cos/a", "conflict/b", "weight/a/multimodal", "norm_out/b"}


class MultiTask(nn.Module):
    """A shared encoder and three task heads (one of them of another size)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.enc = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8), nn.Tanh())
        self.heads = nn.ModuleDict({"t0": nn.Linear(8, 4), "t1": nn.Linear(8, 2)})
        self.heads["t2"] = nn.Linear(8, 3)

    def losses(self, seed: int = 3) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(20, 6, generator=g, dtype=torch.float64)
        z = self.enc(x)
        out = {}
        for name, head in self.heads.items():
            y = torch.randint(0, head.out_features, (20,), generator=g)
            out[name] = F.cross_entropy(head(z), y)
        return out


def per_loss(model: MultiTask, terms) -> dict[str, list[torch.Tensor]]:
    params = list(model.enc.parameters())
    return {k: list(torch.autograd.grad(v, params, retain_graph=True)) for k, v in terms.items()}


@pytest.mark.parametrize("method", ["uniform", "mgda", "mmpareto", "pcgrad"])
def test_shared_group_gets_the_rule_on_full_gradients(method: str) -> None:
    model = MultiTask().double()
    terms = model.losses()
    full = per_loss(model, terms)
    objs = ("t0", "t1", "t2")
    heads = list(model.heads.parameters())
    head_want = torch.autograd.grad(sum(terms.values()), heads, retain_graph=True)
    gen = torch.Generator().manual_seed(7)
    options = {"generator": gen} if method == "pcgrad" else {}
    integ = build_group_integrator(
        method, groups={"shared": (model.enc.parameters(), objs)}, heads=heads, **options
    )
    diag = integ.backward(losses=terms, diagnose=method != "uniform").to_dict()
    flat = torch.stack([torch.cat([t.flatten() for t in full[o]]) for o in objs])
    gram = (flat @ flat.T).numpy()
    if method == "mmpareto":
        want = mmpareto_combine_n([full[o] for o in objs])
    else:
        if method == "uniform":
            c = np.ones(3)
        elif method == "mgda":
            c = 3 * min_norm_simplex(gram)
        else:
            c = pcgrad_weights(gram, torch.Generator().manual_seed(7))
        coeff = torch.as_tensor(c)
        want = [sum(coeff[i] * full[o][j] for i, o in enumerate(objs)) for j in range(4)]
    for p, w in zip(model.enc.parameters(), want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-9, atol=1e-12)
    for p, w in zip(heads, head_want, strict=True):
        torch.testing.assert_close(p.grad, w, rtol=1e-9, atol=1e-12)
    if method != "uniform":
        assert "cos/shared/t0~t2" in diag and "weight/shared/t1" in diag


def test_pcgrad_weights_match_vector_projection() -> None:
    """The Gram-form PCGrad equals projecting the vectors themselves (Algorithm 1)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 6))
    c = pcgrad_weights(x @ x.T, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(1)
    total = np.zeros(6)
    for i in range(4):
        order = torch.randperm(4, generator=gen).tolist()
        gi = x[i].copy()
        for j in order:
            if j != i and gi @ x[j] < 0:
                gi = gi - (gi @ x[j]) / (x[j] @ x[j]) * x[j]
        total += gi
    np.testing.assert_allclose(c @ x, total, rtol=1e-12, atol=1e-12)


def test_accumulates_and_validates() -> None:
    model = MultiTask().double()
    objs = ("t0", "t1", "t2")
    lonely = build_group_integrator("mmpareto", groups={"s": (model.enc.parameters(), objs)})
    with pytest.raises(ValueError, match=r"6 trainable parameter\(s\) given neither"):
        lonely.backward(losses=model.losses())  # the heads were forgotten: not silent
    integ = build_group_integrator(
        "mmpareto", groups={"s": (model.enc.parameters(), objs)}, heads=model.heads.parameters()
    )
    integ.backward(losses=model.losses())
    once = [p.grad.clone() for p in model.enc.parameters()]
    integ.backward(losses=model.losses())
    for p, g in zip(model.enc.parameters(), once, strict=True):
        torch.testing.assert_close(p.grad, 2 * g)
    enc = list(model.enc.parameters())
    with pytest.raises(ValueError, match="disjoint"):
        build_group_integrator("uniform", groups={"x": (enc, ("t0",)), "y": (enc[:1], ("t1",))})
    with pytest.raises(ValueError, match="lacks objectives"):
        integ.backward(losses={"t0": model.losses()["t0"]})
    with pytest.raises(ValueError, match="unique objectives"):
        build_group_integrator("uniform", groups={"x": (enc, ("t0", "t0"))})
    with pytest.raises(ValueError, match="name must be one of"):
        build_group_integrator("nash", groups={"x": (enc, ("t0",))})
    with pytest.raises(ValueError, match="does not take options"):
        build_group_integrator("uniform", groups={"x": (enc, ("t0",))}, gamma=2.0)


def test_uniform_restricts_losses_to_their_groups_with_or_without_diagnostics() -> None:
    """Review finding: a loss that is not a group's objective but reaches it went into the
    group through the one-backward path only; now both paths restrict it."""
    got = []
    for diagnose in (False, True):
        model = MultiTask().double()
        terms = model.losses()
        groups = {"shared": (model.enc.parameters(), ("t0", "t1"))}  # t2 is not an objective
        integ = build_group_integrator("uniform", groups=groups, heads=model.heads.parameters())
        integ.backward(losses=terms, diagnose=diagnose)
        got.append([p.grad.clone() for p in model.enc.parameters()])
        want = torch.autograd.grad(
            terms["t0"] + terms["t1"], list(model.enc.parameters()), retain_graph=True
        )
        for g, w in zip(got[-1], want, strict=True):
            torch.testing.assert_close(g, w)


def test_a_head_no_loss_reaches_keeps_grad_none_like_backward() -> None:
    model = MultiTask().double()
    spare = nn.Linear(2, 2).double()  # trained by nothing this step
    objs = ("t0", "t1", "t2")
    for method in ("uniform", "mmpareto"):
        spare.zero_grad(set_to_none=True)
        integ = build_group_integrator(
            method,
            groups={"shared": (model.enc.parameters(), objs)},
            heads=[*model.heads.parameters(), *spare.parameters()],
        )
        integ.backward(losses=model.losses())
        assert all(p.grad is None for p in spare.parameters()), method
