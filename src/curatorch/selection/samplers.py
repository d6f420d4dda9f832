"""Batch selection from a super-batch: joint (JEST), independent, Gibbs and dense twins.

All samplers draw ``b`` distinct indices out of ``B`` from a :class:`PairScorer`.
Sampling without replacement in proportion to ``exp(score)`` uses the Gumbel-top-k trick:
adding independent Gumbel noise to the scores and keeping the ``k`` largest draws ``k``
items without replacement with those probabilities, without ever exponentiating, so
any score scale is safe.
"""

from __future__ import annotations

import torch
from torch import Tensor

from curatorch.selection.scores import PairScorer

__all__ = [
    "MODES",
    "batch_score",
    "batch_size_for",
    "chunk_sizes",
    "dense_joint_select",
    "gibbs_select",
    "gumbel_topk",
    "independent_select",
    "joint_select",
    "random_select",
]

MODES = ("sample", "topk")


def batch_size_for(super_batch: int, filter_ratio: float, chunks: int = 1) -> int:
    """The batch size ``b = (1 - f) B`` rounded to a multiple of ``chunks``.

    Raises ValueError naming ``filter_ratio`` outside ``[0, 1)``, ``chunks`` < 1 or a
    ``super_batch`` too small to keep one example per chunk.
    """
    if not isinstance(super_batch, int) or super_batch < 1:
        raise ValueError(f"super_batch must be a positive int, got {super_batch!r}")
    if not 0.0 <= filter_ratio < 1.0:
        raise ValueError(f"filter_ratio must be in [0, 1), got {filter_ratio}")
    if not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be an int >= 1, got {chunks!r}")
    if filter_ratio == 0.0 and super_batch % chunks == 0:
        return super_batch
    b = chunks * round((1.0 - filter_ratio) * super_batch / chunks)
    b = min(b, chunks * (super_batch // chunks))
    if b < chunks:
        raise ValueError(
            f"super_batch={super_batch} with filter_ratio={filter_ratio} keeps fewer than "
            f"chunks={chunks} examples"
        )
    return b


def chunk_sizes(batch_size: int, chunks: int) -> list[int]:
    """The sizes of the ``chunks`` chunks of a batch of ``batch_size``: ``batch_size //
    chunks`` each, one more for the first ``batch_size % chunks``, so sizes differ by at
    most one and sum to ``batch_size``. With fewer examples than chunks, ``batch_size``
    chunks of one.
    """
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be an int >= 1, got {chunks!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    chunks = min(chunks, batch_size)
    base, extra = divmod(batch_size, chunks)
    return [base + 1] * extra + [base] * (chunks - extra)


def _check(super_batch: int, batch_size: int, chunks: int, mode: str) -> None:
    if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
        raise ValueError(f"chunks must be an int >= 1, got {chunks!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= super_batch
    ):
        raise ValueError(f"batch_size must be an int in [1, {super_batch}], got {batch_size!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")


def _check_finite(scores: Tensor) -> None:
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise ValueError(f"scores must be finite, got {bad} NaN or infinite entries")


def gumbel_topk(
    scores: Tensor, k: int, *, mode: str = "sample", generator: torch.Generator | None = None
) -> Tensor:
    """``k`` distinct indices of ``scores`` [B]: sampled without replacement with probability
    ``∝ exp(score)`` (``mode="sample"``), or the ``k`` largest (``mode="topk"``).

    Entries equal to ``-inf`` are never chosen while finite ones remain. The noise is
    drawn on the generator's device and moved to ``scores.device``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "topk":
        return torch.topk(scores, k, sorted=False).indices
    gen_device = generator.device if generator is not None else scores.device
    u = torch.rand(scores.shape, generator=generator, device=gen_device, dtype=torch.float64)
    u = u.to(scores.device).clamp_(min=1e-300, max=1.0 - 1e-16)
    gumbel = -torch.log(-torch.log(u))
    return torch.topk(scores.double() + gumbel, k, sorted=False).indices


def joint_select(
    scorer: PairScorer,
    *,
    batch_size: int,
    chunks: int = 16,
    mode: str = "sample",
    generator: torch.Generator | None = None,
    return_trace: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """JEST's sequential joint sampler (Evans et al. 2024, Algorithm 1).

    The first chunk of ``b/N`` examples is drawn from the diagonal scores ``A_kk``; every
    next chunk is drawn without replacement with probability ``∝ exp(conditional score)``
    given all chunks chosen so far, ``A_kk + sum_{j in S} (A_kj + A_jk)``. The conditional
    scores are updated incrementally from the embeddings of the newest chunk only
    (:meth:`PairScorer.cross_sums`): no ``B x B`` matrix is formed, the extra memory is one
    ``[b/N, B]`` block, and the work is ``2 (N - 1)`` products of ``[b/N, D] x [D, B]``
    per model.

    Args:
        scorer: the super-batch's score blocks.
        batch_size: ``b``, any int in ``[1, B]``.
        chunks: ``N`` >= 1: chunk sizes ``b // N`` or one more (:func:`chunk_sizes`);
            with ``b < N``, ``b`` chunks of one.
        mode: ``"sample"`` (Gumbel-top-k) or ``"topk"`` (greedy).
        generator: randomness for ``"sample"``; same seed, same indices.
        return_trace: also return the conditional scores used for each chunk (float64).

    Returns:
        ``[b]`` int64 indices into the super-batch, chunk by chunk (and the trace).

    The blocks are computed by the scorer's kernel (``PairScorer(kernel=...)``, see
    :mod:`curatorch.selection.kernels`).
    """
    _check(scorer.size, batch_size, chunks, mode)
    sizes = chunk_sizes(batch_size, chunks)
    cond = scorer.diagonal().double()  # [B] running conditional scores
    taken = torch.zeros(scorer.size, dtype=torch.bool, device=cond.device)
    picked: list[Tensor] = []
    trace: list[Tensor] = []
    for i, n in enumerate(sizes):
        masked = cond.masked_fill(taken, float("-inf"))
        if return_trace:
            trace.append(masked.clone())
        chunk = gumbel_topk(masked, n, mode=mode, generator=generator)  # [b/N]
        picked.append(chunk)
        taken[chunk] = True
        if i + 1 < len(sizes):
            cond += scorer.cross_sums(chunk).double()
    indices = torch.cat(picked)
    return (indices, trace) if return_trace else indices


def dense_joint_select(
    scores: Tensor,
    *,
    batch_size: int,
    chunks: int = 16,
    mode: str = "sample",
    generator: torch.Generator | None = None,
    return_trace: bool = False,
) -> Tensor | tuple[Tensor, list[Tensor]]:
    """The same sampler as :func:`joint_select` on a dense ``[B, B]`` score matrix.

    The slow twin for tests and benchmarks: it needs ``B²`` memory.
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [B, B] matrix, got {tuple(scores.shape)}")
    _check_finite(scores)
    size = scores.shape[0]
    _check(size, batch_size, chunks, mode)
    sizes = chunk_sizes(batch_size, chunks)
    a = scores
    cond = a.diagonal().double()  # [B], accumulated in float64
    taken = torch.zeros(size, dtype=torch.bool, device=a.device)
    picked: list[Tensor] = []
    trace: list[Tensor] = []
    for i, n in enumerate(sizes):
        masked = cond.masked_fill(taken, float("-inf"))
        if return_trace:
            trace.append(masked.clone())
        chunk = gumbel_topk(masked, n, mode=mode, generator=generator)
        picked.append(chunk)
        taken[chunk] = True
        if i + 1 < len(sizes):
            cond += (a[chunk, :].sum(dim=0) + a[:, chunk].sum(dim=1)).double()
    indices = torch.cat(picked)
    return (indices, trace) if return_trace else indices


def independent_select(
    scorer: PairScorer,
    *,
    batch_size: int,
    mode: str = "sample",
    generator: torch.Generator | None = None,
    block_size: int = 1024,
) -> Tensor:
    """The paper's independent baseline: each example drawn without replacement with
    probability ``∝ exp(its own score)``.

    An example's own score is its row-and-column score within the super-batch,
    ``sum_j A_kj + sum_j A_jk - A_kk``: the score of every pair it takes part in, as its
    loss inside the super-batch's contrastive loss would count it (its image against all
    texts and its text against all images). It is computed in ``[block_size, B]`` blocks.
    """
    _check(scorer.size, batch_size, 1, mode)
    own = scorer.row_col_sums(block_size=block_size)
    return gumbel_topk(own.double(), batch_size, mode=mode, generator=generator)


def random_select(
    super_batch: int, *, batch_size: int, generator: torch.Generator | None = None
) -> Tensor:
    """``batch_size`` distinct indices uniformly at random (the no-selection baseline)."""
    if isinstance(super_batch, bool) or not isinstance(super_batch, int) or super_batch < 1:
        raise ValueError(f"super_batch must be a positive int, got {super_batch!r}")
    _check(super_batch, batch_size, 1, "sample")
    return torch.randperm(super_batch, generator=generator)[:batch_size]


def batch_score(scores_or_scorer: Tensor | PairScorer, indices: Tensor) -> float:
    """Mean per-example score of a batch: ``sum_{i,j in S} A_ij / |S|``.

    Accepts a dense ``[B, B]`` matrix or a :class:`PairScorer` (then only the ``[b, b]``
    sub-matrix is formed, in rows of at most 1024).
    """
    idx = indices.to(torch.long)
    if isinstance(scores_or_scorer, Tensor):
        a = scores_or_scorer
        return float(a[idx][:, idx].double().sum() / idx.numel())
    scorer = scores_or_scorer
    sub = scorer.subset(idx)
    return float(sub.total() / idx.numel())


def gibbs_select(
    scores: Tensor,
    *,
    batch_size: int,
    steps: int,
    init: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Brute-force Gibbs sampling of a batch ``S`` with ``p(S) ∝ exp(sum_{i,j in S} A_ij)``.

    Each step removes one member of ``S`` chosen uniformly and draws its replacement from
    all non-members (the removed one included) with probability ``∝ exp(conditional
    score)`` given the rest: single swaps, exact conditionals. Needs the dense ``[B, B]``
    matrix; for tests and benchmarks (the quality reference for :func:`joint_select`).

    Args:
        scores: ``[B, B]`` score matrix.
        batch_size: ``b``.
        steps: number of single-swap updates (thousands).
        init: starting batch ``[b]`` (default: uniformly random).
        generator: randomness; same seed, same result.
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square [B, B] matrix, got {tuple(scores.shape)}")
    _check_finite(scores)
    size = scores.shape[0]
    _check(size, batch_size, 1, "sample")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    sym = scores + scores.T  # A_kj + A_jk, symmetric: row k == column k
    diag = scores.diagonal().double()
    device = scores.device
    if init is None:
        current = random_select(size, batch_size=batch_size, generator=generator).to(device)
    else:
        current = init.to(device=device, dtype=torch.long).clone()
        if current.numel() != batch_size or current.unique().numel() != batch_size:
            raise ValueError(f"init must hold {batch_size} distinct indices")
        if int(current.min()) < 0 or int(current.max()) >= size:
            raise ValueError(
                f"init must hold indices in [0, {size}), got {int(current.min())} to "
                f"{int(current.max())}"
            )
    member = torch.zeros(size, dtype=torch.bool, device=device)
    member[current] = True
    cond = sym[current].double().sum(dim=0)  # sum_{j in S} (A_kj + A_jk) for every k
    slots = torch.randint(batch_size, (steps,), generator=generator)
    for s in range(steps):
        slot = int(slots[s])
        out = int(current[slot])
        cond -= sym[out].double()  # now conditional on S \ {out}
        member[out] = False
        logits = (diag + cond).masked_fill(member, float("-inf"))
        new = int(gumbel_topk(logits, 1, generator=generator)[0])
        current[slot] = new
        member[new] = True
        cond += sym[new].double()
    return current
