"""Process-group helpers for data-parallel training under ``torchrun``.

The training loop takes a :class:`DistContext` argument (``rank``, ``world_size``); the
default is one process and no collectives. :func:`init_from_env` reads the variables
``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) and initialises the default process group: NCCL when the run's device is
CUDA, gloo otherwise.

Elastic restarts: a ``torchrun --max-restarts=K`` agent keeps one key-value store for all
restarts of its worker group, and ``init_process_group``'s keys carry no round, so a
restarted group can read the addresses the previous (dead) group published and fail to
form (gloo: ``connectFullMesh ... Connection refused``). :func:`init_from_env` therefore
agrees on a fresh round first (:func:`fresh_round`, a nonce handshake through the store that
no stale key can satisfy) and forms the group under that round's prefix.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "GroupFormationError",
    "fresh_round",
    "init_from_env",
    "is_distributed_env",
    "split_timeout",
]

# the default collective timeout (seconds; torch's own default): a rank that does not
# answer a collective for this long stops the others (``train.collective_timeout_s``). It
# also bounds what rank 0 does alone while the others wait (training the reference in the
# run folder, evaluation), hence not less.
DEFAULT_TIMEOUT_S = 1800.0
# a group waits at least this long for its ranks to join (start-up, imports, data set-up)
MIN_JOIN_TIMEOUT_S = 120.0
_POLL_S = 0.01


class GroupFormationError(RuntimeError):
    """The processes of a torchrun job did not form a group; names the ranks missing."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a data-parallel job.

    Attributes:
        rank: this process's index in ``[0, world_size)``.
        world_size: number of processes ``W``.
        local_rank: index on this node (picks the GPU).
        store: this round's control store (a ``torch.distributed.Store`` under the round's
            prefix), where ranks leave word of a failed collective; ``None`` outside
            :func:`init_from_env`.
        timeout_s: the collective timeout the group was formed with (seconds).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    store: Any = field(default=None, compare=False, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes metrics, checkpoints and progress bars."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_sum(self, value: float) -> float:
        """Sum of a Python float over ranks (float64)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item())

    def all_gather_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenation over ranks, in rank order, of equally shaped tensors (no gradient).

        ``[n, ...]`` on each rank -> ``[W * n, ...]``. Runs on the tensor's device (gloo
        takes CPU tensors, NCCL CUDA tensors).
        """
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def first_failure(self, message: str | None) -> tuple[int, str] | None:
        """Agree on a failure (collective): ``(rank, message)`` of the lowest rank that
        passed a message, on every rank, or ``None`` when none did.

        A rank that stops alone leaves the others waiting in their next collective; each
        rank calls this instead, with its error message or ``None``, and all of them stop
        (or go on) together. One float all-reduce when nothing failed.
        """
        if not self.enabled:
            return None if message is None else (self.rank, message)
        if self.all_reduce_sum(0.0 if message is None else 1.0) == 0.0:
            return None
        messages = self.all_gather_object(message)
        rank = next(r for r, m in enumerate(messages) if m is not None)
        return rank, messages[rank]

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def collective_failure(
        self, step: int, error: BaseException, grace_s: float | None = None
    ) -> str:
        """One line saying why a collective failed at ``step`` (1-based), for every rank.

        Called by each rank whose step raised: it leaves ``(step, error)`` in the round's
        store and waits up to ``grace_s`` seconds (default: the grace :func:`split_timeout`
        leaves of ``timeout_s``) for the others' word. Ranks that leave
        none did not answer (hung, stopped, killed) and are named; otherwise the line
        names the lowest rank whose own error was not a lost peer. No collective is used:
        the group may be broken.
        """
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        if self.store is None or not self.enabled:
            return f"a collective failed at step {step}: {first}"
        try:
            self.store.set(f"failed/{self.rank}", json.dumps([step, first]))
            wait = split_timeout(self.timeout_s)[1] if grace_s is None else grace_s
            reports = self._failure_reports(wait)
        except RuntimeError as exc:  # the store is gone too (its host died)
            return f"a collective failed at step {step}: {first} (the store: {exc})"
        missing = [r for r in range(self.world_size) if r not in reports]
        if missing:
            who = ", ".join(str(r) for r in missing)
            return (
                f"rank{'s' if len(missing) > 1 else ''} {who} of {self.world_size} did not "
                f"answer at step {step} (collective timeout {self.timeout_s:g} s; rank "
                f"{self.rank}: {first})"
            )
        rank = min(reports, key=lambda r: (_lost_peer(reports[r][1]), r))
        step_r, message = reports[rank]
        return f"rank {rank} of {self.world_size} failed at step {step_r}: {message}"

    def _failure_reports(self, grace_s: float) -> dict[int, tuple[int, str]]:
        """The ``failed/RANK`` words present after at most ``grace_s`` seconds."""
        keys = [f"failed/{r}" for r in range(self.world_size)]
        deadline = time.monotonic() + grace_s
        while not self.store.check(keys) and time.monotonic() < deadline:
            time.sleep(0.05)
        out = {}
        for r, key in enumerate(keys):
            if self.store.check([key]):
                step, message = json.loads(self.store.get(key))
                out[r] = (int(step), str(message))
        return out


def split_timeout(timeout_s: float) -> tuple[float, float]:
    """``(collective, grace)`` seconds of a collective timeout ``timeout_s``: collectives
    give up after the first, the ranks then wait at most the second for each other's word
    (:meth:`DistContext.collective_failure`), and a second's slack (5% at most) is left for
    the report, so that the ranks stop within ``timeout_s``."""
    grace = min(3.0, 0.15 * timeout_s)
    return timeout_s - grace - min(1.0, 0.05 * timeout_s), grace


def _lost_peer(message: str) -> bool:
    """Whether a collective's error only says that a peer went away or timed out."""
    text = message.lower()
    return any(
        s in text for s in ("connection closed", "timed out", "connection reset", "broken pipe")
    )


def is_distributed_env() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def fresh_round(store: Any, *, rank: int, world_size: int, timeout_s: float) -> str:
    """A name for this start of the worker group that every rank agrees on and no earlier
    start used (a hex nonce chosen by rank 0).

    Each rank ``r > 0`` posts a nonce of its own (``hello/r``); rank 0 answers every nonce it
    sees with ``nonce:ROUND`` (``ack/r``); a rank takes ROUND only from an answer to its own
    nonce and confirms it (``confirm/r``); rank 0 returns once every rank confirmed its
    ROUND. Words a dead group left in the store answer nobody's nonce, so they are never
    taken. Raises :class:`GroupFormationError` naming the ranks that did not join within
    ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    mine = uuid.uuid4().hex
    if rank != 0:
        store.set(f"curatorch/hello/{rank}", mine)
        while True:
            if store.check([f"curatorch/ack/{rank}"]):
                nonce, _, round_id = store.get(f"curatorch/ack/{rank}").decode().partition(":")
                if nonce == mine:
                    store.set(f"curatorch/confirm/{rank}", round_id)
                    return round_id
            _wait_or_fail(deadline, f"rank {rank}: rank 0 did not answer", timeout_s)
    answered: dict[int, bytes] = {}
    waiting = set(range(1, world_size))
    while waiting:
        for r in sorted(waiting):
            if store.check([f"curatorch/hello/{r}"]):
                hello = store.get(f"curatorch/hello/{r}")
                if answered.get(r) != hello:
                    store.set(f"curatorch/ack/{r}", hello + b":" + mine.encode())
                    answered[r] = hello
            key = f"curatorch/confirm/{r}"
            if store.check([key]) and store.get(key).decode() == mine:
                waiting.discard(r)
        if waiting:
            who = ", ".join(str(r) for r in sorted(waiting))
            _wait_or_fail(deadline, f"rank 0: rank(s) {who} did not join", timeout_s)
    return mine


def _wait_or_fail(deadline: float, what: str, timeout_s: float) -> None:
    if time.monotonic() > deadline:
        raise GroupFormationError(f"the process group did not form: {what} within {timeout_s:g} s")
    time.sleep(_POLL_S)


def _env_int(name: str, default: str) -> int:
    value = os.environ.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from None


def init_from_env(device: str = "cpu", *, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """The context ``torchrun`` describes; initialises the default process group if needed.

    The group is formed under a fresh round's prefix of the launcher's store (see
    :func:`fresh_round`), so that a group restarted by ``torchrun --max-restarts`` never
    reads what an earlier start left there.

    Args:
        device: the run's ``train.device``; ``cuda`` selects NCCL and binds this process to
            GPU ``LOCAL_RANK``, anything else gloo.
        timeout_s: collective timeout in seconds (``train.collective_timeout_s``): the
            ranks that wait for a rank longer stop within it (:func:`split_timeout`). The
            group itself waits ``max(timeout_s, 120)`` seconds for its ranks to join.
    """
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    world_size, rank = _env_int("WORLD_SIZE", "1"), _env_int("RANK", "0")
    local_rank = _env_int("LOCAL_RANK", "0")
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=local_rank, timeout_s=timeout_s)
    if not ctx.enabled or dist.is_initialized():
        return ctx
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    store = _launcher_store(rank, world_size, timeout_s)
    if rank == 0 and _shared_store_across_nodes():
        print(
            "curatorch: warning: torchrun agents on several nodes share the rank-0 agent's "
            "store; a node that is restarted cannot rejoin them (it waits for a MASTER_ADDR "
            "torch does not publish again): export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 "
            "for the agents (docs/scale.md, 'Faults at scale')",
            file=sys.stderr,
        )
    join_s = max(timeout_s, MIN_JOIN_TIMEOUT_S)
    round_id = fresh_round(store, rank=rank, world_size=world_size, timeout_s=join_s)
    group_store = dist.PrefixStore(f"curatorch/round/{round_id}/pg", store)
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        store=group_store,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=split_timeout(timeout_s)[0]),
    )
    control = dist.PrefixStore(f"curatorch/round/{round_id}/ctl", store)
    return DistContext(
        rank=rank, world_size=world_size, local_rank=local_rank, store=control, timeout_s=timeout_s
    )


def _shared_store_across_nodes() -> bool:
    """Whether this group's agents (more than one) share the rank-0 agent's store."""
    agents = os.environ.get("GROUP_WORLD_SIZE", "1")
    shared = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    return shared and agents.isdigit() and int(agents) > 1


def _launcher_store(rank: int, world_size: int, timeout_s: float) -> Any:
    """The key-value store at ``MASTER_ADDR:MASTER_PORT``: the torchrun agent's (every rank
    a client) or, without one (``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``, other launchers),
    hosted by rank 0."""
    missing = [n for n in ("MASTER_ADDR", "MASTER_PORT") if n not in os.environ]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world_size} but {' and '.join(missing)} not set: start the "
            f"processes with torchrun (or set MASTER_ADDR and MASTER_PORT)"
        )
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    return dist.TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=_env_int("MASTER_PORT", "0"),
        world_size=None if agent else world_size,
        is_master=not agent and rank == 0,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        multi_tenant=not agent,
    )
