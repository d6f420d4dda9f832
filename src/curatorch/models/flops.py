"""Analytic forward FLOPs of the towers, per example.

Convention: one multiply-accumulate = 2 FLOPs; every matmul is counted (patch embedding,
qkv, attention scores ``q k^T``, attention-weighted sum ``a v``, output projection, both MLP
matmuls, the final head). Elementwise work (LayerNorm, GELU, softmax, biases, positional
embeddings, pooling, normalisation) and the embedding lookup are not counted. This is
the convention of :class:`torch.utils.flop_counter.FlopCounterMode`, against which the
tests check these numbers. The text tower is counted at all ``context_length`` positions.

The PI-resize of the patch kernel (``p != p0``) is one matmul per *batch*, not per
example; :func:`pi_resize_flops` gives it separately.
"""

from __future__ import annotations

from curatorch.models.config import ImageTowerConfig, TextTowerConfig, TwoTowerConfig
from curatorch.models.layers import mlp_hidden

__all__ = [
    "image_forward_flops",
    "pi_resize_flops",
    "text_forward_flops",
    "transformer_forward_flops",
    "two_tower_forward_flops",
]


def transformer_forward_flops(tokens: int, width: int, depth: int, mlp_ratio: float) -> int:
    """FLOPs of ``depth`` pre-LN blocks over ``tokens`` tokens of width ``width``."""
    n, w, h = tokens, width, mlp_hidden(width, mlp_ratio)
    per_block = (
        2 * n * w * 3 * w  # qkv projection
        + 2 * n * n * w  # scores q k^T, summed over heads
        + 2 * n * n * w  # weighted sum a v
        + 2 * n * w * w  # output projection
        + 2 * 2 * n * w * h  # MLP fc1 + fc2
    )
    return depth * per_block


def _check_patch(cfg: ImageTowerConfig, patch_size: int) -> None:
    if patch_size not in cfg.patch_sizes:
        raise ValueError(f"`patch_size` must be one of {list(cfg.patch_sizes)}, got {patch_size!r}")


def image_forward_flops(
    cfg: ImageTowerConfig | TwoTowerConfig, patch_size: int, embed_dim: int | None = None
) -> int:
    """Forward FLOPs of the FlexiViT tower for one ``image_size`` image at ``patch_size``.

    ``cfg`` may be a :class:`TwoTowerConfig` (``embed_dim`` taken from it) or an
    :class:`ImageTowerConfig` together with ``embed_dim``.
    """
    if isinstance(cfg, TwoTowerConfig):
        embed_dim = cfg.embed_dim
        cfg = cfg.image
    if not isinstance(cfg, ImageTowerConfig):
        raise ValueError(f"`cfg` must be an ImageTowerConfig or TwoTowerConfig, got {cfg!r}")
    if embed_dim is None:
        raise ValueError("`embed_dim` must be given with an ImageTowerConfig, got None")
    _check_patch(cfg, patch_size)
    n = cfg.grid(patch_size) ** 2
    patch = 2 * n * 3 * patch_size * patch_size * cfg.width
    blocks = transformer_forward_flops(n, cfg.width, cfg.depth, cfg.mlp_ratio)
    head = 2 * cfg.width * embed_dim
    return patch + blocks + head


def pi_resize_flops(cfg: ImageTowerConfig | TwoTowerConfig, patch_size: int) -> int:
    """FLOPs of PI-resizing the patch kernel to ``patch_size`` (once per forward call)."""
    if isinstance(cfg, TwoTowerConfig):
        cfg = cfg.image
    _check_patch(cfg, patch_size)
    p0 = cfg.base_patch
    if patch_size == p0:
        return 0
    return 2 * cfg.width * 3 * p0 * p0 * patch_size * patch_size


def text_forward_flops(cfg: TextTowerConfig | TwoTowerConfig, embed_dim: int | None = None) -> int:
    """Forward FLOPs of the text tower for one caption of ``context_length`` tokens."""
    if isinstance(cfg, TwoTowerConfig):
        embed_dim = cfg.embed_dim
        cfg = cfg.text
    if not isinstance(cfg, TextTowerConfig):
        raise ValueError(f"`cfg` must be a TextTowerConfig or TwoTowerConfig, got {cfg!r}")
    if embed_dim is None:
        raise ValueError("`embed_dim` must be given with a TextTowerConfig, got None")
    blocks = transformer_forward_flops(cfg.context_length, cfg.width, cfg.depth, cfg.mlp_ratio)
    return blocks + 2 * cfg.width * embed_dim


def two_tower_forward_flops(cfg: TwoTowerConfig, patch_size: int) -> int:
    """Forward FLOPs of both towers for one image-caption pair (PI-resize excluded)."""
    if not isinstance(cfg, TwoTowerConfig):
        raise ValueError(f"`cfg` must be a TwoTowerConfig, got {cfg!r}")
    return image_forward_flops(cfg, patch_size) + text_forward_flops(cfg)
