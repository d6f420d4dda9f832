"""Helpers every built-in world uses: random streams, example ids, concept frequencies,
the noise steps applied to a generated pool, and the assembly of the world.

The worlds (:mod:`curatorch.data.shapes`, :mod:`curatorch.data.digits`) import these
from here and never from each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import torch

from curatorch.data.dataset import NOISE_KINDS, EvalSets, PairDataset, World
from curatorch.data.noise import Boilerplate, degrade_images
from curatorch.data.tokenizer import WordTokenizer

__all__ = [
    "POOL_ID_OFFSET",
    "POOL_NAMES",
    "apply_boilerplate",
    "apply_degraded",
    "noise_rows",
    "sklearn_digits",
    "stream_rng",
    "world_from_pools",
    "zipf_probs",
]

# The pools of a world, and their example-id offsets: raw ids are 0..raw_size-1, the
# others start at k << 40 so ids never collide across pools.
POOL_NAMES = ("raw", "curated", "classify", "probe", "retrieval")
POOL_ID_OFFSET = {name: k << 40 for k, name in enumerate(POOL_NAMES)}


def stream_rng(seed: int, stream: int, salt: int) -> np.random.Generator:
    """Independent generator per ``(seed, stream)``; ``salt`` is the world's own constant
    (two worlds never share streams). Eval streams never see pool sizes."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream, salt]))


def zipf_probs(num: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """``[num]`` class probabilities ``∝ (rank + 1) ** -exponent``, ranks a random permutation."""
    p = (np.arange(num, dtype=np.float64) + 1.0) ** -float(exponent)
    p /= p.sum()
    out = np.empty(num)
    out[rng.permutation(num)] = p
    return out


def noise_rows(noise: np.ndarray, kind: str) -> np.ndarray:
    """``[k]`` int64 positions of the examples whose noise code ``noise`` ``[n]`` is ``kind``."""
    return np.flatnonzero(noise == NOISE_KINDS.index(kind))


def apply_boilerplate(
    phrase_ids: np.ndarray,
    noise: np.ndarray,
    boilerplate: Boilerplate,
    rng: np.random.Generator,
) -> np.ndarray:
    """Replace, in place, the caption phrase ids ``[n, S]`` of the boilerplate examples of
    ``noise`` ``[n]`` by random boilerplate captions; returns their positions ``[k]``."""
    rows = noise_rows(noise, "boilerplate")
    bp = boilerplate.phrase_ids(rows.size, rng)
    phrase_ids[rows] = 0
    phrase_ids[rows, : bp.shape[1]] = bp
    return rows


def apply_degraded(images: torch.Tensor, noise: np.ndarray, rng: np.random.Generator) -> None:
    """Degrade, in place, the uint8 images ``[n, 3, H, W]`` of the examples whose noise
    code ``noise`` ``[n]`` is ``degraded`` (:func:`curatorch.data.degrade_images`)."""
    rows = noise_rows(noise, "degraded")
    if rows.size:
        index = torch.from_numpy(rows)
        images[index] = degrade_images(images[index], rng)


def world_from_pools(
    pools: Mapping[str, PairDataset],
    *,
    tokenizer: WordTokenizer,
    class_names: Sequence[str],
    prompt_templates: Sequence[str],
) -> World:
    """The :class:`World` of the five pools of :data:`POOL_NAMES` (``pools[name]``)."""
    missing = [name for name in POOL_NAMES if name not in pools]
    if missing:
        raise ValueError(f"pools must hold {list(POOL_NAMES)}, missing {missing}")
    return World(
        raw=pools["raw"],
        curated=pools["curated"],
        eval=EvalSets(
            classify=pools["classify"],
            probe_train=pools["probe"],
            retrieval=pools["retrieval"],
            class_names=list(class_names),
            prompt_templates=list(prompt_templates),
        ),
        tokenizer=tokenizer,
        num_classes=len(class_names),
    )


@lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (``load_digits``, nothing
    downloaded): ``[1797, 8, 8]`` float32 ink in [0, 1] and ``[1797]`` int64 labels, read
    once and shared (read-only arrays: index or copy them before changing anything)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    labels = d.target.astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels
