"""Frozen dataclass configs of the towers and of the two-tower model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from curatorch.models.layers import check_attention

__all__ = ["ImageTowerConfig", "ModelSize", "TextTowerConfig", "TwoTowerConfig"]


def _positive_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def _check_width_heads(width: int, heads: int, prefix: str) -> None:
    _positive_int(width, f"{prefix}width")
    _positive_int(heads, f"{prefix}heads")
    if width % heads != 0:
        raise ValueError(f"`{prefix}heads` must divide `{prefix}width` ({width}), got {heads}")


def _check_mlp_ratio(mlp_ratio: float, name: str) -> None:
    if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
        raise ValueError(f"`{name}` must be a positive number, got {mlp_ratio!r}")


@dataclass(frozen=True)
class ImageTowerConfig:
    """FlexiViT image tower.

    Attributes:
        image_size: side of the square training images in pixels.
        patch_sizes: patch sides (pixels) the tower may run at; each divides ``image_size``.
        width: token width ``W``.
        depth: number of transformer blocks.
        heads: attention heads (divides ``width``).
        mlp_ratio: MLP hidden width / ``width``.
        base_patch_size: patch side the patch-embedding kernel and the positional-embedding
            grid are stored at; ``None`` means the smallest of ``patch_sizes``. Must be one
            of ``patch_sizes``. Use :attr:`base_patch` for the resolved value.
        attention: ``"sdpa"`` or ``"math"`` (see :mod:`curatorch.models.layers`).
    """

    image_size: int
    patch_sizes: tuple[int, ...]
    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    base_patch_size: int | None = None
    attention: str = "sdpa"

    def __post_init__(self) -> None:
        _positive_int(self.image_size, "image_size")
        if isinstance(self.patch_sizes, (list, tuple)):
            object.__setattr__(self, "patch_sizes", tuple(self.patch_sizes))
        if not isinstance(self.patch_sizes, tuple) or not self.patch_sizes:
            raise ValueError(
                f"`patch_sizes` must be a non-empty tuple of ints, got {self.patch_sizes!r}"
            )
        for p in self.patch_sizes:
            if not isinstance(p, int) or p <= 0 or self.image_size % p != 0:
                raise ValueError(
                    f"`patch_sizes` entries must be positive ints dividing image_size "
                    f"{self.image_size}, got {self.patch_sizes!r}"
                )
        if self.base_patch_size is not None and self.base_patch_size not in self.patch_sizes:
            raise ValueError(
                f"`base_patch_size` must be one of patch_sizes {self.patch_sizes}, "
                f"got {self.base_patch_size!r}"
            )
        _check_width_heads(self.width, self.heads, "")
        _positive_int(self.depth, "depth")
        _check_mlp_ratio(self.mlp_ratio, "mlp_ratio")
        check_attention(self.attention)

    @property
    def base_patch(self) -> int:
        """Resolved base patch size (pixels)."""
        return self.base_patch_size if self.base_patch_size is not None else min(self.patch_sizes)

    def grid(self, patch_size: int) -> int:
        """Tokens per side at ``patch_size``: ``image_size // patch_size``."""
        return self.image_size // patch_size


@dataclass(frozen=True)
class TextTowerConfig:
    """Transformer text tower over integer tokens (pad id ``pad_id``, default 0).

    Attributes:
        vocab_size: number of token ids (including pad).
        context_length: maximum sequence length ``L``.
        width, depth, heads, mlp_ratio, attention: as in :class:`ImageTowerConfig`.
        pad_id: token id treated as padding (masked in attention and pooling).
    """

    vocab_size: int
    context_length: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    attention: str = "sdpa"
    pad_id: int = 0

    def __post_init__(self) -> None:
        _positive_int(self.vocab_size, "vocab_size")
        _positive_int(self.context_length, "context_length")
        _check_width_heads(self.width, self.heads, "")
        _positive_int(self.depth, "depth")
        _check_mlp_ratio(self.mlp_ratio, "mlp_ratio")
        check_attention(self.attention)
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(
                f"`pad_id` must be an int in [0, vocab_size={self.vocab_size}), got {self.pad_id!r}"
            )


@dataclass(frozen=True)
class TwoTowerConfig:
    """Image tower + text tower projecting to a shared ``embed_dim``."""

    image: ImageTowerConfig
    text: TextTowerConfig
    embed_dim: int

    def __post_init__(self) -> None:
        if not isinstance(self.image, ImageTowerConfig):
            raise ValueError(f"`image` must be an ImageTowerConfig, got {self.image!r}")
        if not isinstance(self.text, TextTowerConfig):
            raise ValueError(f"`text` must be a TextTowerConfig, got {self.text!r}")
        _positive_int(self.embed_dim, "embed_dim")

    def with_attention(self, attention: str) -> TwoTowerConfig:
        """Copy of this config with both towers using ``attention`` (``"sdpa"``/``"math"``)."""
        check_attention(attention)
        return replace(
            self,
            image=replace(self.image, attention=attention),
            text=replace(self.text, attention=attention),
        )


@dataclass(frozen=True)
class ModelSize:
    """Architecture of a named size, without the data-dependent fields.

    :func:`curatorch.models.get_model_config` combines it with ``image_size``,
    ``patch_sizes``, ``vocab_size`` and ``context_length`` into a :class:`TwoTowerConfig`.
    """

    image_width: int
    image_depth: int
    image_heads: int
    text_width: int
    text_depth: int
    text_heads: int
    embed_dim: int
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        _check_width_heads(self.image_width, self.image_heads, "image_")
        _check_width_heads(self.text_width, self.text_heads, "text_")
        _positive_int(self.image_depth, "image_depth")
        _positive_int(self.text_depth, "text_depth")
        _positive_int(self.embed_dim, "embed_dim")
        _check_mlp_ratio(self.mlp_ratio, "mlp_ratio")
