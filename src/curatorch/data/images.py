"""Image conversions, written once: uint8 ``[3, H, W]`` RGB tensors, the models' float
input, 8-bit quantisation, PIL images and the channels-last arrays plotting wants.

Every image of curatorch is a uint8 RGB tensor, channels first (``[3, H, W]``, or
``[n, 3, H, W]`` for a batch); the models see :func:`float_images` of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["float_images", "pil_to_tensor", "quantize_", "tensor_to_pil", "to_channels_last"]


def _check_uint8(images: torch.Tensor, name: str = "images") -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a uint8 tensor, got {got}")


def float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images ``[..., 3, H, W]`` as float32 scaled from [0, 255] to [-1, 1]
    (``x / 127.5 - 1``); a new tensor."""
    _check_uint8(images)
    return images.to(torch.float32).mul_(1.0 / 127.5).sub_(1.0)


def quantize_(pixels: torch.Tensor) -> torch.Tensor:
    """Pixel values on the [0, 255] scale as uint8: float values rounded (half to even),
    then every value clamped to [0, 255]. Works in place on ``pixels`` (a float or
    signed integer tensor); returns the new uint8 tensor."""
    if pixels.dtype == torch.bool or pixels.is_complex():
        raise ValueError(f"pixels must be a real float or integer tensor, got {pixels.dtype}")
    if pixels.is_floating_point():
        pixels.round_()
    return pixels.clamp_(0, 255).to(torch.uint8)


def to_channels_last(images: torch.Tensor) -> np.ndarray:
    """uint8 ``[3, H, W]`` or ``[n, 3, H, W]`` as a NumPy ``[H, W, 3]`` / ``[n, H, W, 3]``
    array (what PIL and ``imshow`` take)."""
    _check_uint8(images)
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"images must be [3, H, W] or [n, 3, H, W], got {tuple(images.shape)}")
    return images.movedim(-3, -1).contiguous().numpy()


def tensor_to_pil(image: torch.Tensor) -> PILImage.Image:
    """uint8 ``[3, H, W]`` RGB tensor -> an RGB PIL image."""
    from PIL import Image

    if image.dim() != 3:
        raise ValueError(f"image must be [3, H, W], got {tuple(image.shape)}")
    return Image.fromarray(to_channels_last(image), "RGB")


def pil_to_tensor(image: PILImage.Image) -> torch.Tensor:
    """An RGB PIL image -> uint8 ``[3, H, W]`` tensor (a contiguous copy)."""
    if image.mode != "RGB":
        raise ValueError(f"image must be in mode RGB (convert it first), got {image.mode}")
    array = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
