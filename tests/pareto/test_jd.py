"""MMPareto as a torchjd aggregator, and agreement of curatorch's MGDA and PCGrad with
torchjd's (run with ``-s`` to see the largest differences found)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytest.importorskip("torchjd")

from torchjd.aggregation import (
    MGDA as JdMGDA,
)
from torchjd.aggregation import (
    GramianWeightedAggregator,
    MGDAWeighting,
    PCGradWeighting,
)
from torchjd.aggregation import PCGrad as JdPCGrad
from torchjd.autogram import Engine
from torchjd.autojac import backward, jac_to_grad, mtl_backward

from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import (
    MMPareto,
    PairStats,
    min_norm_simplex,
    min_norm_weights,
    mmpareto_combine,
    mmpareto_combine_n,
    pcgrad_weights,
)
from curatorch.pareto.jd import (
    MMParetoAggregator,
    MMParetoWeighting,
    parameter_sizes,
)

PARETO_SRC = Path(__file__).resolve().parents[2] / "src" / "curatorch" / "pareto"


def jacobian(m: int, n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[m, n]`` random rows, pulled against row 0 so that most cases conflict."""
    g = torch.Generator().manual_seed(seed)
    mat = torch.randn(m, n, generator=g, dtype=dtype)
    pull = torch.rand(m - 1, 1, generator=g, dtype=dtype)
    mat[1:] -= pull * mat[0] * 1.5
    return mat


def random_sizes(n_tensors: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 9, (n_tensors,), generator=g).tolist()


def report(name: str, worst: float, cases: int) -> None:
    print(f"\n[agreement] {name}: largest difference {worst:.3g} over {cases} cases")


# --------------------------------------------------------------------- the aggregator
@pytest.mark.parametrize("scale", ["tensor", "encoder"])
@pytest.mark.parametrize("with_sizes", [True, False])
def test_aggregator_equals_mmpareto_combine_n(scale: str, with_sizes: bool) -> None:
    worst, cases, conflicts = 0.0, 0, 0
    for m in range(2, 7):
        for trial in range(6):
            seed = 100 * m + trial
            sizes = random_sizes(4, seed) if with_sizes else None
            n = sum(sizes) if sizes else 13
            mat = jacobian(m, n, seed)
            agg = MMParetoAggregator(scale=scale, sizes=sizes)
            got = agg(mat)  # [n]
            rows = [list(r.split(sizes or [n])) for r in mat]
            want = torch.cat(mmpareto_combine_n(rows, scale=scale))
            assert got.shape == (n,) and got.dtype == mat.dtype
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
            worst = max(worst, float((got - want).abs().max()))
            cases += 1
            conflicts += bool(((mat @ mat.T) <= 0).any())
    assert conflicts > cases // 2  # the comparison covers the rule's conflict branch
    report(f"MMParetoAggregator vs mmpareto_combine_n ({scale}, sizes={with_sizes})", worst, cases)


def test_without_sizes_both_scales_coincide_and_sizes_matter() -> None:
    differ = 0
    for seed in range(10):
        mat = jacobian(3, 12, seed)
        a = MMParetoAggregator(scale="tensor")(mat)
        torch.testing.assert_close(a, MMParetoAggregator(scale="encoder")(mat))
        per_tensor = MMParetoAggregator(scale="tensor", sizes=[5, 4, 3])(mat)
        differ += not torch.allclose(a, per_tensor)
    assert differ > 0


def test_zero_rows_are_dropped_and_one_row_is_gamma_g() -> None:
    for seed in range(8):
        pair = jacobian(2, 11, seed)
        sizes = [6, 5]
        with_zero = torch.cat([pair, torch.zeros(1, 11, dtype=pair.dtype)])  # (g_m, g_u, 0)
        got = MMParetoAggregator(sizes=sizes)(with_zero)
        want = torch.cat(mmpareto_combine(list(pair[0].split(sizes)), list(pair[1].split(sizes))))
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    row = jacobian(2, 7, 0)[:1]
    torch.testing.assert_close(MMParetoAggregator(gamma=2.0)(row), 2.0 * row[0])
    empty = MMParetoAggregator()(torch.zeros(0, 5))
    assert torch.equal(empty, torch.zeros(5))


