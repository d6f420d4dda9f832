"""The SigLIP loss split over 2 gloo ranks equals the single-process full-batch loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from curatorch.losses import sigmoid_contrastive_loss, sigmoid_contrastive_loss_sharded
from tests.distributed.helpers import run_ranks

N, D = 6, 8  # rows per rank, embedding width


def _inputs(world_size: int):
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(world_size * N, D, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(torch.randn(world_size * N, D, generator=g, dtype=torch.float64), dim=1)
    return img, txt


def _rank_loss(rank: int, world_size: int):
    img, txt = _inputs(world_size)
    rows = slice(rank * N, (rank + 1) * N)
    x = img[rows].clone().requires_grad_(True)
    y = txt[rows].clone().requires_grad_(True)
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    share = sigmoid_contrastive_loss_sharded(
        x, y, logit_scale=t, logit_bias=b, rank=rank, world_size=world_size
    )
    share.backward()
    return {"share": share.detach(), "gx": x.grad, "gy": y.grad, "gt": t.grad, "gb": b.grad}


def test_sharded_loss_and_gradients_equal_full_batch(tmp_path):
    world = 2
    results = run_ranks(_rank_loss, world, tmp_path)
    img, txt = _inputs(world)
    x = img.clone().requires_grad_(True)
    y = txt.clone().requires_grad_(True)
    t = torch.tensor(7.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    full = sigmoid_contrastive_loss(x, y, logit_scale=t, logit_bias=b)
    full.backward()
    total = sum(r["share"] for r in results)
    assert torch.allclose(total, full.detach(), atol=1e-5, rtol=0)
    gx = torch.cat([r["gx"] for r in results])
    gy = torch.cat([r["gy"] for r in results])
    assert torch.allclose(gx, x.grad, atol=1e-5, rtol=0)
    assert torch.allclose(gy, y.grad, atol=1e-5, rtol=0)
    # replicated scalars: per-rank partial gradients sum to the full-batch gradient
    assert torch.allclose(sum(r["gt"] for r in results), t.grad, atol=1e-5, rtol=0)
    assert torch.allclose(sum(r["gb"] for r in results), b.grad, atol=1e-5, rtol=0)
    # and the shares are genuinely partial (each rank holds only part of the loss)
    assert all(abs(float(r["share"]) - float(full.detach())) > 1e-3 for r in results)


def test_sharded_loss_single_process_is_the_batch_loss():
    img, txt = _inputs(1)
    a = sigmoid_contrastive_loss_sharded(
        img, txt, logit_scale=5.0, logit_bias=-2.0, rank=0, world_size=1
    )
    b = sigmoid_contrastive_loss(img, txt, logit_scale=5.0, logit_bias=-2.0)
    assert torch.equal(a, b)


def test_sharded_loss_rejects_bad_rank():
    img, txt = _inputs(1)
    import pytest

    with pytest.raises(ValueError, match="rank"):
        sigmoid_contrastive_loss_sharded(
            img, txt, logit_scale=5.0, logit_bias=-2.0, rank=2, world_size=2
        )
