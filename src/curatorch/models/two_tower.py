"""SigLIP-style two-tower model: FlexiViT image tower + transformer text tower."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curatorch.models.config import TwoTowerConfig
from curatorch.models.flexivit import FlexiViT
from curatorch.models.text import TextTransformer

__all__ = ["TwoTower"]


class TwoTower(nn.Module):
    """Image and text towers with a learnable temperature and bias (SigLIP init).

    Attributes:
        image: the :class:`FlexiViT` tower.
        text: the :class:`TextTransformer` tower.
        logit_scale_log: scalar parameter ``t'``, initialised to ``log(10)``.
        logit_bias: scalar parameter ``b``, initialised to ``-10``.
    """

    no_weight_decay_params = ("logit_scale_log", "logit_bias")

    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        if not isinstance(cfg, TwoTowerConfig):
            raise ValueError(f"`cfg` must be a TwoTowerConfig, got {cfg!r}")
        self.cfg = cfg
        self.image = FlexiViT(cfg.image, embed_dim=cfg.embed_dim)
        self.text = TextTransformer(cfg.text, embed_dim=cfg.embed_dim)
        self.logit_scale_log = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))

    @property
    def logit_scale(self) -> Tensor:
        """Temperature ``t = exp(t')`` (scalar tensor, differentiable)."""
        return self.logit_scale_log.exp()

    def encode_image(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """``images`` ``[B, 3, H, W]`` -> L2-normalised ``[B, embed_dim]``."""
        return F.normalize(self.image(images, patch_size), dim=-1)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """``tokens`` ``[B, L]`` int64 -> L2-normalised ``[B, embed_dim]``."""
        return F.normalize(self.text(tokens), dim=-1)

    def forward(
        self, images: Tensor, tokens: Tensor, patch_size: int | None = None
    ) -> dict[str, Tensor]:
        """Both towers.

        Returns:
            ``{"image_emb": [B, D], "text_emb": [B, D], "logit_scale": [], "logit_bias": []}``
            with unit-norm embeddings; pass them to :mod:`curatorch.losses`.
        """
        return {
            "image_emb": self.encode_image(images, patch_size),
            "text_emb": self.encode_text(tokens),
            "logit_scale": self.logit_scale,
            "logit_bias": self.logit_bias,
        }