def test_aggregator_validates_its_parameters() -> None:
    for bad in ([0, 3], [-1], [2.5], [True, 3], "ab", [], 7):
        with pytest.raises(ValueError, match="sizes"):
            MMParetoAggregator(sizes=bad)
    with pytest.raises(ValueError, match=r"sizes must sum .* n=10, got sizes summing to 9"):
        MMParetoAggregator(sizes=[4, 5])(torch.ones(2, 10))
    with pytest.raises(ValueError, match="gamma"):
        MMParetoAggregator(gamma=0.0)
    with pytest.raises(ValueError, match="scale"):
        MMParetoAggregator(scale="layer")
    with pytest.raises(ValueError, match="solver"):
        MMParetoAggregator(solver="qp")
    with pytest.raises(ValueError, match="matrix"):  # torchjd's own check
        MMParetoAggregator()(torch.ones(3))
    with pytest.raises(ValueError, match="gamma"):
        MMParetoWeighting(gamma=-1.0)
    with pytest.raises(ValueError, match="gramian"):
        MMParetoWeighting()(torch.ones(2, 3))
    agg = MMParetoAggregator(sizes=(3, 4))
    assert (
        repr(agg) == "MMParetoAggregator(gamma=1.5, scale='tensor', sizes=[3, 4], solver='wolfe')"
    )
    assert str(agg) == "MMPareto"
    assert parameter_sizes([torch.zeros(2, 3), torch.zeros(4)]) == [6, 4]


def test_solvers_agree_through_the_aggregator() -> None:
    for seed in range(5):
        mat = jacobian(5, 20, seed)
        want = MMParetoAggregator(solver="enumerate")(mat)
        torch.testing.assert_close(MMParetoAggregator()(mat), want, rtol=1e-9, atol=1e-12)


def test_pareto_package_does_not_import_torchjd() -> None:
    for path in sorted(PARETO_SRC.glob("*.py")):
        if path.name == "jd.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            bad = [x for x in names if x.startswith("torchjd") or x == "curatorch.pareto.jd"]
            assert not bad, f"{path.name} imports {bad}"


def test_missing_torchjd_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in sys.modules if k == "torchjd" or k.startswith("torchjd.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "curatorch.pareto.jd", raising=False)
    with pytest.raises(ImportError, match=r"curatorch\[jd\]"):
        importlib.import_module("curatorch.pareto.jd")


# ------------------------------------------------------------------- the weighting
def test_weighting_equals_the_encoder_scale() -> None:
    worst, cases = 0.0, 0
    for m in range(1, 7):
        for trial in range(4):
            mat = jacobian(m, 15, 10 * m + trial)
            got = GramianWeightedAggregator(MMParetoWeighting())(mat)
            want = MMParetoAggregator(scale="encoder", sizes=[5, 10])(mat)
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)
            worst = max(worst, float((got - want).abs().max() / want.abs().max()))
            cases += 1
    report("GramianWeightedAggregator(MMParetoWeighting) vs encoder scale (rel.)", worst, cases)


def test_weighting_through_jac_to_grad_and_autogram() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    params = list(model.parameters())
    x, y = torch.randn(10, 5).double(), torch.randn(10, 3).double()

    def losses() -> torch.Tensor:
        return ((model(x) - y) ** 2).mean(0)  # [3] one loss per output

    per = [list(torch.autograd.grad(loss, params, retain_graph=True)) for loss in losses()]
    want = mmpareto_combine_n(per, scale="encoder")
    for optimize in (False, True):
        model.zero_grad(set_to_none=True)
        backward(losses(), inputs=params)
        agg = GramianWeightedAggregator(MMParetoWeighting())
        w = jac_to_grad(params, agg, optimize_gramian_computation=optimize)
        assert w.shape == (3,)
        for p, t in zip(params, want, strict=True):
            torch.testing.assert_close(p.grad, t, rtol=1e-10, atol=1e-13)
    model.zero_grad(set_to_none=True)
    engine = Engine(model, batch_dim=None)
    loss_vec = losses()
    loss_vec.backward(MMParetoWeighting()(engine.compute_gramian(loss_vec)))
    for p, t in zip(params, want, strict=True):
        torch.testing.assert_close(p.grad, t, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------- end to end
def late_model() -> MultimodalClassifier:
    torch.manual_seed(0)
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"), input_shapes=((1, 4, 4), (3, 4, 4)), num_classes=5, hidden=16,
        embed_dim=8,
    )  # fmt: skip
    return MultimodalClassifier(cfg).double()


