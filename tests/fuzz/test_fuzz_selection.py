"""Fuzzed selectors: any valid ``B, f, N`` and score scale gives exactly ``b`` distinct
in-range indices and finite scores; invalid input is a ValueError naming the parameter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from curatorch.selection import (
    ModelEmbeddings,
    PairScorer,
    batch_score,
    batch_size_for,
    dense_joint_select,
    gibbs_select,
    gumbel_topk,
    independent_select,
    joint_select,
    random_select,
)

FAST = settings(max_examples=60, deadline=None)

# a power of ten: embedding norms, logit scales and biases from tiny to huge
magnitudes = st.integers(-30, 30).map(lambda e: 10.0**e)


def _embeddings(
    size: int, dim: int, *, norm: float, scale: float, bias: float, dtype, seed: int
) -> ModelEmbeddings:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(size, dim, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(size, dim, generator=g, dtype=torch.float64), dim=-1)
    return ModelEmbeddings((img * norm).to(dtype), (txt * norm).to(dtype), scale, bias)


def _check_indices(idx: torch.Tensor, b: int, size: int, name: str) -> None:
    assert idx.dtype == torch.int64, name
    assert idx.numel() == b, name
    assert idx.unique().numel() == b, name
    assert int(idx.min()) >= 0 and int(idx.max()) < size, name


@st.composite
def problems(draw: st.DrawFn) -> dict:
    """A valid super-batch, filter ratio and chunk count, and embeddings at some scale."""
    chunks = draw(st.integers(1, 8))
    super_batch = draw(st.integers(chunks, 64))
    # f with (1 - f) B >= N: some examples are kept per chunk
    f_max = 1.0 - chunks / super_batch
    f = draw(st.floats(0.0, max(0.0, min(f_max, 0.99)), allow_nan=False))
    return {
        "super_batch": super_batch,
        "filter_ratio": f,
        "chunks": chunks,
        "dim": draw(st.integers(1, 8)),
        "norm": draw(st.sampled_from([1.0, 1.0, 1e-20, 1e-6, 1e3, 1e15])),
        "scale": draw(st.floats(1e-6, 1e30)),
        "bias": draw(st.floats(-1e3, 1e3)),
        "dtype": draw(st.sampled_from([torch.float32, torch.float64])),
        "score": draw(st.sampled_from(["learnability", "easy-reference", "hard-learner"])),
        "mode": draw(st.sampled_from(["sample", "topk"])),
        "seed": draw(st.integers(0, 2**16)),
    }


@FAST
@given(problems())
def test_every_sampler_keeps_exactly_b_distinct_in_range(p: dict) -> None:
    B, n = p["super_batch"], p["chunks"]
    b = batch_size_for(B, p["filter_ratio"], n)
    assert b % n == 0 and n <= b <= B
    kw = {k: p[k] for k in ("norm", "scale", "bias", "dtype")}
    learner = _embeddings(B, p["dim"], seed=p["seed"], **kw)
    reference = _embeddings(B, p["dim"], seed=p["seed"] + 1, **kw)
    try:
        scorer = PairScorer(learner=learner, reference=reference, score=p["score"])
    except ValueError as exc:
        # only when the logits' sums could overflow the dtype, and it says so
        assert "logit_scale" in str(exc)
        limit = torch.finfo(p["dtype"]).max
        logit = p["scale"] * p["norm"] ** 2 * 1.0001 + abs(p["bias"])
        assert 4 * B * B * (logit + 1) > limit / 1.01 or p["norm"] ** 2 > limit / 1.01
        return
    gen = lambda: torch.Generator().manual_seed(p["seed"])  # noqa: E731
    joint, trace = joint_select(
        scorer, batch_size=b, chunks=n, mode=p["mode"], generator=gen(), return_trace=True
    )
    dense = scorer.dense()
    assert torch.isfinite(dense).all()
    assert torch.isfinite(scorer.diagonal()).all()
    assert torch.isfinite(scorer.row_col_sums()).all()
    for t in trace:  # conditional scores: finite, or -inf for the examples already taken
        assert not torch.isnan(t).any() and not (t == math.inf).any()
    out = {
        "joint": joint,
        "dense": dense_joint_select(dense, batch_size=b, chunks=n, mode=p["mode"], generator=gen()),
        "independent": independent_select(scorer, batch_size=b, mode=p["mode"], generator=gen()),
        "gibbs": gibbs_select(dense, batch_size=b, steps=8, generator=gen()),
        "random": random_select(B, batch_size=b, generator=gen()),
    }
    for name, idx in out.items():
        _check_indices(idx, b, B, name)
        assert math.isfinite(batch_score(scorer, idx)), name
        assert math.isfinite(batch_score(dense, idx)), name
    # same seed, same indices
    again = joint_select(scorer, batch_size=b, chunks=n, mode=p["mode"], generator=gen())
    assert torch.equal(joint, again)


@FAST
@given(
    scores=st.lists(
        st.one_of(st.floats(-1e300, 1e300), st.just(-math.inf)), min_size=1, max_size=40
    ),
    frac=st.floats(0.0, 1.0),
    mode=st.sampled_from(["sample", "topk"]),
    seed=st.integers(0, 2**16),
)
def test_gumbel_topk_never_takes_minus_inf_while_finite_remain(scores, frac, mode, seed) -> None:
    s = torch.tensor(scores, dtype=torch.float64)
    k = max(1, round(frac * len(scores)))
    idx = gumbel_topk(s, k, mode=mode, generator=torch.Generator().manual_seed(seed))
    _check_indices(idx, k, len(scores), "gumbel_topk")
    finite = int(torch.isfinite(s).sum())
    assert int(torch.isfinite(s[idx]).sum()) == min(k, finite)


# ---------------------------------------------------------------------------- invalid input


@FAST
@given(
    super_batch=st.integers(-5, 40),
    filter_ratio=st.one_of(st.floats(-2.0, 2.0), st.just(math.nan), st.just(math.inf)),
    chunks=st.integers(-2, 50),
)
def test_batch_size_for_valid_or_names_the_parameter(super_batch, filter_ratio, chunks) -> None:
    try:
        b = batch_size_for(super_batch, filter_ratio, chunks)
    except ValueError as exc:
        msg = str(exc)
        assert any(name in msg for name in ("super_batch", "filter_ratio", "chunks")), msg
        return
    assert super_batch >= 1 and 0 <= filter_ratio < 1 and chunks >= 1
    assert b % chunks == 0 and chunks <= b <= super_batch


@FAST
@given(
    batch_size=st.integers(-3, 40),
    chunks=st.integers(-1, 12),
    mode=st.sampled_from(["sample", "topk", "greedy", ""]),
)
def test_sampler_arguments_are_checked(batch_size: int, chunks: int, mode: str) -> None:
    size = 16
    learner = _embeddings(size, 4, norm=1.0, scale=10.0, bias=-10.0, dtype=torch.float64, seed=0)
    scorer = PairScorer(learner=learner, score="hard-learner")
    valid = 1 <= batch_size <= size and chunks >= 1  # any b: chunk sizes differ by <= 1
    valid = valid and mode in ("sample", "topk")
    calls = {
        "joint": lambda: joint_select(scorer, batch_size=batch_size, chunks=chunks, mode=mode),
        "dense": lambda: dense_joint_select(
            scorer.dense(), batch_size=batch_size, chunks=chunks, mode=mode
        ),
    }
    for name, call in calls.items():
        if valid:
            _check_indices(call(), batch_size, size, name)
        else:
            with pytest.raises(ValueError, match=r"batch_size|chunks|mode"):
                call()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", ["image", "text"])
def test_non_finite_embeddings_name_the_field(bad: float, where: str) -> None:
    e = _embeddings(8, 4, norm=1.0, scale=10.0, bias=0.0, dtype=torch.float32, seed=0)
    img, txt = e.image.clone(), e.text.clone()
    (img if where == "image" else txt)[3, 1] = bad
    with pytest.raises(ValueError, match=where):
        ModelEmbeddings(img, txt, 10.0, 0.0)


@FAST
@given(
    scale=st.one_of(st.floats(-1e3, 0.0), st.just(math.nan), st.just(math.inf)),
    bias=st.one_of(st.just(0.0), st.just(math.nan), st.just(-math.inf)),
)
def test_bad_logit_scale_or_bias_is_named(scale: float, bias: float) -> None:
    e = _embeddings(4, 3, norm=1.0, scale=1.0, bias=0.0, dtype=torch.float32, seed=0)
    with pytest.raises(ValueError, match=r"logit_scale|logit_bias"):
        ModelEmbeddings(e.image, e.text, scale, bias)


def test_overflowing_logit_scale_is_named_not_a_runtime_error() -> None:
    e = _embeddings(8, 4, norm=1.0, scale=1e300, bias=0.0, dtype=torch.float32, seed=0)
    with pytest.raises(ValueError, match="logit_scale"):
        PairScorer(learner=e, score="hard-learner")
    # in float64 the same logits are fine
    scorer = PairScorer(learner=e, score="hard-learner", dtype=torch.float64)
    _check_indices(joint_select(scorer, batch_size=4, chunks=2), 4, 8, "joint")


@FAST
@given(
    init=st.lists(st.integers(-20, 20), min_size=4, max_size=4, unique=True),
    steps=st.integers(-2, 5),
)
def test_gibbs_init_and_steps_are_checked(init: list[int], steps: int) -> None:
    dense = torch.randn(10, 10, dtype=torch.float64)
    valid = all(0 <= i < 10 for i in init) and steps >= 0
    call = lambda: gibbs_select(dense, batch_size=4, steps=steps, init=torch.tensor(init))  # noqa: E731
    if valid:
        _check_indices(call(), 4, 10, "gibbs")
    else:
        with pytest.raises(ValueError, match=r"init|steps"):
            call()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_dense_scores_are_refused(bad: float) -> None:
    dense = torch.randn(6, 6)
    dense[2, 4] = bad
    with pytest.raises(ValueError, match="scores"):
        dense_joint_select(dense, batch_size=2, chunks=1)
    with pytest.raises(ValueError, match="scores"):
        gibbs_select(dense, batch_size=2, steps=1)


@pytest.mark.parametrize("super_batch", [0, -3, 2.5, True])
def test_random_select_names_super_batch(super_batch) -> None:
    with pytest.raises(ValueError, match="super_batch"):
        random_select(super_batch, batch_size=1)
