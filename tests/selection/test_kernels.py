"""The fused score-block kernels against their slow twin (the plain eager formula)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from curatorch.selection import PairScorer, joint_select, pair_softplus_sums, softplus_poly
from curatorch.selection import kernels as K
from tests.selection.helpers import make_embeddings


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _scorers(size: int, dtype: torch.dtype, **kwargs) -> tuple[PairScorer, PairScorer]:
    learner, reference = make_embeddings(size, dim=24, seed=size, dtype=dtype)
    eager = PairScorer(learner=learner, reference=reference, kernel="eager")
    other = PairScorer(learner=learner, reference=reference, **kwargs)
    return eager, other


def test_softplus_poly_is_accurate_everywhere() -> None:
    x = torch.linspace(-60.0, 60.0, 200_001, dtype=torch.float64)
    exact = torch.log1p(torch.exp(-x.abs())) + x.clamp(min=0)
    rel = ((softplus_poly(x) - exact) / exact).abs().max()
    assert float(rel) < 5e-8
    # in float32: within a few units in the last place of the correctly rounded value
    x32 = x.float()
    exact32 = F.softplus(x32.double(), threshold=1e9)
    got32 = softplus_poly(x32).double()
    assert float(((got32 - exact32) / exact32).abs().max()) < 4e-7


@pytest.mark.parametrize("kernel", ["eager", "blocked"])
@pytest.mark.parametrize(("n", "size", "tile"), [(1, 50, 7), (6, 50, 64), (9, 130, 32)])
def test_pair_sums_follow_the_definition(kernel: str, n: int, size: int, tile: int) -> None:
    g = _gen(n)
    ci, ct = (F.normalize(torch.randn(n, 8, generator=g, dtype=torch.float64), dim=1) for _ in "ab")
    img, txt = (
        F.normalize(torch.randn(size, 8, generator=g, dtype=torch.float64), dim=1) for _ in "ab"
    )
    got = pair_softplus_sums(ci, ct, img, txt, scale=7.0, bias=-3.0, kernel=kernel, tile=tile)
    want = torch.zeros(size, dtype=torch.float64)
    for k in range(size):
        for c in range(n):
            rows = F.softplus(7.0 * ci[c] @ txt[k] - 3.0)
            want[k] += rows + F.softplus(7.0 * ct[c] @ img[k] - 3.0)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_kernel_matches_the_slow_twin(dtype: torch.dtype) -> None:
    """Same indices for the same seed; conditional scores within float tolerance
    (float32: the fused softplus differs from the eager one by rounding only)."""
    eager, fused = _scorers(300, dtype, kernel="compiled", tile=64)
    kwargs = {"batch_size": 60, "chunks": 6, "return_trace": True}
    idx, trace = joint_select(eager, generator=_gen(2), **kwargs)
    fidx, ftrace = joint_select(fused, generator=_gen(2), **kwargs)
    assert torch.equal(idx, fidx)
    tol = {"rtol": 1e-11, "atol": 1e-11} if dtype == torch.float64 else {"rtol": 2e-6, "atol": 2e-5}
    for a, b in zip(trace, ftrace, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_blocked_kernel_matches_for_uneven_tiles_and_chunks() -> None:
    eager, blocked = _scorers(101, torch.float64, kernel="blocked", tile=10)
    a = joint_select(eager, batch_size=37, chunks=5, generator=_gen(4))
    b = joint_select(blocked, batch_size=37, chunks=5, generator=_gen(4))
    assert torch.equal(a, b)


def test_bf16_products_keep_the_scores_close() -> None:
    """bf16 operands round the logits to bf16's 8 bits; sums stay in float32, so the
    conditional scores move by about that relative amount, not more."""
    eager, low = _scorers(400, torch.float32, kernel="blocked", precision="bf16")
    chosen = torch.arange(0, 400, 9)
    a, b = eager.cross_sums(chosen), low.cross_sums(chosen)
    assert b.dtype == torch.float32
    scale = a.abs().max()
    assert float((a - b).abs().max() / scale) < 2e-2


def test_auto_keeps_small_blocks_eager_and_compiles_large_ones() -> None:
    cpu = torch.device("cpu")
    assert K.resolve_kernel("auto", rows=16, columns=1280, device=cpu) == "eager"
    big = K.resolve_kernel("auto", rows=205, columns=16384, device=cpu)
    assert big == ("compiled" if K.compiled_kernel_available(cpu) else "blocked")
    assert K.resolve_kernel("blocked", rows=1, columns=1, device=cpu) == "blocked"


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (FileNotFoundError("no C++ compiler\nmore detail"), "FileNotFoundError: no C\\+\\+"),
        (AssertionError(), "AssertionError: AssertionError\\(\\)"),  # no message at all
    ],
)
def test_a_failed_compilation_falls_back_with_one_warning(monkeypatch, error, shown) -> None:
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(K, "_compiled_fn", lambda device_type, exact: broken)
    monkeypatch.setattr(K, "AUTO_COMPILE_PAIRS", 1)
    monkeypatch.setattr(K, "_broken", {})
    eager, auto = _scorers(60, torch.float64, kernel="auto", tile=16)
    chosen = torch.arange(5)
    with pytest.warns(RuntimeWarning, match="compiled score kernel failed on cpu.*" + shown):
        got = auto.cross_sums(chosen)
    torch.testing.assert_close(got, eager.cross_sums(chosen))
    assert not K.compiled_kernel_available("cpu") and "cpu" in K.compile_failures()
    assert K.resolve_kernel("auto", rows=5, columns=60, device=torch.device("cpu")) == "blocked"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: later calls tile without compiling
        torch.testing.assert_close(auto.cross_sums(chosen), got)
    _, explicit = _scorers(60, torch.float64, kernel="compiled", tile=16)
    with pytest.raises(type(error)):
        explicit.cross_sums(chosen)


def test_other_errors_are_not_taken_for_a_failed_compilation(monkeypatch) -> None:
    def fails(*args, **kwargs):
        raise RuntimeError("a real error in the inputs")

    monkeypatch.setattr(K, "_compiled_fn", lambda device_type, exact: fails)
    monkeypatch.setattr(K, "AUTO_COMPILE_PAIRS", 1)
    monkeypatch.setattr(K, "_broken", {})
    _, auto = _scorers(60, torch.float64, kernel="auto", tile=16)
    with pytest.raises(RuntimeError, match="a real error"):
        auto.cross_sums(torch.arange(5))
    assert K.compiled_kernel_available("cpu")


def test_compiled_bf16_matches_the_blocked_bf16() -> None:
    _, blocked = _scorers(300, torch.float32, kernel="blocked", precision="bf16", tile=64)
    _, fused = _scorers(300, torch.float32, kernel="compiled", precision="bf16", tile=64)
    chosen = torch.arange(0, 300, 7)
    torch.testing.assert_close(
        fused.cross_sums(chosen), blocked.cross_sums(chosen), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"kernel": "fast"}, "kernel"),
        ({"precision": "fp8"}, "precision"),
        ({"precision": "tf32"}, "tf32"),
        ({"tile": 0}, "tile"),
    ],
)
def test_scorer_options_are_validated(kwargs: dict, named: str) -> None:
    learner, reference = make_embeddings(20)
    with pytest.raises(ValueError, match=named):
        PairScorer(learner=learner, reference=reference, **kwargs)
