from __future__ import annotations

import torch
import torch.nn.functional as F

from curatorch.selection import ModelEmbeddings


def make_embeddings(
    size: int, dim: int = 16, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[ModelEmbeddings, ModelEmbeddings]:
    """Learner and reference embeddings that disagree as in training: the reference aligns
    a random 'clean' half of the pairs, the learner aligns a different, overlapping set, and
    pairs share cluster structure so that the contrastive terms couple examples."""
    g = torch.Generator().manual_seed(seed)
    centers = F.normalize(torch.randn(8, dim, generator=g, dtype=dtype), dim=-1)
    cluster = torch.randint(8, (size,), generator=g)
    base = centers[cluster] + 0.6 * torch.randn(size, dim, generator=g, dtype=dtype)
    img = F.normalize(base, dim=-1)

    def model(aligned_frac: float, noise: float) -> ModelEmbeddings:
        aligned = torch.rand(size, generator=g) < aligned_frac
        txt = torch.where(
            aligned[:, None],
            base + noise * torch.randn(size, dim, generator=g, dtype=dtype),
            torch.randn(size, dim, generator=g, dtype=dtype),
        )
        return ModelEmbeddings(img, F.normalize(txt, dim=-1), 10.0, -5.0)

    return model(0.4, 0.3), model(0.6, 0.2)
