"""How much learnability each sampler captures (the JEST paper's Figure 2, as numbers)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from curatorch.selection.samplers import (
    batch_score,
    batch_size_for,
    gibbs_select,
    independent_select,
    joint_select,
    random_select,
)
from curatorch.selection.scores import PairScorer

__all__ = ["learnability_vs_chunks", "learnability_vs_filter_ratio"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def learnability_vs_chunks(
    scorer: PairScorer,
    *,
    batch_size: int,
    chunks: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    gibbs_steps: int | None = None,
) -> dict[str, object]:
    """Mean selected-batch score (:func:`batch_score`) of joint selection for each number
    of chunks, next to brute-force Gibbs, independent and random selection.

    Returns ``{"chunks": [...], "joint": [...], "gibbs": x, "independent": x, "random": x}``
    with every value averaged over ``seeds``. ``gibbs_steps`` defaults to ``3 * batch_size``.
    """
    valid = [n for n in chunks if batch_size % n == 0]
    if not valid:
        raise ValueError(f"no value of chunks {list(chunks)} divides batch_size={batch_size}")
    dense = scorer.dense()
    steps = gibbs_steps if gibbs_steps is not None else 3 * batch_size
    joint = [
        _mean(
            [
                batch_score(
                    dense, joint_select(scorer, batch_size=batch_size, chunks=n, generator=_gen(s))
                )
                for s in seeds
            ]
        )
        for n in valid
    ]
    return {
        "chunks": valid,
        "joint": joint,
        "gibbs": _mean(
            [
                batch_score(
                    dense,
                    gibbs_select(dense, batch_size=batch_size, steps=steps, generator=_gen(s)),
                )
                for s in seeds
            ]
        ),
        "independent": _mean(
            [
                batch_score(
                    dense, independent_select(scorer, batch_size=batch_size, generator=_gen(s))
                )
                for s in seeds
            ]
        ),
        "random": _mean(
            [
                batch_score(
                    dense, random_select(scorer.size, batch_size=batch_size, generator=_gen(s))
                )
                for s in seeds
            ]
        ),
        "gibbs_steps": steps,
    }


def learnability_vs_filter_ratio(
    scorer: PairScorer,
    *,
    filter_ratios: Sequence[float],
    chunks: int = 16,
    seeds: Sequence[int] = (0, 1, 2),
) -> dict[str, list[float]]:
    """Mean selected-batch score of joint, independent and random selection as the filter
    ratio ``f`` grows (``b = (1 - f) B`` rounded to a multiple of ``chunks``)."""
    out: dict[str, list[float]] = {
        "filter_ratio": [],
        "batch_size": [],
        "joint": [],
        "independent": [],
        "random": [],
    }
    dense = scorer.dense()
    for f in filter_ratios:
        b = batch_size_for(scorer.size, f, chunks)
        out["filter_ratio"].append(float(f))
        out["batch_size"].append(b)
        out["joint"].append(
            _mean(
                [
                    batch_score(
                        dense, joint_select(scorer, batch_size=b, chunks=chunks, generator=_gen(s))
                    )
                    for s in seeds
                ]
            )
        )
        out["independent"].append(
            _mean(
                [
                    batch_score(dense, independent_select(scorer, batch_size=b, generator=_gen(s)))
                    for s in seeds
                ]
            )
        )
        out["random"].append(
            _mean(
                [
                    batch_score(dense, random_select(scorer.size, batch_size=b, generator=_gen(s)))
                    for s in seeds
                ]
            )
        )
    return out
