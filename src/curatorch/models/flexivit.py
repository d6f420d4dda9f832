"""FlexiViT image tower (Beyer et al., "FlexiViT: One Model for All Patch Sizes", CVPR 2023).

One set of weights runs at several patch sizes. The patch-embedding kernel is stored at
a base size ``p0`` and resized on the fly with the pseudo-inverse ("PI") resize; the
positional embedding is stored on the base token grid and bilinearly resized.

PI-resize. Let ``R`` (``[p*p, p0*p0]``) be the linear map that bilinearly resizes a
``p0 x p0`` patch to ``p x p``. We want a kernel ``w'`` at size ``p`` whose response to a
resized patch equals the base kernel's response to the original patch:
``<R x, w'> = <x, w>`` for all ``x``, i.e. ``R^T w' = w``. The least-squares solution is
``w' = pinv(R^T) w``; it is exact when ``p >= p0`` (``R`` is injective, so ``R^T`` is
onto).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curatorch.models.config import ImageTowerConfig
from curatorch.models.layers import Transformer

__all__ = [
    "FlexiViT",
    "bilinear_resize_matrix",
    "pi_resize_kernel",
    "pi_resize_matrix",
    "resize_pos_embed",
]


def _check_size(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")


def bilinear_resize_matrix(old_size: int, new_size: int) -> Tensor:
    """Matrix ``R`` ``[new_size**2, old_size**2]`` (float64) of the bilinear patch resize.

    ``(R @ x.flatten()).reshape(new_size, new_size)`` equals
    ``F.interpolate(x[None, None], (new_size, new_size), mode="bilinear",
    align_corners=False, antialias=False)`` for any ``old_size x old_size`` patch ``x``.
    """
    _check_size(old_size, "old_size")
    _check_size(new_size, "new_size")
    basis = torch.eye(old_size * old_size, dtype=torch.float64)
    basis = basis.reshape(old_size * old_size, 1, old_size, old_size)
    resized = F.interpolate(
        basis, size=(new_size, new_size), mode="bilinear", align_corners=False, antialias=False
    )  # [old^2, 1, new, new]; row k = R e_k
    return resized.reshape(old_size * old_size, new_size * new_size).T.contiguous()


def pi_resize_matrix(old_size: int, new_size: int) -> Tensor:
    """``pinv(R^T)`` ``[new_size**2, old_size**2]`` (float64): maps a flattened kernel at
    ``old_size`` to its PI-resized version at ``new_size``."""
    r = bilinear_resize_matrix(old_size, new_size)  # [new^2, old^2]
    return torch.linalg.pinv(r.T)


def pi_resize_kernel(kernel: Tensor, new_size: int, matrix: Tensor | None = None) -> Tensor:
    """PI-resize a conv kernel ``[..., p0, p0]`` to ``[..., new_size, new_size]``.

    Args:
        kernel: ``[..., p0, p0]`` kernel (e.g. ``[W, 3, p0, p0]``).
        new_size: target side ``p`` in pixels.
        matrix: optional precomputed :func:`pi_resize_matrix` ``(p0, p)`` in the kernel's
            dtype and device.

    Returns:
        ``[..., p, p]`` kernel. Differentiable with respect to ``kernel``.
    """
    if kernel.dim() < 2 or kernel.shape[-1] != kernel.shape[-2]:
        raise ValueError(
            f"`kernel` must end in two equal spatial dims, got shape {tuple(kernel.shape)}"
        )
    old = kernel.shape[-1]
    if matrix is None:
        matrix = pi_resize_matrix(old, new_size).to(device=kernel.device, dtype=kernel.dtype)
    if tuple(matrix.shape) != (new_size * new_size, old * old):
        raise ValueError(
            f"`matrix` must have shape {(new_size * new_size, old * old)}, got "
            f"{tuple(matrix.shape)}"
        )
    lead = kernel.shape[:-2]
    flat = kernel.reshape(-1, old * old)  # [prod(lead), p0^2]
    return (flat @ matrix.T).reshape(*lead, new_size, new_size)


def resize_pos_embed(
    pos_embed: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> Tensor:
    """Bilinearly resize a positional embedding ``[1, gh*gw, W]`` to ``[1, nh*nw, W]``."""
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    width = pos_embed.shape[-1]
    grid = pos_embed.reshape(1, old_grid[0], old_grid[1], width).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=tuple(new_grid), mode="bilinear", align_corners=False, antialias=False
    )
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], width)


class FlexiViT(nn.Module):
    """Vision transformer that runs at any patch size in ``cfg.patch_sizes``.

    Args:
        cfg: the tower's :class:`ImageTowerConfig`.
        embed_dim: output embedding width ``D``.

    ``forward(images [B, 3, H, W], patch_size=None) -> [B, D]`` (not normalised).
    ``H`` and ``W`` are normally ``cfg.image_size``; any sides divisible by ``patch_size``
    work (the positional embedding is resized to the token grid).
    """

    no_weight_decay_params = ("patch_bias", "pos_embed")

    def __init__(self, cfg: ImageTowerConfig, *, embed_dim: int) -> None:
        super().__init__()
        if not isinstance(cfg, ImageTowerConfig):
            raise ValueError(f"`cfg` must be an ImageTowerConfig, got {cfg!r}")
        _check_size(embed_dim, "embed_dim")
        self.cfg = cfg
        self.embed_dim = embed_dim
        p0 = cfg.base_patch
        self.base_grid = cfg.image_size // p0
        self.patch_weight = nn.Parameter(torch.empty(cfg.width, 3, p0, p0))  # [W, 3, p0, p0]
        self.patch_bias = nn.Parameter(torch.zeros(cfg.width))
        self.pos_embed = nn.Parameter(torch.empty(1, self.base_grid**2, cfg.width))
        self.transformer = Transformer(
            cfg.width, cfg.depth, cfg.heads, mlp_ratio=cfg.mlp_ratio, attention=cfg.attention
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, embed_dim)
        # (p0, p, device, dtype) -> pinv(R^T); plain attribute, so not in state_dict.
        self._pi_cache: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """LeCun-normal patch kernel, N(0, 0.02) positional embedding, zero biases."""
        fan_in = 3 * self.cfg.base_patch**2
        nn.init.normal_(self.patch_weight, std=fan_in**-0.5)
        nn.init.zeros_(self.patch_bias)
        nn.init.normal_(self.pos_embed, std=0.02)

    def _check_patch_size(self, patch_size: int) -> None:
        if patch_size not in self.cfg.patch_sizes:
            raise ValueError(
                f"`patch_size` must be one of {list(self.cfg.patch_sizes)}, got {patch_size!r}"
            )

    def num_tokens(self, patch_size: int | None = None) -> int:
        """Tokens per image at ``patch_size`` (default: base), for ``cfg.image_size`` images."""
        p = self.cfg.base_patch if patch_size is None else patch_size
        self._check_patch_size(p)
        return (self.cfg.image_size // p) ** 2

    def patch_kernel(self, patch_size: int) -> Tensor:
        """Patch-embedding kernel ``[W, 3, p, p]`` at ``patch_size`` (PI-resized from base)."""
        self._check_patch_size(patch_size)
        w = self.patch_weight
        p0 = w.shape[-1]
        if patch_size == p0:
            return w
        key = (p0, patch_size, w.device, w.dtype)
        matrix = self._pi_cache.get(key)
        if matrix is None:
            matrix = pi_resize_matrix(p0, patch_size).to(device=w.device, dtype=w.dtype)
            self._pi_cache[key] = matrix
        return pi_resize_kernel(w, patch_size, matrix)

    def patch_embed(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """Patch tokens without positional embedding: ``[B, 3, H, W] -> [B, H/p * W/p, W]``."""
        p = self.cfg.base_patch if patch_size is None else patch_size
        self._check_patch_size(p)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must have shape [B, 3, H, W], got {tuple(images.shape)}")
        if images.shape[2] % p != 0 or images.shape[3] % p != 0:
            raise ValueError(
                f"`patch_size` must divide the image sides {tuple(images.shape[2:])}, got {p}"
            )
        x = F.conv2d(images, self.patch_kernel(p), self.patch_bias, stride=p)  # [B, W, h, w]
        return x.flatten(2).transpose(1, 2)

    def forward(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """``images`` ``[B, 3, H, W]`` float -> ``[B, embed_dim]`` (unnormalised)."""
        p = self.cfg.base_patch if patch_size is None else patch_size
        x = self.patch_embed(images, p)  # [B, N, W]
        grid = (images.shape[2] // p, images.shape[3] // p)
        x = x + resize_pos_embed(self.pos_embed, (self.base_grid, self.base_grid), grid)
        x = self.transformer(x)
        x = self.norm(x.mean(dim=1))  # GAP over tokens, [B, W]
        return self.head(x)
