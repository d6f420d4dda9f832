"""FlexiViT: PI-resize against its defining identity, shapes, validation, gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from curatorch.models import (
    FlexiViT,
    ImageTowerConfig,
    bilinear_resize_matrix,
    pi_resize_kernel,
    pi_resize_matrix,
    resize_pos_embed,
)


def _tower(image_size=16, patch_sizes=(4, 8), **kw) -> FlexiViT:
    cfg = ImageTowerConfig(
        image_size=image_size, patch_sizes=patch_sizes, width=32, depth=2, heads=2, **kw
    )
    return FlexiViT(cfg, embed_dim=24)


def _upsample_per_patch(images: torch.Tensor, p0: int, p: int) -> torch.Tensor:
    """Resize every p0 x p0 patch of ``images`` to p x p with the bilinear operator R."""
    b, c, h, w = images.shape
    gh, gw = h // p0, w // p0
    patches = images.reshape(b, c, gh, p0, gw, p0).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(-1, c, p0, p0)
    up = F.interpolate(patches, size=(p, p), mode="bilinear", align_corners=False, antialias=False)
    up = up.reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return up.reshape(b, c, gh * p, gw * p)


@pytest.mark.parametrize(("old", "new"), [(4, 8), (4, 6), (8, 4), (3, 3)])
def test_bilinear_resize_matrix_matches_interpolate(old, new):
    x = torch.randn(old, old, dtype=torch.float64)
    ref = F.interpolate(
        x[None, None], size=(new, new), mode="bilinear", align_corners=False, antialias=False
    )
    torch.testing.assert_close((bilinear_resize_matrix(old, new) @ x.flatten()), ref.flatten())


@pytest.mark.parametrize(("p0", "p"), [(4, 4), (4, 6), (4, 8), (4, 12), (8, 16), (3, 7)])
def test_pi_resize_preserves_inner_products_when_upsampling(p0, p):
    g = torch.Generator().manual_seed(p0 * 100 + p)
    w = torch.randn(5, 3, p0, p0, generator=g, dtype=torch.float64)
    x = torch.randn(7, 3, p0, p0, generator=g, dtype=torch.float64)
    w_new = pi_resize_kernel(w, p)  # [5, 3, p, p]
    x_new = F.interpolate(
        x, size=(p, p), mode="bilinear", align_corners=False, antialias=False
    )  # R x
    lhs = torch.einsum("ochw,bchw->bo", w_new, x_new)  # <R x, w'>
    rhs = torch.einsum("ochw,bchw->bo", w, x)  # <x, w>
    torch.testing.assert_close(lhs, rhs, atol=1e-8, rtol=1e-7)


def test_pi_resize_is_least_squares_when_downsampling():
    # p < p0: R^T w' = w has no exact solution; w' = pinv(R^T) w minimises the residual.
    p0, p = 8, 4
    w = torch.randn(p0 * p0, dtype=torch.float64)
    rt = bilinear_resize_matrix(p0, p).T  # [p0^2, p^2]
    w_new = pi_resize_matrix(p0, p) @ w
    ref = torch.linalg.lstsq(rt, w[:, None]).solution[:, 0]
    torch.testing.assert_close(w_new, ref)


def test_pi_resize_matrix_is_identity_at_same_size():
    torch.testing.assert_close(pi_resize_matrix(4, 4), torch.eye(16, dtype=torch.float64))


def test_patch_embedding_of_upsampled_image_equals_base_tokens():
    tower = _tower(image_size=32, patch_sizes=(4, 8)).double()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    up = _upsample_per_patch(x, 4, 8)  # [3, 3, 32, 32]
    torch.testing.assert_close(tower.patch_embed(up, 8), tower.patch_embed(x, 4))
    # Same 4x4 token grid, so the same positional embedding: the whole forward agrees.
    torch.testing.assert_close(tower(up, 8), tower(x, 4))


def test_whole_image_bilinear_upsample_is_not_per_patch():
    # Documents why the test above resizes per patch: across patch borders a whole-image
    # bilinear upsample mixes neighbouring patches.
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    whole = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert not torch.allclose(whole, _upsample_per_patch(x, 4, 8))


def test_pos_embed_resize_shapes():
    tower = _tower(image_size=16, patch_sizes=(2, 4, 8))
    assert tower.pos_embed.shape == (1, 64, 32)
    out = resize_pos_embed(tower.pos_embed, (8, 8), (4, 4))
    assert out.shape == (1, 16, 32)
    assert resize_pos_embed(tower.pos_embed, (8, 8), (3, 5)).shape == (1, 15, 32)
    assert resize_pos_embed(tower.pos_embed, (8, 8), (8, 8)) is tower.pos_embed


@pytest.mark.parametrize(
    ("image_size", "patch_sizes"), [(16, (4, 8)), (32, (8, 16)), (16, (2, 4, 8, 16))]
)
def test_forward_shapes_for_every_patch_size(image_size, patch_sizes):
    tower = _tower(image_size=image_size, patch_sizes=patch_sizes)
    x = torch.randn(2, 3, image_size, image_size)
    for p in patch_sizes:
        assert tower(x, p).shape == (2, 24)
        assert tower.patch_embed(x, p).shape == (2, tower.num_tokens(p), 32)
        assert tower.num_tokens(p) == (image_size // p) ** 2
    assert tower(x).shape == (2, 24)  # default: base patch size
    assert tower.num_tokens() == (image_size // min(patch_sizes)) ** 2


def test_base_patch_size_may_be_larger_than_smallest():
    tower = _tower(image_size=16, patch_sizes=(4, 8), base_patch_size=8)
    assert tower.patch_weight.shape == (32, 3, 8, 8)
    assert tower.pos_embed.shape == (1, 4, 32)
    x = torch.randn(2, 3, 16, 16)
    assert tower(x, 4).shape == (2, 24)


def test_invalid_patch_size_names_parameter():
    tower = _tower()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="patch_size"):
        tower(x, 2)
    with pytest.raises(ValueError, match="patch_size"):
        tower.num_tokens(16)
    with pytest.raises(ValueError, match="patch_size"):
        tower(torch.randn(1, 3, 12, 12), 8)
    with pytest.raises(ValueError, match="images"):
        tower(torch.randn(1, 1, 16, 16), 4)
    with pytest.raises(ValueError, match="patch_sizes"):
        ImageTowerConfig(image_size=16, patch_sizes=(4, 6), width=32, depth=1, heads=2)
    with pytest.raises(ValueError, match="base_patch_size"):
        ImageTowerConfig(
            image_size=16, patch_sizes=(4, 8), width=32, depth=1, heads=2, base_patch_size=2
        )


def test_gradients_reach_base_kernel_at_non_base_patch_size():
    tower = _tower()
    tower(torch.randn(2, 3, 16, 16), 8).square().sum().backward()
    assert tower.patch_weight.grad is not None
    assert tower.patch_weight.grad.abs().sum() > 0
    assert tower.pos_embed.grad.abs().sum() > 0


def test_pi_cache_is_not_state_and_is_reused():
    tower = _tower()
    x = torch.randn(1, 3, 16, 16)
    tower(x, 8)
    assert len(tower._pi_cache) == 1
    matrix = next(iter(tower._pi_cache.values()))
    tower(x, 8)
    assert next(iter(tower._pi_cache.values())) is matrix
    assert set(tower.state_dict()) == {name for name, _ in tower.named_parameters()}
    tower.double()(x.double(), 8)  # new dtype -> new cache entry
    assert len(tower._pi_cache) == 2
