"""Named model sizes and the builder.

A size is a :class:`ModelSize` (architecture only). The data decides ``image_size``,
``vocab_size`` and ``context_length``; :func:`get_model_config` joins the two into a
:class:`TwoTowerConfig` and :func:`build_model` makes the module.
"""

from __future__ import annotations

from curatorch.models.config import (
    ImageTowerConfig,
    ModelSize,
    TextTowerConfig,
    TwoTowerConfig,
)
from curatorch.models.layers import check_attention
from curatorch.models.two_tower import TwoTower

__all__ = [
    "MODEL_SIZES",
    "ImageTowerConfig",
    "ModelSize",
    "TextTowerConfig",
    "TwoTowerConfig",
    "build_model",
    "get_model_config",
    "register_model_size",
]

MODEL_SIZES: dict[str, ModelSize] = {}


def register_model_size(name: str, size: ModelSize, *, overwrite: bool = False) -> ModelSize:
    """Register ``size`` under ``name``; an existing name is an error unless ``overwrite``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}")
    if not isinstance(size, ModelSize):
        raise ValueError(f"`size` must be a ModelSize, got {size!r}")
    if name in MODEL_SIZES and not overwrite:
        raise ValueError(f"`name` {name!r} is already registered; pass overwrite=True")
    MODEL_SIZES[name] = size
    return size


# Tests: a train step at batch 128, 16x16 px, patch 4 takes milliseconds on 2 CPU cores.
register_model_size(
    "tiny",
    ModelSize(
        image_width=64,
        image_depth=2,
        image_heads=2,
        text_width=64,
        text_depth=2,
        text_heads=2,
        embed_dim=64,
    ),
)
# CPU demo.
register_model_size(
    "small",
    ModelSize(
        image_width=128,
        image_depth=4,
        image_heads=4,
        text_width=128,
        text_depth=2,
        text_heads=4,
        embed_dim=128,
    ),
)
# GPU: ViT-B image tower and a SigLIP-B-like text tower.
register_model_size(
    "base",
    ModelSize(
        image_width=768,
        image_depth=12,
        image_heads=12,
        text_width=768,
        text_depth=12,
        text_heads=12,
        embed_dim=768,
    ),
)


def get_model_config(
    name: str,
    *,
    image_size: int,
    patch_sizes: tuple[int, ...] | None = None,
    vocab_size: int,
    context_length: int,
    attention: str = "sdpa",
) -> TwoTowerConfig:
    """Config of the registered size ``name`` for the given data.

    Args:
        name: a key of :data:`MODEL_SIZES` (``"tiny"``, ``"small"``, ``"base"``, ...).
        image_size: image side in pixels.
        patch_sizes: FlexiViT patch sides; default ``(image_size // 4, image_size // 2)``,
            i.e. ``(4, 8)`` at 16 px and ``(8, 16)`` at 32 px. The smallest is the base.
        vocab_size: tokenizer vocabulary size (pad id 0 included).
        context_length: maximum caption length in tokens.
        attention: ``"sdpa"`` (default) or ``"math"`` for both towers.
    """
    if name not in MODEL_SIZES:
        raise ValueError(f"`name` must be one of {sorted(MODEL_SIZES)}, got {name!r}")
    check_attention(attention)
    if not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"`image_size` must be a positive int, got {image_size!r}")
    if patch_sizes is None:
        if image_size % 4 != 0:
            raise ValueError(
                f"`image_size` must be divisible by 4 for the default patch_sizes, "
                f"got {image_size}; pass patch_sizes explicitly"
            )
        patch_sizes = (image_size // 4, image_size // 2)
    size = MODEL_SIZES[name]
    image = ImageTowerConfig(
        image_size=image_size,
        patch_sizes=tuple(patch_sizes),
        width=size.image_width,
        depth=size.image_depth,
        heads=size.image_heads,
        mlp_ratio=size.mlp_ratio,
        attention=attention,
    )
    text = TextTowerConfig(
        vocab_size=vocab_size,
        context_length=context_length,
        width=size.text_width,
        depth=size.text_depth,
        heads=size.text_heads,
        mlp_ratio=size.mlp_ratio,
        attention=attention,
    )
    return TwoTowerConfig(image=image, text=text, embed_dim=size.embed_dim)


def build_model(cfg: TwoTowerConfig) -> TwoTower:
    """Build a freshly initialised :class:`TwoTower` (uses the global torch RNG)."""
    return TwoTower(cfg)
