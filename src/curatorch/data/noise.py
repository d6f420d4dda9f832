"""Web-like noise shared by the built-in worlds.

Four mutually exclusive kinds are injected into the raw pool (codes from
:data:`curatorch.data.dataset.NOISE_KINDS`):

* ``misaligned`` (1): the caption is the clean caption of another random image.
* ``near_miss`` (2): one attribute of the caption is wrong (world-specific).
* ``boilerplate`` (3): an uninformative web caption ("IMG_2041.jpg", "click to enlarge").
* ``degraded`` (4): the image is mostly uniform noise; the caption is correct.

Exactly ``round(fraction * n)`` examples get each kind, at random positions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import torch

from curatorch.data._phrases import PhraseBook
from curatorch.data.config import NOISE_FIELDS
from curatorch.data.dataset import NOISE_KINDS
from curatorch.data.images import quantize_

__all__ = [
    "BOILERPLATE_TEMPLATES",
    "DEGRADE_STRENGTH",
    "Boilerplate",
    "assign_noise",
    "degrade_images",
    "misaligned_sources",
    "noise_counts",
]

# Fraction of uniform noise blended into a degraded image.
DEGRADE_STRENGTH = 0.8

# Web boilerplate captions; each "#" is replaced by a random digit.
BOILERPLATE_TEMPLATES = (
    "IMG_####.jpg",
    "click to enlarge",
    "stock photo ####",
    "untitled",
    "download now",
    "product image",
    "DSC ####",
    "image ###",
    "photo_####.png",
    "thumbnail",
    "no description available",
    "copyright ####",
    "free shipping",
    "screenshot ##",
    "view larger image",
    "click here",
    "sale ##% off",
    "best price",
    "untitled-#",
    "file ###.jpeg",
    "see more",
)


def noise_counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Exact number of examples of each noise kind in a pool of ``n``.

    Each kind gets ``round(fraction * n)``. If rounding alone pushes the total past
    ``n`` (fractions summing to 1 on a tiny pool), the last kinds are trimmed.

    Returns:
        Counts keyed by every name of ``NOISE_KINDS``, ``"clean"`` included.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    unknown = set(fractions) - set(NOISE_FIELDS)
    if unknown:
        raise ValueError(f"fractions has unknown noise kinds {sorted(unknown)}")
    counts = {}
    for name in NOISE_FIELDS:
        f = float(fractions.get(name, 0.0))
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"fractions[{name!r}] must be in [0, 1], got {f}")
        counts[name] = round(f * n)
    excess = sum(counts.values()) - n
    for name in reversed(NOISE_FIELDS):
        if excess <= 0:
            break
        cut = min(excess, counts[name])
        counts[name] -= cut
        excess -= cut
    return {"clean": n - sum(counts.values()), **counts}


def assign_noise(n: int, fractions: Mapping[str, float], rng: np.random.Generator) -> np.ndarray:
    """``[n]`` int64 noise codes with exactly :func:`noise_counts` of each kind, shuffled."""
    counts = noise_counts(n, fractions)
    codes = np.repeat(np.arange(len(NOISE_KINDS), dtype=np.int64), [counts[k] for k in NOISE_KINDS])
    return rng.permutation(codes)


def misaligned_sources(index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """For each position ``i`` in ``index``, a uniformly random other position ``j != i``.

    Returns ``[len(index)]`` int64 positions in ``[0, n)``.
    """
    index = np.asarray(index, dtype=np.int64)
    if index.size and n < 2:
        raise ValueError(f"misaligned captions need a pool of n >= 2, got n={n}")
    if index.size == 0:
        return index.copy()
    j = rng.integers(0, n - 1, size=index.shape[0])
    return j + (j >= index)  # skip i itself


def degrade_images(
    images: torch.Tensor,
    rng: np.random.Generator,
    strength: float = DEGRADE_STRENGTH,
    *,
    chunk: int = 16384,
) -> torch.Tensor:
    """Blend ``strength`` of uniform noise into uint8 images ``[m, 3, H, W]``.

    Returns a new uint8 tensor ``round((1 - strength) * image + strength * U{0..255})``.
    Works in chunks of ``chunk`` images, drawing their noise from ``rng`` in order.
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(
            f"images must be uint8 [m, 3, H, W], got {images.dtype} {tuple(images.shape)}"
        )
    out = torch.empty_like(images)
    for s in range(0, images.shape[0], chunk):
        x = images[s : s + chunk]
        noise = torch.from_numpy(rng.integers(0, 256, size=tuple(x.shape), dtype=np.uint8))
        y = x.to(torch.float32).mul_(1.0 - strength).add_(noise.to(torch.float32), alpha=strength)
        out[s : s + chunk] = quantize_(y)
    return out


class Boilerplate:
    """Random boilerplate captions as phrase-id rows, for vectorised assembly.

    Args:
        book: the world's phrase book; the template words and the digits are added to it.
        templates: caption templates, each ``"#"`` a random digit.
    """

    def __init__(self, book: PhraseBook, templates: tuple[str, ...] = BOILERPLATE_TEMPLATES):
        self.digit_ids = np.array([book.add(str(d)) for d in range(10)], dtype=np.int64)
        # each template: list of phrase ids, -1 marking a random-digit slot
        self.templates: list[list[int]] = []
        self.max_len = 0
        for t in templates:
            row = []
            length = 0
            for piece in re.split(r"(#)", t):
                if piece == "#":
                    row.append(-1)
                    length += 1
                elif piece:
                    pid = book.add(piece)
                    row.append(pid)
                    length += book.length(pid)
            self.templates.append(row)
            self.max_len = max(self.max_len, length)
        self.width = max(len(r) for r in self.templates)

    def phrase_ids(self, m: int, rng: np.random.Generator) -> np.ndarray:
        """``[m, width]`` phrase ids of ``m`` random boilerplate captions."""
        out = np.zeros((m, self.width), dtype=np.int64)
        which = rng.integers(0, len(self.templates), size=m)
        digits = self.digit_ids[rng.integers(0, 10, size=(m, self.width))]
        for t, row in enumerate(self.templates):
            rows = np.flatnonzero(which == t)
            for j, pid in enumerate(row):
                out[rows, j] = digits[rows, j] if pid < 0 else pid
        return out