def late_losses(model: MultimodalClassifier, seed: int) -> list[torch.Tensor]:
    """``[L_mm, L_a, L_b]``; the unimodal labels are shifted so that encoders conflict."""
    g = torch.Generator().manual_seed(seed)
    x = {"a": torch.randn(12, 1, 4, 4, generator=g), "b": torch.randn(12, 3, 4, 4, generator=g)}
    y = torch.randint(0, 5, (12,), generator=g)
    out = model({k: v.double() for k, v in x.items()})
    uni = [F.cross_entropy(out["unimodal_logits"][m], (y + 1 + i) % 5) for i, m in enumerate("ab")]
    return [F.cross_entropy(out["logits"], y), *uni]


def torchjd_late_step(model: MultimodalClassifier, losses, scale: str, mode: str) -> None:
    """``mode``: ``"all"`` one backward over every encoder, ``"group"`` one per encoder
    (rows ``(g_m, g_u, 0)`` both), ``"pair"`` one per encoder of ``[L_mm, L_k]``."""
    groups = model.encoder_parameters()
    if mode == "all":
        backward(losses, inputs=[p for ps in groups.values() for p in ps], retain_graph=True)
    for k, (name, params) in enumerate(groups.items()):
        if mode == "group":
            backward(losses, inputs=params, retain_graph=True)
        elif mode == "pair":
            backward([losses[0], losses[1 + k]], inputs=params, retain_graph=True)
        assert params[0].jac.shape[0] == (2 if mode == "pair" else 3), name
        jac_to_grad(params, MMParetoAggregator(scale=scale, sizes=parameter_sizes(params)))
    torch.autograd.backward(sum(losses), inputs=model.head_parameters())


@pytest.mark.parametrize("scale", ["tensor", "encoder"])
def test_late_fusion_torchjd_equals_the_mmpareto_integrator(scale: str) -> None:
    model = late_model()
    worst, cases, conflicts = 0.0, 0, 0
    for seed in range(3):
        for mode in ("all", "group", "pair"):
            model.zero_grad(set_to_none=True)
            terms = late_losses(model, seed)
            integ = MMPareto(
                encoders=model.encoder_parameters(), heads=model.head_parameters(), scale=scale
            )
            diag = integ.backward(
                multimodal_loss=terms[0], unimodal_losses={"a": terms[1], "b": terms[2]}
            )
            conflicts += sum(d.conflict for d in diag.modalities.values())
            want = [p.grad.clone() for p in model.parameters()]
            model.zero_grad(set_to_none=True)
            torchjd_late_step(model, late_losses(model, seed), scale, mode)
            for p, w in zip(model.parameters(), want, strict=True):
                torch.testing.assert_close(p.grad, w, rtol=1e-9, atol=1e-12)
                worst = max(worst, float((p.grad - w).abs().max() / w.abs().max()))
            cases += 1
    assert conflicts >= cases  # most encoders conflict
    report(f"torchjd backward+jac_to_grad vs MMPareto integrator ({scale}, rel.)", worst, cases)


class MultiTask(nn.Module):
    """A shared encoder and three task heads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.enc = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 8), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(8, 4), nn.Linear(8, 2), nn.Linear(8, 3)])

    def losses(self, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(20, 6, generator=g, dtype=torch.float64)
        z = self.enc(x)
        ys = [torch.randint(0, h.out_features, (20,), generator=g) for h in self.heads]
        return z, [F.cross_entropy(h(z), y) for h, y in zip(self.heads, ys, strict=True)]


@pytest.mark.parametrize("scale", ["tensor", "encoder"])
def test_mtl_backward_shared_gradient_equals_the_n_rule(scale: str) -> None:
    model = MultiTask().double()
    shared = list(model.enc.parameters())
    worst = 0.0
    for seed in range(3):
        _, terms = model.losses(seed)
        per = [list(torch.autograd.grad(t, shared, retain_graph=True)) for t in terms]
        heads = [torch.autograd.grad(t, list(h.parameters()), retain_graph=True) for t, h in
                 zip(terms, model.heads, strict=True)]  # fmt: skip
        want = mmpareto_combine_n(per, scale=scale)
        model.zero_grad(set_to_none=True)
        z, terms = model.losses(seed)
        mtl_backward(terms, features=z, shared_params=shared)
        jac_to_grad(shared, MMParetoAggregator(scale=scale, sizes=parameter_sizes(shared)))
        for p, w in zip(shared, want, strict=True):
            torch.testing.assert_close(p.grad, w, rtol=1e-10, atol=1e-13)
            worst = max(worst, float((p.grad - w).abs().max() / w.abs().max()))
        for h, hw in zip(model.heads, heads, strict=True):
            for p, w in zip(h.parameters(), hw, strict=True):
                torch.testing.assert_close(p.grad, w)
    report(f"mtl_backward+jac_to_grad vs mmpareto_combine_n ({scale}, rel.)", worst, 3)


# ---------------------------------------------------------- MGDA against torchjd's
def gram_of(mat: torch.Tensor) -> np.ndarray:
    return (mat @ mat.T).numpy()


@pytest.mark.parametrize("epsilon,max_iters", [(1e-3, 100), (1e-8, 400)])
def test_frank_wolfe_solver_is_torchjds_mgda(epsilon: float, max_iters: int) -> None:
    """curatorch's ``solver="frank_wolfe"`` runs torchjd's ``MGDAWeighting`` iterations."""
    worst, cases = 0.0, 0
    for m in range(2, 7):
        for trial in range(5):
            mat = jacobian(m, 3 * m + 5, 50 * m + trial)
            want = MGDAWeighting(epsilon=epsilon, max_iters=max_iters)(mat @ mat.T).numpy()
            got = min_norm_simplex(
                gram_of(mat), solver="frank_wolfe", tol=epsilon, max_iters=max_iters
            )
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
            worst, cases = max(worst, float(np.abs(got - want).max())), cases + 1
    report(f"frank_wolfe vs MGDAWeighting({epsilon}, {max_iters}) weights", worst, cases)


def mgda_gaps(mat: torch.Tensor, weighting: MGDAWeighting) -> tuple[float, float, float]:
    """``(|w_exact - w_jd|_max, |d_exact - d_jd|_max / max|g_i|, (|d_jd|^2 - |d_exact|^2) /
    max|g_i|^2)`` for the exact min-norm weights against torchjd's Frank-Wolfe."""
    w_ex = min_norm_simplex(gram_of(mat))
    w_jd = weighting(mat @ mat.T).numpy()
    d_ex, d_jd = w_ex @ mat.numpy(), w_jd @ mat.numpy()
    scale = float(np.max(np.sum(mat.numpy() ** 2, axis=1)))
    dist = float(np.abs(d_ex - d_jd).max()) / np.sqrt(scale)
    return float(np.abs(w_ex - w_jd).max()), dist, float(d_jd @ d_jd - d_ex @ d_ex) / scale


def test_mgda_exact_min_norm_against_torchjd() -> None:
    """m = 2: Frank-Wolfe's first line search is exact, so they agree to rounding. m >= 3:
    Frank-Wolfe converges slowly (no away steps); the exact point is never worse."""
    tight = MGDAWeighting(epsilon=1e-10, max_iters=1000)
    for weighting, name in ((MGDAWeighting(), "defaults"), (tight, "eps 1e-10, 1000 iters")):
        worst2, worst_w, worst_d, worst_gap, cases = 0.0, 0.0, 0.0, 0.0, 0
        for m in range(2, 7):
            for trial in range(4):
                dw, dd, gap = mgda_gaps(jacobian(m, 3 * m + 5, 70 * m + trial), weighting)
                assert gap >= -1e-12  # the exact min-norm point is the least norm
                if m == 2:
                    assert dw <= 1e-12 and dd <= 1e-12
                    worst2 = max(worst2, dw)
                else:
                    worst_w, worst_d = max(worst_w, dw), max(worst_d, dd)
                    worst_gap = max(worst_gap, gap)
                cases += 1
        assert worst_gap <= (1e-2 if weighting is not tight else 1e-3)
        report(f"MGDA m=2 weights, exact vs torchjd ({name})", worst2, 4)
        report(f"MGDA m>=3 weights, exact vs torchjd ({name})", worst_w, cases - 4)
        report(f"MGDA m>=3 vector / max|g|, exact vs torchjd ({name})", worst_d, cases - 4)
        report(f"MGDA m>=3 norm^2 gap / max|g|^2 ({name})", worst_gap, cases - 4)


