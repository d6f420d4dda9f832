"""Transformer text tower with key-padding mask and masked mean pooling."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from curatorch.models.config import TextTowerConfig
from curatorch.models.layers import Transformer

__all__ = ["TextTransformer"]


class TextTransformer(nn.Module):
    """Bidirectional transformer over token ids.

    Args:
        cfg: the tower's :class:`TextTowerConfig`.
        embed_dim: output embedding width ``D``.

    ``forward(tokens [B, L] int64) -> [B, D]`` (not normalised), ``L <= context_length``.
    Tokens equal to ``cfg.pad_id`` (default 0) are masked out of attention (as keys) and
    of the mean pooling, so appending padding never changes the output. A row of only
    padding gives a finite embedding (``head(LayerNorm(0))``).
    """

    no_weight_decay_params = ("pos_embed",)

    def __init__(self, cfg: TextTowerConfig, *, embed_dim: int) -> None:
        super().__init__()
        if not isinstance(cfg, TextTowerConfig):
            raise ValueError(f"`cfg` must be a TextTowerConfig, got {cfg!r}")
        if not isinstance(embed_dim, int) or embed_dim <= 0:
            raise ValueError(f"`embed_dim` must be a positive int, got {embed_dim!r}")
        self.cfg = cfg
        self.embed_dim = embed_dim
        self.token_embed = nn.Embedding(cfg.vocab_size, cfg.width)
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.context_length, cfg.width))
        self.transformer = Transformer(
            cfg.width, cfg.depth, cfg.heads, mlp_ratio=cfg.mlp_ratio, attention=cfg.attention
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.02) token and positional embeddings."""
        nn.init.normal_(self.token_embed.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        """``tokens`` ``[B, L]`` integer ids -> ``[B, embed_dim]``."""
        if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"`tokens` must be an int64/int32 tensor [B, L], got dtype {tokens.dtype} "
                f"and shape {tuple(tokens.shape)}"
            )
        length = tokens.shape[1]
        if not 0 < length <= self.cfg.context_length:
            raise ValueError(
                f"`tokens` length must be in [1, context_length={self.cfg.context_length}], "
                f"got {length}"
            )
        pad = tokens == self.cfg.pad_id  # [B, L], True = padding
        x = self.token_embed(tokens) + self.pos_embed[:, :length]  # [B, L, W]
        x = self.transformer(x, key_padding_mask=pad)
        keep = (~pad).to(x.dtype).unsqueeze(-1)  # [B, L, 1]
        pooled = (x * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)  # [B, W]
        return self.head(self.norm(pooled))
