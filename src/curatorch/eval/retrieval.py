"""Image→text and text→image retrieval recall@1."""

from __future__ import annotations

import torch

__all__ = ["retrieval_recall_at_1"]


def retrieval_recall_at_1(
    image_emb: torch.Tensor, text_emb: torch.Tensor, tokens: torch.Tensor
) -> tuple[float, float]:
    """R@1 in both directions over ``n`` paired examples.

    A retrieved item counts as correct when it is the query's own pair or when its caption
    is token-for-token identical to the ground-truth caption: identical captions have
    identical embeddings, so the index alone cannot tell them apart.

    Args:
        image_emb: ``[n, D]``, text_emb: ``[n, D]`` L2-normalised, row i paired with row i.
        tokens: ``[n, L]`` the captions' token ids, used to find identical captions.

    Returns:
        ``(i2t_r1, t2i_r1)`` as fractions in [0, 1].
    """
    n = image_emb.shape[0]
    if text_emb.shape[0] != n or tokens.shape[0] != n:
        raise ValueError(
            f"image_emb, text_emb and tokens must have the same number of rows, got "
            f"{n}, {text_emb.shape[0]}, {tokens.shape[0]}"
        )
    # caption id: identical captions share an id
    _, caption_id = torch.unique(tokens, dim=0, return_inverse=True)  # [n]
    sim = image_emb @ text_emb.T  # [n images, n texts]
    i2t = caption_id[sim.argmax(dim=1)] == caption_id
    t2i = caption_id[sim.argmax(dim=0)] == caption_id
    return float(i2t.float().mean()), float(t2i.float().mean())