def test_mgda_normalisation_and_zero_rows_differ() -> None:
    """curatorch's MGDA integrators use ``k w`` (torchjd's MGDA: ``w``), and for k = 2 the
    authors' clamps: with a zero gradient curatorch gives ``2 * 0.001 g`` where torchjd's
    MGDA gives the exact min-norm point, zero; MMPareto drops the zero row: ``gamma g``."""
    from curatorch.pareto import GroupMGDA

    param = torch.zeros(1, requires_grad=True)
    for m in (2, 3, 4):
        mat = jacobian(m, 12, m)
        integ = GroupMGDA(groups={"g": ([param], tuple(f"o{i}" for i in range(m)))})
        c, _ = integ.coefficients(gram_of(mat), mat.dtype)
        np.testing.assert_allclose(c / m, MGDAWeighting(1e-10, 1000)(mat @ mat.T).numpy(),
                                   atol=1e-12 if m == 2 else 2e-2)  # fmt: skip
        if m == 2:
            a_m, a_u = min_norm_weights(PairStats(*gram_of(mat)[[0, 0, 1], [0, 1, 1]]))
            torch.testing.assert_close(JdMGDA()(mat) * 2, 2 * (a_m * mat[0] + a_u * mat[1]))
    g = jacobian(2, 9, 5)[0]
    pair = torch.stack([g, torch.zeros_like(g)])  # (g, 0)
    assert torch.equal(JdMGDA()(pair), torch.zeros_like(g))
    a_m, a_u = min_norm_weights(PairStats(float(g @ g), 0.0, 0.0))
    assert (a_m, a_u) == pytest.approx((0.001, 0.999))
    torch.testing.assert_close(MMParetoAggregator(gamma=1.5)(pair), 1.5 * g)
    triple = torch.cat([jacobian(2, 9, 6), torch.zeros(1, 9, dtype=torch.float64)])
    assert torch.equal(JdMGDA()(triple), torch.zeros(9, dtype=torch.float64))
    w = min_norm_simplex(gram_of(triple))
    assert np.abs(w @ triple.numpy()).max() <= 1e-12  # curatorch's n-solver: zero too


# -------------------------------------------------------- PCGrad against torchjd's
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pcgrad_weights_equal_torchjd_with_the_same_seed(dtype: torch.dtype) -> None:
    worst_w, worst_v, cases = 0.0, 0.0, 0
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for m in range(1, 7):
        for trial in range(6):
            mat = jacobian(m, 2 * m + 4, 30 * m + trial, dtype)
            seed = 1000 * m + trial
            torch.manual_seed(seed)
            want = PCGradWeighting()(mat @ mat.T).double().numpy()
            torch.manual_seed(seed)
            vec = JdPCGrad()(mat)
            got = pcgrad_weights(gram_of(mat.double()), torch.Generator().manual_seed(seed))
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
            ours = torch.as_tensor(got, dtype=dtype) @ mat
            torch.testing.assert_close(vec, ours, rtol=10 * tol, atol=10 * tol)
            worst_w = max(worst_w, float(np.abs(got - want).max()))
            worst_v = max(worst_v, float((vec - ours).abs().max() / ours.abs().max()))
            cases += 1
    report(f"PCGrad weights vs PCGradWeighting ({dtype})", worst_w, cases)
    report(f"PCGrad vector vs torchjd PCGrad ({dtype}, rel.)", worst_v, cases)


def test_pcgrad_order_and_random_draws() -> None:
    """m = 2: order irrelevant, curatorch draws nothing (torchjd draws from the global
    generator anyway). m >= 3: the order matters, so agreeing needs the same seed."""
    mat = jacobian(2, 8, 1)
    state = torch.get_rng_state()
    ours = pcgrad_weights(gram_of(mat))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_allclose(PCGradWeighting()(mat @ mat.T).numpy(), ours, atol=1e-12)
    assert not torch.equal(torch.get_rng_state(), state)
    from curatorch.pareto import PCGrad as CuPCGrad

    integ = CuPCGrad(encoders={"a": [torch.zeros(1, requires_grad=True)]})
    gram = gram_of(mat)
    w_m, w_u, mult = integ.weights(PairStats(gram[0, 0], gram[0, 1], gram[1, 1]))
    np.testing.assert_allclose([w_m * mult, w_u * mult], ours, atol=1e-12)
    differs = 0
    for seed in range(20):
        mat = jacobian(5, 14, seed)
        a = pcgrad_weights(gram_of(mat), torch.Generator().manual_seed(seed))
        b = pcgrad_weights(gram_of(mat), torch.Generator().manual_seed(seed + 1))
        differs += not np.allclose(a, b)
    assert differs > 0
