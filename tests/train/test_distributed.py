"""The round handshake and the failed-collective report of ``curatorch.train.distributed``,
on an in-memory store shared by threads standing for ranks (no process group)."""

from __future__ import annotations

import json
import threading

import pytest
import torch.distributed as dist

from curatorch.train.distributed import (
    DistContext,
    GroupFormationError,
    fresh_round,
    init_from_env,
    split_timeout,
)


def _rounds(store: dist.Store, world_size: int, timeout_s: float = 20.0) -> list[str]:
    """``fresh_round`` on every rank at once (one thread each); their results."""
    out: list[str | BaseException] = [""] * world_size

    def run(rank: int) -> None:
        try:
            out[rank] = fresh_round(store, rank=rank, world_size=world_size, timeout_s=timeout_s)
        except BaseException as exc:  # handed to the test thread
            out[rank] = exc

    threads = [threading.Thread(target=run, args=(r,)) for r in range(world_size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return [str(r) for r in out]


def test_every_rank_agrees_on_one_round():
    rounds = _rounds(dist.HashStore(), 4)
    assert len(set(rounds)) == 1 and len(rounds[0]) == 32


def test_a_restart_never_takes_what_a_dead_group_left_in_the_store():
    """What an earlier start of the group wrote (a hello, an answer to it, a confirmation)
    answers no nonce of the new start: the ranks agree on a new round."""
    store = dist.HashStore()
    first = _rounds(store, 3)[0]
    store.set("curatorch/ack/2", b"deadbeef:" + first.encode())  # a half-finished start too
    second = _rounds(store, 3)
    assert len(set(second)) == 1 and second[0] != first


def test_restarts_in_a_row_give_new_rounds():
    store = dist.HashStore()
    rounds = [_rounds(store, 2)[0] for _ in range(5)]
    assert len(set(rounds)) == 5


def test_a_rank_that_never_joins_is_named():
    store = dist.HashStore()
    with pytest.raises(GroupFormationError, match=r"rank\(s\) 1, 2 did not join within 0.2 s"):
        fresh_round(store, rank=0, world_size=3, timeout_s=0.2)


def test_rank0_that_never_answers_is_named():
    with pytest.raises(GroupFormationError, match="rank 1: rank 0 did not answer"):
        fresh_round(dist.HashStore(), rank=1, world_size=2, timeout_s=0.2)


def _ctx(rank: int, world_size: int, store: dist.Store) -> DistContext:
    return DistContext(rank=rank, world_size=world_size, store=store, timeout_s=7.0)


def test_the_rank_that_did_not_answer_is_named_with_the_step():
    store = dist.HashStore()
    store.set("failed/1", json.dumps([12, "Timed out waiting 7000ms for recv"]))
    line = _ctx(0, 3, store).collective_failure(12, RuntimeError("Timed out waiting 7000ms"), 0.1)
    assert line.startswith("rank 2 of 3 did not answer at step 12 (collective timeout 7 s;")
    assert json.loads(store.get("failed/0")) == [12, "Timed out waiting 7000ms"]


def test_every_silent_rank_is_named():
    line = _ctx(0, 3, dist.HashStore()).collective_failure(4, RuntimeError("timed out"), 0.1)
    assert line.startswith("ranks 1, 2 of 3 did not answer at step 4")


def test_when_every_rank_answered_the_one_with_a_real_error_is_named():
    """A rank that failed on its own (not a lost peer) is the cause the others report."""
    store = dist.HashStore()
    store.set("failed/1", json.dumps([30, "shape mismatch in the text tower"]))
    store.set("failed/2", json.dumps([30, "Connection closed by peer [127.0.0.1]:5"]))
    lost = RuntimeError("Connection closed by peer [127.0.0.1]:7\nmore lines")
    line = _ctx(0, 3, store).collective_failure(30, lost, 0.1)
    assert line == "rank 1 of 3 failed at step 30: shape mismatch in the text tower"


def test_one_process_or_no_store_reports_this_rank_only():
    err = RuntimeError("Timed out waiting 5ms\nsecond line")
    assert (
        DistContext().collective_failure(3, err)
        == "a collective failed at step 3: Timed out waiting 5ms"
    )
    two = DistContext(rank=0, world_size=2)
    assert two.collective_failure(3, err).startswith("a collective failed at step 3")


def test_init_from_env_checks_its_arguments(monkeypatch):
    with pytest.raises(ValueError, match="timeout_s must be > 0, got 0"):
        init_from_env(timeout_s=0)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        init_from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    monkeypatch.delenv("MASTER_PORT", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR and MASTER_PORT not set"):
        init_from_env()


def test_one_process_needs_no_store(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = init_from_env(timeout_s=5)
    assert (ctx.world_size, ctx.store, ctx.timeout_s) == (1, None, 5)


@pytest.mark.parametrize("timeout_s", [0.5, 5.0, 10.0, 300.0, 1800.0])
def test_the_collective_wait_and_the_grace_fit_in_the_timeout(timeout_s):
    """Collectives give up, the ranks hear from each other and report, all within it."""
    collective, grace = split_timeout(timeout_s)
    assert 0 < grace <= 3.0 and collective > 0.75 * timeout_s
    assert collective + grace < timeout_s
