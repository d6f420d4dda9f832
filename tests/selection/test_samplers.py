import itertools

import pytest
import torch

from curatorch.selection import (
    PairScorer,
    batch_score,
    batch_size_for,
    chunk_sizes,
    dense_joint_select,
    gibbs_select,
    gumbel_topk,
    independent_select,
    joint_select,
    random_select,
)
from tests.selection.helpers import make_embeddings


def _scorer(size: int, seed: int = 0, score: str = "learnability") -> PairScorer:
    learner, reference = make_embeddings(size, seed=seed)
    return PairScorer(learner=learner, reference=reference, score=score)


def _blocked(scorer: PairScorer) -> PairScorer:
    """The same scores through the tiled kernel, in tiles of 7 candidates."""
    learner, reference = scorer._terms[0][1], scorer._terms[-1][1]
    return PairScorer(
        learner=learner, reference=reference, score=scorer.score, kernel="blocked", tile=7
    )


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _run_all(scorer: PairScorer, b: int, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Every sampler, run once (the shared property checks apply to each)."""
    dense = scorer.dense()
    return {
        "joint": joint_select(scorer, batch_size=b, chunks=n, generator=_gen(seed)),
        "joint-blocked": joint_select(
            _blocked(scorer), batch_size=b, chunks=n, generator=_gen(seed)
        ),
        "joint-topk": joint_select(scorer, batch_size=b, chunks=n, mode="topk"),
        "dense": dense_joint_select(dense, batch_size=b, chunks=n, generator=_gen(seed)),
        "independent": independent_select(scorer, batch_size=b, generator=_gen(seed)),
        "gibbs": gibbs_select(dense, batch_size=b, steps=50, generator=_gen(seed)),
        "random": random_select(scorer.size, batch_size=b, generator=_gen(seed)),
    }


CASES = [
    (super_batch, f, n)
    for super_batch, f, n in itertools.product([16, 40, 64, 100], [0.0, 0.5, 0.8, 0.9], [1, 2, 4])
    if super_batch * (1 - f) >= n
]


@pytest.mark.parametrize(("super_batch", "f", "n"), CASES)
def test_exactly_b_unique_in_range(super_batch: int, f: float, n: int) -> None:
    b = batch_size_for(super_batch, f, n)
    assert b % n == 0 and 1 <= b <= super_batch
    scorer = _scorer(super_batch, seed=super_batch)
    for name, idx in _run_all(scorer, b, n, seed=1).items():
        assert idx.dtype == torch.int64, name
        assert idx.numel() == b, name
        assert idx.unique().numel() == b, name
        assert int(idx.min()) >= 0 and int(idx.max()) < super_batch, name


@pytest.mark.parametrize(("super_batch", "n"), [(16, 4), (64, 16), (48, 1)])
def test_filter_ratio_zero_keeps_everything(super_batch: int, n: int) -> None:
    b = batch_size_for(super_batch, 0.0, n)
    assert b == super_batch
    scorer = _scorer(super_batch)
    for name, idx in _run_all(scorer, b, n, seed=0).items():
        assert sorted(idx.tolist()) == list(range(super_batch)), name


def test_same_seed_same_indices_other_seed_other_indices() -> None:
    scorer = _scorer(200)
    a = _run_all(scorer, 40, 4, seed=7)
    b = _run_all(scorer, 40, 4, seed=7)
    c = _run_all(scorer, 40, 4, seed=8)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    for name in ("joint", "dense", "independent", "random"):
        assert not torch.equal(a[name], c[name]), name
    assert torch.equal(a["joint"], a["joint-blocked"])


@pytest.mark.parametrize(("b", "n"), [(1, 16), (5, 16), (17, 4), (33, 16), (99, 7), (100, 3)])
def test_any_batch_size(b: int, n: int) -> None:
    """Any 1 <= b <= B: chunk sizes differ by at most one; incremental equals dense."""
    sizes = chunk_sizes(b, n)
    assert sum(sizes) == b and max(sizes) - min(sizes) <= 1 and len(sizes) == min(n, b)
    scorer = _scorer(100, seed=b)
    idx, trace = joint_select(scorer, batch_size=b, chunks=n, generator=_gen(1), return_trace=True)
    didx, dtrace = dense_joint_select(
        scorer.dense(), batch_size=b, chunks=n, generator=_gen(1), return_trace=True
    )
    assert idx.numel() == b and idx.unique().numel() == b
    assert torch.equal(idx, didx)
    assert len(trace) == len(sizes)
    for t, d in zip(trace, dtrace, strict=True):
        torch.testing.assert_close(t, d)
    # each chunk conditions on exactly the chunks before it
    ends = torch.tensor(sizes).cumsum(0).tolist()
    for i, cond in enumerate(trace[1:], start=1):
        assert bool(torch.isinf(cond[idx[: ends[i - 1]]]).all())
        assert int(torch.isinf(cond).sum()) == ends[i - 1]


def test_chunk_sizes_validation() -> None:
    assert chunk_sizes(32, 16) == [2] * 16
    assert chunk_sizes(10, 4) == [3, 3, 2, 2]
    for bad in ({"batch_size": 0, "chunks": 2}, {"batch_size": 4, "chunks": 0}):
        with pytest.raises(ValueError, match=next(iter(k for k, v in bad.items() if v == 0))):
            chunk_sizes(**bad)


@pytest.mark.parametrize("score", ["learnability", "easy-reference", "hard-learner"])
@pytest.mark.parametrize("n", [1, 3, 8])
def test_incremental_equals_dense(score: str, n: int) -> None:
    scorer = _scorer(120, seed=n, score=score)
    b = 24
    idx, trace = joint_select(scorer, batch_size=b, chunks=n, generator=_gen(3), return_trace=True)
    didx, dtrace = dense_joint_select(
        scorer.dense(), batch_size=b, chunks=n, generator=_gen(3), return_trace=True
    )
    assert torch.equal(idx, didx)
    assert len(trace) == len(dtrace) == n
    for t, d in zip(trace, dtrace, strict=True):
        torch.testing.assert_close(t, d)


def test_conditional_scores_follow_the_definition() -> None:
    """cond_k = A_kk + sum_{j in S}(A_kj + A_jk), written out directly."""
    scorer = _scorer(30)
    a = scorer.dense()
    idx, trace = joint_select(scorer, batch_size=12, chunks=3, mode="topk", return_trace=True)
    for i, cond in enumerate(trace):
        chosen = idx[: 4 * i].tolist()
        for k in range(30):
            if k in chosen:
                assert cond[k] == float("-inf")
                continue
            expected = a[k, k] + sum(a[k, j] + a[j, k] for j in chosen)
            assert float(cond[k]) == pytest.approx(float(expected), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6, 1e30])
def test_any_score_scale_is_stable(scale: float) -> None:
    scores = torch.randn(100, dtype=torch.float64) * scale
    idx = gumbel_topk(scores, 30, generator=_gen(0))
    assert idx.unique().numel() == 30
    big = torch.randn(64, 64, dtype=torch.float64) * scale
    idx = dense_joint_select(big, batch_size=16, chunks=4, generator=_gen(0))
    assert idx.unique().numel() == 16


def test_gumbel_topk_samples_proportionally() -> None:
    scores = torch.log(torch.tensor([1.0, 2.0, 7.0]))
    counts = torch.zeros(3)
    g = _gen(0)
    for _ in range(4000):
        counts[gumbel_topk(scores, 1, generator=g)] += 1
    torch.testing.assert_close(counts / 4000, torch.tensor([0.1, 0.2, 0.7]), atol=0.03, rtol=0)


def test_selection_quality_ordering() -> None:
    """joint > independent > random in selected-batch learnability, and Gibbs is the top."""
    scorer = _scorer(400, seed=5)
    a = scorer.dense()
    b, n = 80, 8
    joint = batch_score(scorer, joint_select(scorer, batch_size=b, chunks=n, generator=_gen(1)))
    indep = batch_score(scorer, independent_select(scorer, batch_size=b, generator=_gen(1)))
    rand = batch_score(scorer, random_select(400, batch_size=b, generator=_gen(1)))
    gibbs = batch_score(a, gibbs_select(a, batch_size=b, steps=2000, generator=_gen(1)))
    assert joint > indep > rand
    assert gibbs >= joint - 0.05 * (gibbs - rand)


def test_batch_score_scorer_equals_dense() -> None:
    scorer = _scorer(60)
    idx = torch.tensor([0, 5, 7, 59, 33])
    assert batch_score(scorer, idx) == pytest.approx(batch_score(scorer.dense(), idx))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"batch_size": 10.0, "chunks": 3}, "batch_size"),
        ({"batch_size": True, "chunks": 1}, "batch_size"),
        ({"batch_size": 0, "chunks": 1}, "batch_size"),
        ({"batch_size": 500, "chunks": 1}, "batch_size"),
        ({"batch_size": 8, "chunks": 0}, "chunks"),
        ({"batch_size": 8, "chunks": 2, "mode": "best"}, "mode"),
    ],
)
def test_validation_names_the_parameter(kwargs: dict, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        joint_select(_scorer(100), **kwargs)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ((100, 1.0, 4), "filter_ratio"),
        ((100, -0.1, 4), "filter_ratio"),
        ((100, 0.5, 0), "chunks"),
        ((10, 0.9, 4), "chunks"),
        ((0, 0.5, 1), "super_batch"),
    ],
)
def test_batch_size_for_validation(args: tuple, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        batch_size_for(*args)


def test_batch_size_for_values() -> None:
    assert batch_size_for(163_840, 0.8, 16) == 32_768
    assert batch_size_for(640, 0.8, 16) == 128
    assert batch_size_for(16_384, 0.8, 16) % 16 == 0
