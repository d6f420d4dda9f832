"""JEST's joint sampler over a super-batch split across data-parallel ranks.

Each of ``W`` ranks holds ``B / W`` candidates (their images never leave the rank) and
the embeddings of both models for them. The ``N`` chunk iterations condition on the
*globally* chosen set: in every chunk each rank draws ``b / (N W)`` of its own
candidates from its conditional scores (Gumbel-top-k, as :func:`joint_select`), then the
ranks all-gather the embedding rows of the examples just chosen (``b / N`` rows of
``2 D`` numbers per model) and add their pair terms to every local candidate's
conditional score. Per step the traffic is ``O(b D)``, never ``O(B D)``, and each rank
ends with ``b / W`` examples of its own.

The one difference to single-process selection is the per-rank quota: a chunk takes
exactly ``b / (N W)`` from every rank instead of the global top ``b / N``. With
candidates spread over ranks at random this costs little learnability (measured in
``tests/selection/test_distributed.py``). With ``world_size == 1`` the result is
identical to :func:`joint_select` (same generator, same indices).
"""

from __future__ import annotations

import torch
from torch import Tensor

from curatorch.selection.samplers import MODES, chunk_sizes, gumbel_topk
from curatorch.selection.scores import PairScorer

__all__ = ["distributed_joint_select"]


def _gather_rows(
    rows: list[tuple[Tensor, Tensor]], world_size: int, group: object | None
) -> list[tuple[Tensor, Tensor]]:
    """All ranks' chosen rows, concatenated in rank order (one collective per chunk)."""
    if world_size == 1:
        return rows
    import torch.distributed as dist

    flat = torch.cat([torch.cat([i, t], dim=1) for i, t in rows], dim=1).contiguous()  # [q, 2MD]
    parts = [torch.empty_like(flat) for _ in range(world_size)]
    if group is None:
        dist.all_gather(parts, flat)
    else:
        dist.all_gather(parts, flat, group=group)
    full = torch.cat(parts)  # [W q, 2MD]
    out, start = [], 0
    for img, txt in rows:
        d_i, d_t = img.shape[1], txt.shape[1]
        out.append((full[:, start : start + d_i], full[:, start + d_i : start + d_i + d_t]))
        start += d_i + d_t
    return out


def distributed_joint_select(
    scorer: PairScorer,
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    chunks: int = 16,
    mode: str = "sample",
    generator: torch.Generator | None = None,
    group: object | None = None,
) -> Tensor:
    """Joint selection of a global batch of ``batch_size`` over ``world_size`` ranks.

    Call on every rank with the scorer of that rank's candidates (see the module
    docstring for the algorithm). Collective: every rank must call it with the same
    ``batch_size``, ``chunks`` and ``mode``.

    Args:
        scorer: this rank's ``B / W`` candidates' score blocks.
        batch_size: the *global* ``b``; a multiple of ``world_size``, and ``b / W`` at
            most this rank's candidate count (each rank splits its ``b / W`` over the
            chunks as :func:`~curatorch.selection.chunk_sizes` does).
        rank: this process's rank; world_size: ``W``.
        chunks: ``N``; mode: ``"sample"`` or ``"topk"``.
        generator: this rank's randomness (use a different seed per rank).
        group: the process group (default: the world).

    Returns:
        ``[b / W]`` int64 indices into this rank's candidates, chunk by chunk.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an int >= 1, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be an int >= 1, got {chunks!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or batch_size < 1
        or batch_size % world_size
    ):
        raise ValueError(
            f"batch_size must be a positive multiple of world_size = {world_size}, "
            f"got {batch_size!r}"
        )
    share = batch_size // world_size  # this rank's examples
    if share > scorer.size:
        raise ValueError(
            f"batch_size={batch_size} needs {share} candidates on each of "
            f"{world_size} ranks, this rank has {scorer.size}"
        )
    quotas = chunk_sizes(share, chunks)  # this rank's share of every chunk
    cond = scorer.diagonal().double()  # [B/W] running conditional scores
    taken = torch.zeros(scorer.size, dtype=torch.bool, device=cond.device)
    picked: list[Tensor] = []
    for i, quota in enumerate(quotas):
        masked = cond.masked_fill(taken, float("-inf"))
        chunk = gumbel_topk(masked, quota, mode=mode, generator=generator)  # [b/(NW)]
        picked.append(chunk)
        taken[chunk] = True
        if i + 1 < len(quotas):
            rows = _gather_rows(scorer.rows(chunk), world_size, group)  # [b/N, D] per model
            cond += scorer.cross_sums_from(rows).double()
    return torch.cat(picked)
