"""Distributed JEST selection (2 gloo ranks) agrees with single-process selection."""

from __future__ import annotations

import pytest
import torch

from curatorch.selection import (
    ModelEmbeddings,
    PairScorer,
    batch_score,
    distributed_joint_select,
    joint_select,
    random_select,
)
from tests.distributed.helpers import run_ranks
from tests.selection.helpers import make_embeddings

B, BATCH, CHUNKS = 1024, 192, 8  # f = 0.8125
SEEDS = (0, 1, 2, 3)


def _part(m: ModelEmbeddings, rows: slice) -> ModelEmbeddings:
    return ModelEmbeddings(m.image[rows], m.text[rows], m.logit_scale, m.logit_bias)


def _rank_select(rank: int, world_size: int, mode: str):
    out = {}
    for seed in SEEDS:
        learner, reference = make_embeddings(B, seed=seed, dtype=torch.float32)
        # candidates spread over ranks in a random order, as a random super-batch would be
        perm = torch.randperm(B, generator=torch.Generator().manual_seed(100 + seed))
        mine = perm[rank * (B // world_size) : (rank + 1) * (B // world_size)]
        local = PairScorer(
            learner=ModelEmbeddings(learner.image[mine], learner.text[mine], 10.0, -5.0),
            reference=ModelEmbeddings(reference.image[mine], reference.text[mine], 10.0, -5.0),
        )
        gen = torch.Generator().manual_seed(1000 * seed + rank)
        idx = distributed_joint_select(
            local,
            batch_size=BATCH,
            chunks=CHUNKS,
            mode=mode,
            generator=gen,
            rank=rank,
            world_size=world_size,
        )
        out[seed] = mine[idx]  # global super-batch positions
    return out


@pytest.fixture(scope="module")
def two_rank_runs(tmp_path_factory):
    a = run_ranks(_rank_select, 2, tmp_path_factory.mktemp("a"), "sample")
    b = run_ranks(_rank_select, 2, tmp_path_factory.mktemp("b"), "sample")
    return a, b


def test_each_rank_keeps_b_over_w_distinct_examples(two_rank_runs):
    runs, _ = two_rank_runs
    for seed in SEEDS:
        parts = [r[seed] for r in runs]
        assert all(p.numel() == BATCH // 2 for p in parts)
        union = torch.cat(parts)
        assert union.unique().numel() == BATCH
        assert int(union.min()) >= 0 and int(union.max()) < B


def test_same_seed_same_indices(two_rank_runs):
    a, b = two_rank_runs
    for seed in SEEDS:
        for ra, rb in zip(a, b, strict=True):
            assert torch.equal(ra[seed], rb[seed])


def test_learnability_within_two_percent_of_single_process(two_rank_runs):
    runs, _ = two_rank_runs
    dist_scores, single_scores, random_scores = [], [], []
    for seed in SEEDS:
        learner, reference = make_embeddings(B, seed=seed, dtype=torch.float32)
        scorer = PairScorer(learner=learner, reference=reference)
        chosen = torch.cat([r[seed] for r in runs])
        dist_scores.append(batch_score(scorer, chosen))
        single = joint_select(
            scorer,
            batch_size=BATCH,
            chunks=CHUNKS,
            generator=torch.Generator().manual_seed(7 + seed),
        )
        single_scores.append(batch_score(scorer, single))
        rnd = random_select(B, batch_size=BATCH, generator=torch.Generator().manual_seed(seed))
        random_scores.append(batch_score(scorer, rnd))
    d, s, r = (sum(x) / len(x) for x in (dist_scores, single_scores, random_scores))
    # the selection is far from random, and as good as single-process selection
    assert s - r > 0.5 * abs(s)
    assert abs(d - s) <= 0.02 * abs(s), (d, s)


@pytest.mark.parametrize("size", [96, 90, 5])
def test_one_rank_is_joint_select(size):
    learner, reference = make_embeddings(512, seed=5)
    scorer = PairScorer(learner=learner, reference=reference)
    for mode in ("sample", "topk"):
        a = joint_select(
            scorer, batch_size=size, chunks=8, mode=mode, generator=torch.Generator().manual_seed(3)
        )
        b = distributed_joint_select(
            scorer,
            batch_size=size,
            chunks=8,
            mode=mode,
            rank=0,
            world_size=1,
            generator=torch.Generator().manual_seed(3),
        )
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 101, "chunks": 8, "rank": 0, "world_size": 2}, "batch_size"),
        ({"batch_size": 96, "chunks": 8, "rank": 2, "world_size": 2}, "rank"),
        ({"batch_size": 96, "chunks": 0, "rank": 0, "world_size": 1}, "chunks"),
        ({"batch_size": 96, "chunks": 8, "rank": 0, "world_size": 0}, "world_size"),
        ({"batch_size": 96, "chunks": 8, "rank": 0, "world_size": 1, "mode": "x"}, "mode"),
        ({"batch_size": 1024, "chunks": 8, "rank": 0, "world_size": 1}, "candidates"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    learner, reference = make_embeddings(512, seed=5)
    scorer = PairScorer(learner=learner, reference=reference)
    with pytest.raises(ValueError, match=match):
        distributed_joint_select(scorer, **kwargs)
