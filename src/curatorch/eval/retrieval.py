"""Image→text and text→image retrieval recall@1 and recall@k."""

from __future__ import annotations

import torch

__all__ = ["retrieval_recall_at_1", "retrieval_recall_at_k"]


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


def retrieval_recall_at_k(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    tokens: torch.Tensor,
    *,
    ks: tuple[int, ...] = (1, 5),
    chunk_size: int = 1024,
) -> dict[str, float]:
    """Recall@k in both directions over ``n`` paired examples, for every ``k`` in ``ks``.

    Pair ``i`` is image ``i`` with caption ``i``. Captions that are token-for-token
    identical form one group (identical strings always do): their text embeddings are
    identical, so no model can rank one above the other. Image→text: image ``i`` is a hit
    at ``k`` when one of its ``k`` nearest texts is in the group of caption ``i``.
    Text→image: caption ``j`` is a hit at ``k`` when one of its ``k`` nearest images is
    paired with a caption of ``j``'s group. Without duplicates this is the usual recall.
    Similarities are dot products, computed ``chunk_size`` queries at a time.

    Args:
        image_emb: ``[n, D]``, text_emb: ``[n, D]`` L2-normalised, row i paired with row i.
        tokens: ``[n, L]`` the captions' token ids, used to find identical captions.
        ks: the cut-offs, each in ``[1, n]``.

    Returns:
        ``{"i2t_r{k}": ..., "t2i_r{k}": ...}`` for each ``k``, fractions in [0, 1].
    """
    n = image_emb.shape[0]
    if image_emb.dim() != 2 or text_emb.shape != image_emb.shape or tokens.shape[0] != n:
        raise ValueError(
            f"image_emb and text_emb must both be [n, D] and tokens [n, L], got "
            f"{tuple(image_emb.shape)}, {tuple(text_emb.shape)}, {tuple(tokens.shape)}"
        )
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n for k in ks):
        raise ValueError(f"ks must be ints in [1, n={n}], got {ks!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got {chunk_size!r}")
    _, caption_id = torch.unique(tokens, dim=0, return_inverse=True)  # [n]
    kmax = max(ks)
    out: dict[str, float] = {}
    for name, queries, keys in (("i2t", image_emb, text_emb), ("t2i", text_emb, image_emb)):
        hits = torch.zeros(len(ks), dtype=torch.int64)
        for start in range(0, n, chunk_size):
            stop = min(start + chunk_size, n)
            top = (queries[start:stop] @ keys.T).topk(kmax, dim=1).indices  # [c, kmax]
            same = caption_id[top] == caption_id[start:stop, None]  # [c, kmax]
            for j, k in enumerate(ks):
                hits[j] += int(same[:, :k].any(dim=1).sum())
        for j, k in enumerate(ks):
            out[f"{name}_r{k}"] = float(hits[j]) / n
    return out
