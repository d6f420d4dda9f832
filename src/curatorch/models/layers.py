"""Shared pre-LN transformer layers for the image and text towers.

Two attention implementations give the same numbers:

* ``"sdpa"`` -- :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernels on
  GPU; the default).
* ``"math"`` -- explicit ``softmax(q k^T / sqrt(d)) v``. Used for FLOP counting, because
  :class:`torch.utils.flop_counter.FlopCounterMode` counts no FLOPs for SDPA on CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "MLP",
    "MultiheadSelfAttention",
    "Transformer",
    "TransformerBlock",
    "check_attention",
    "mlp_hidden",
]

ATTENTION_IMPLEMENTATIONS: tuple[str, ...] = ("sdpa", "math")


def check_attention(attention: str, name: str = "attention") -> None:
    """Raise ``ValueError`` unless ``attention`` is one of :data:`ATTENTION_IMPLEMENTATIONS`."""
    if attention not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"`{name}` must be one of {list(ATTENTION_IMPLEMENTATIONS)}, got {attention!r}"
        )


def _padding_bias(key_padding_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive attention bias ``[B, 1, 1, L]`` from a padding mask ``[B, L]`` (True = pad).

    A row whose keys are all padding is left unmasked (attends uniformly to its pads)
    so that the softmax never sees a row of ``-inf`` and never yields NaN; the towers
    ignore such rows in pooling anyway.
    """
    all_pad = key_padding_mask.all(dim=1, keepdim=True)  # [B, 1]
    masked = key_padding_mask & ~all_pad  # [B, L]
    bias = torch.zeros(masked.shape, dtype=dtype, device=masked.device)
    bias = bias.masked_fill(masked, float("-inf"))
    return bias[:, None, None, :]


class MultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection.

    Args:
        width: model width ``W``; must be divisible by ``heads``.
        heads: number of heads ``H``.
        attention: ``"sdpa"`` or ``"math"``.
    """

    def __init__(self, width: int, heads: int, *, attention: str = "sdpa") -> None:
        super().__init__()
        if heads <= 0 or width % heads != 0:
            raise ValueError(f"`heads` must be positive and divide width {width}, got {heads}")
        check_attention(attention)
        self.width = width
        self.heads = heads
        self.head_dim = width // heads
        self.attention = attention
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, attn_bias: Tensor | None = None) -> Tensor:
        """``x`` ``[B, N, W]``; ``attn_bias`` additive, broadcastable to ``[B, H, N, N]``."""
        b, n, w = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, d]
        if attn_bias is not None:
            attn_bias = attn_bias.to(q.dtype)  # autocast may have lowered q's precision
        if self.attention == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)
        else:
            scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # [B,H,N,N]
            if attn_bias is not None:
                scores = scores + attn_bias
            out = scores.softmax(dim=-1) @ v  # [B, H, N, d]
        out = out.transpose(1, 2).reshape(b, n, w)
        return self.proj(out)


class MLP(nn.Module):
    """``Linear(W, hidden) -> GELU -> Linear(hidden, W)``."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + attn(LN(x))`` then ``x + mlp(LN(x))``."""

    def __init__(
        self, width: int, heads: int, *, mlp_ratio: float = 4.0, attention: str = "sdpa"
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = MultiheadSelfAttention(width, heads, attention=attention)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width, mlp_hidden(width, mlp_ratio))

    def forward(self, x: Tensor, attn_bias: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), attn_bias)
        return x + self.mlp(self.norm2(x))


def mlp_hidden(width: int, mlp_ratio: float) -> int:
    """Hidden width of the MLP: ``round(width * mlp_ratio)``."""
    return round(width * mlp_ratio)


class Transformer(nn.Module):
    """A stack of ``depth`` :class:`TransformerBlock` s.

    ``forward(x [B, N, W], key_padding_mask [B, N] bool or None) -> [B, N, W]``, where
    ``True`` in ``key_padding_mask`` marks a padding position that no query attends to.
    """

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        attention: str = "sdpa",
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(width, heads, mlp_ratio=mlp_ratio, attention=attention)
            for _ in range(depth)
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        bias = None if key_padding_mask is None else _padding_bias(key_padding_mask, x.dtype)
        for block in self.blocks:
            x = block(x, bias)
        return x
