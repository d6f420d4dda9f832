"""Contrastive losses for two-tower image-text models.

* :func:`sigmoid_pair_losses` -- the SigLIP per-pair loss matrix (used by JEST to score
  sub-batches, and summed into the batch loss).
* :func:`sigmoid_contrastive_loss` -- the SigLIP batch loss (Zhai et al., ICCV 2023).
* :func:`sigmoid_contrastive_loss_sharded` -- the same loss with the batch split over
  data-parallel ranks (texts all-gathered with gradients).
* :func:`softmax_contrastive_loss` -- the CLIP symmetric cross-entropy (Radford et al. 2021).

All functions take embeddings that the caller has already L2-normalised; they do not
normalise again. ``logit_scale`` is the *already exponentiated* temperature ``t`` (a float
or a scalar tensor, e.g. ``TwoTower.logit_scale``), ``logit_bias`` the SigLIP bias ``b``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "sigmoid_contrastive_loss",
    "sigmoid_contrastive_loss_sharded",
    "sigmoid_pair_losses",
    "softmax_contrastive_loss",
]


def _check_embeddings(image_emb: Tensor, text_emb: Tensor, *, square: bool) -> None:
    if not isinstance(image_emb, Tensor) or image_emb.dim() != 2:
        raise ValueError(f"`image_emb` must be a 2-D tensor [n, D], got {_describe(image_emb)}")
    if not isinstance(text_emb, Tensor) or text_emb.dim() != 2:
        raise ValueError(f"`text_emb` must be a 2-D tensor [m, D], got {_describe(text_emb)}")
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"`text_emb` must have the same embedding width D as `image_emb` "
            f"({image_emb.shape[1]}), got shape {tuple(text_emb.shape)}"
        )
    if square and image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(
            f"`text_emb` must have as many rows as `image_emb` ({image_emb.shape[0]}) "
            f"when no `labels` are given, got shape {tuple(text_emb.shape)}"
        )
    if image_emb.shape[0] == 0:
        raise ValueError(
            f"`image_emb` must have at least one row, got shape {tuple(image_emb.shape)}"
        )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__}"


def _check_scalar(value: Tensor | float, name: str) -> None:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"`{name}` must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
    elif not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be a float or a scalar tensor, got {type(value).__name__}")


def _logits(image_emb: Tensor, text_emb: Tensor, logit_scale: Tensor | float) -> Tensor:
    if isinstance(logit_scale, Tensor):
        logit_scale = logit_scale.reshape(())
    return logit_scale * (image_emb @ text_emb.T)  # [n, m]


def sigmoid_pair_losses(
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    labels: Tensor | None = None,
) -> Tensor:
    """SigLIP loss of every image-text pair.

    ``L[i, j] = softplus(-z[i, j] * (t * <x_i, y_j> + b)) = -log sigmoid(z[i, j] * logit)``

    Args:
        image_emb: ``[n, D]`` L2-normalised image embeddings ``x``.
        text_emb: ``[m, D]`` L2-normalised text embeddings ``y``.
        logit_scale: temperature ``t`` (already exponentiated), float or scalar tensor.
        logit_bias: bias ``b``, float or scalar tensor.
        labels: optional ``[n, m]`` tensor of ``+1`` (matching pair) / ``-1`` (non-matching).
            Default: ``+1`` on the diagonal and ``-1`` elsewhere, which needs ``n == m``.

    Returns:
        ``[n, m]`` per-pair losses in nats, same dtype as the embeddings. Differentiable
        with respect to the embeddings, ``logit_scale`` and ``logit_bias``.
    """
    _check_embeddings(image_emb, text_emb, square=labels is None)
    _check_scalar(logit_scale, "logit_scale")
    _check_scalar(logit_bias, "logit_bias")
    n, m = image_emb.shape[0], text_emb.shape[0]
    if labels is None:
        z = 2.0 * torch.eye(n, device=image_emb.device, dtype=image_emb.dtype) - 1.0
    else:
        if not isinstance(labels, Tensor) or tuple(labels.shape) != (n, m):
            raise ValueError(
                f"`labels` must be a tensor of shape {(n, m)}, got {_describe(labels)}"
            )
        z = labels.to(dtype=image_emb.dtype)
    if isinstance(logit_bias, Tensor):
        logit_bias = logit_bias.reshape(())
    logits = _logits(image_emb, text_emb, logit_scale) + logit_bias  # [n, m]
    # -log sigmoid(u) is evaluated stably for |u| large (no exp overflow).
    return -F.logsigmoid(z * logits)


def sigmoid_contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
) -> Tensor:
    """SigLIP batch loss ``-1/B sum_i sum_j log sigmoid(z_ij (t <x_i, y_j> + b))``.

    Args:
        image_emb: ``[B, D]`` L2-normalised image embeddings; row ``i`` matches text row ``i``.
        text_emb: ``[B, D]`` L2-normalised text embeddings.
        logit_scale: temperature ``t`` (already exponentiated).
        logit_bias: bias ``b``.

    Returns:
        Scalar tensor: the sum of the ``B x B`` pair losses divided by ``B`` (nats per example).
    """
    pair = sigmoid_pair_losses(
        image_emb, text_emb, logit_scale=logit_scale, logit_bias=logit_bias
    )  # [B, B]
    return pair.sum() / image_emb.shape[0]


def softmax_contrastive_loss(
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    logit_scale: Tensor | float,
) -> Tensor:
    """CLIP symmetric InfoNCE loss.

    Mean of the image-to-text and text-to-image cross-entropies over the logits
    ``t * image_emb @ text_emb.T`` with targets ``arange(B)``.

    Args:
        image_emb: ``[B, D]`` L2-normalised image embeddings; row ``i`` matches text row ``i``.
        text_emb: ``[B, D]`` L2-normalised text embeddings.
        logit_scale: temperature ``t`` (already exponentiated).

    Returns:
        Scalar tensor (nats per example).
    """
    _check_embeddings(image_emb, text_emb, square=True)
    _check_scalar(logit_scale, "logit_scale")
    logits = _logits(image_emb, text_emb, logit_scale)  # [B, B]
    targets = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


class _AllGatherRows(torch.autograd.Function):
    """Concatenate every rank's ``[n, D]`` rows; backward sums each rank's gradient of the
    gathered tensor and hands every rank its own rows (all-reduce, so gloo works too)."""

    @staticmethod
    def forward(ctx, x: Tensor, world_size: int, group: object | None) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        ctx.world_size, ctx.group, ctx.n = world_size, group, x.shape[0]
        ctx.rank = dist.get_rank(group) if group is not None else dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        import torch.distributed as dist

        total = grad.contiguous().clone()
        dist.all_reduce(total, group=ctx.group)
        return total[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n], None, None


def sigmoid_contrastive_loss_sharded(
    image_emb: Tensor,
    text_emb: Tensor,
    *,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    rank: int,
    world_size: int,
    group: object | None = None,
) -> Tensor:
    """This rank's share of the SigLIP loss of a batch split over ``world_size`` ranks.

    Every rank holds ``n`` rows of the global batch of ``W * n`` pairs (rank ``r`` holds
    global rows ``r n .. (r + 1) n - 1``). The texts are all-gathered *with gradients*
    (``torch.distributed.nn.functional.all_gather``, whose backward sums the gradients of
    every rank into the owner's rows); each rank scores its own images against all
    ``W n`` texts, so every pair of the global batch is counted exactly once:

    ``share_r = 1/(W n) * sum_{i in rank r} sum_{j} -log sigmoid(z_ij (t <x_i, y_j> + b))``.

    The shares sum over ranks to :func:`sigmoid_contrastive_loss` of the whole batch, and
    after ``backward`` on every rank the gradients with respect to each rank's embeddings
    equal the full-batch gradients of those rows. Replicated parameters (the temperature
    and bias, the towers' weights) receive per-rank partial gradients whose *sum* is the
    full-batch gradient: under ``DistributedDataParallel``, which averages, back-propagate
    ``world_size * share``.

    Args:
        image_emb: ``[n, D]`` this rank's L2-normalised image embeddings.
        text_emb: ``[n, D]`` this rank's L2-normalised text embeddings (same ``n`` on
            every rank).
        logit_scale: temperature ``t``; logit_bias: bias ``b`` (replicated).
        rank: this rank; world_size: ``W``; group: the process group (default: world).

    Returns:
        Scalar tensor: this rank's share (nats per example of the global batch).
    """
    _check_embeddings(image_emb, text_emb, square=True)
    _check_scalar(logit_scale, "logit_scale")
    _check_scalar(logit_bias, "logit_bias")
    if not 0 <= rank < world_size:
        raise ValueError(f"`rank` must be in [0, {world_size}), got {rank}")
    if world_size == 1:
        return sigmoid_contrastive_loss(
            image_emb, text_emb, logit_scale=logit_scale, logit_bias=logit_bias
        )
    n = image_emb.shape[0]
    texts = _AllGatherRows.apply(text_emb, world_size, group)  # [W n, D]
    labels = -torch.ones(n, texts.shape[0], device=image_emb.device, dtype=image_emb.dtype)
    idx = torch.arange(n, device=image_emb.device)
    labels[idx, rank * n + idx] = 1.0  # this rank's positives sit at its own block
    pair = sigmoid_pair_losses(
        image_emb, texts, logit_scale=logit_scale, logit_bias=logit_bias, labels=labels
    )  # [n, W n]
    return pair.sum() / (world_size * n)
