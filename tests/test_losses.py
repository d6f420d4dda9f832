"""Losses against direct dense formulas written with explicit loops (forward and backward)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from curatorch.losses import (
    sigmoid_contrastive_loss,
    sigmoid_pair_losses,
    softmax_contrastive_loss,
)


def _inputs(n: int, m: int, d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)
    y = F.normalize(torch.randn(m, d, generator=g, dtype=torch.float64), dim=-1)
    x.requires_grad_(True)
    y.requires_grad_(True)
    t = torch.tensor(7.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    return x, y, t, b


def _log_sigmoid(u: torch.Tensor) -> torch.Tensor:
    # Written from the definition, log(1 / (1 + exp(-u))), for moderate u only.
    return -torch.log1p(torch.exp(-u))


def _dense_sigmoid(x, y, t, b, labels=None):
    n, m = x.shape[0], y.shape[0]
    rows = []
    for i in range(n):
        row = []
        for j in range(m):
            z = (1.0 if i == j else -1.0) if labels is None else float(labels[i, j])
            dot = sum(x[i, k] * y[j, k] for k in range(x.shape[1]))
            row.append(-_log_sigmoid(z * (t * dot + b)))
        rows.append(torch.stack(row))
    return torch.stack(rows)


def _dense_softmax(x, y, t):
    bsz = x.shape[0]
    logits = [
        [t * sum(x[i, k] * y[j, k] for k in range(x.shape[1])) for j in range(bsz)]
        for i in range(bsz)
    ]
    total = 0.0
    for i in range(bsz):
        row = torch.stack(logits[i])
        col = torch.stack([logits[j][i] for j in range(bsz)])
        total = total - (row[i] - torch.log(torch.exp(row).sum()))  # image -> text
        total = total - (col[i] - torch.log(torch.exp(col).sum()))  # text -> image
    return total / (2 * bsz)


def _grads(loss, params):
    return torch.autograd.grad(loss, params)


def test_sigmoid_pair_losses_match_dense_loops_forward_and_backward():
    x, y, t, b = _inputs(5, 5, 4)
    fast = sigmoid_pair_losses(x, y, logit_scale=t, logit_bias=b)
    slow = _dense_sigmoid(x, y, t, b)
    torch.testing.assert_close(fast, slow)
    weights = torch.randn(5, 5, dtype=torch.float64)
    g_fast = _grads((fast * weights).sum(), (x, y, t, b))
    g_slow = _grads((slow * weights).sum(), (x, y, t, b))
    for a, c in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, c)


def test_sigmoid_pair_losses_rectangular_labels():
    x, y, t, b = _inputs(3, 6, 4, seed=1)
    labels = -torch.ones(3, 6)
    labels[0, 4] = labels[1, 0] = labels[2, 2] = 1.0
    fast = sigmoid_pair_losses(x, y, logit_scale=t, logit_bias=b, labels=labels)
    slow = _dense_sigmoid(x, y, t, b, labels)
    torch.testing.assert_close(fast, slow)
    g_fast = _grads(fast.sum(), (x, y, t, b))
    g_slow = _grads(slow.sum(), (x, y, t, b))
    for a, c in zip(g_fast, g_slow, strict=True):
        torch.testing.assert_close(a, c)


def test_sigmoid_contrastive_loss_matches_dense_loops_forward_and_backward():
    x, y, t, b = _inputs(6, 6, 3, seed=2)
    fast = sigmoid_contrastive_loss(x, y, logit_scale=t, logit_bias=b)
    slow = _dense_sigmoid(x, y, t, b).sum() / 6
    torch.testing.assert_close(fast, slow)
    for a, c in zip(_grads(fast, (x, y, t, b)), _grads(slow, (x, y, t, b)), strict=True):
        torch.testing.assert_close(a, c)


def test_softmax_contrastive_loss_matches_dense_loops_forward_and_backward():
    x, y, t, _ = _inputs(5, 5, 4, seed=3)
    fast = softmax_contrastive_loss(x, y, logit_scale=t)
    slow = _dense_softmax(x, y, t)
    torch.testing.assert_close(fast, slow)
    for a, c in zip(_grads(fast, (x, y, t)), _grads(slow, (x, y, t)), strict=True):
        torch.testing.assert_close(a, c)


def test_float_scale_and_bias_equal_tensor_ones():
    x, y, _, _ = _inputs(4, 4, 3, seed=4)
    a = sigmoid_contrastive_loss(x, y, logit_scale=10.0, logit_bias=-10.0)
    c = sigmoid_contrastive_loss(
        x,
        y,
        logit_scale=torch.tensor(10.0, dtype=torch.float64),
        logit_bias=torch.tensor([-10.0], dtype=torch.float64),
    )
    torch.testing.assert_close(a, c)
    s1 = softmax_contrastive_loss(x, y, logit_scale=10.0)
    s2 = softmax_contrastive_loss(x, y, logit_scale=torch.tensor(10.0, dtype=torch.float64))
    torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_logits_are_finite(dtype):
    g = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(8, 16, generator=g, dtype=dtype), dim=-1).requires_grad_(True)
    y = x.detach().clone().requires_grad_(True)  # perfectly aligned pairs: dot = 1
    t = torch.tensor(1e4, dtype=dtype, requires_grad=True)
    for bias in (-1e4, 0.0, 1e4):
        b = torch.tensor(bias, dtype=dtype, requires_grad=True)
        pair = sigmoid_pair_losses(x, y, logit_scale=t, logit_bias=b)
        loss = pair.sum() / 8
        grads = torch.autograd.grad(loss, (x, y, t, b))
        assert torch.isfinite(pair).all()
        assert all(torch.isfinite(gr).all() for gr in grads)
        # -log sigmoid(u) ~= max(-u, 0) when |u| is huge.
        logits = t.detach() * (x.detach() @ y.detach().T) + bias
        z = 2 * torch.eye(8, dtype=dtype) - 1
        torch.testing.assert_close(
            pair.detach(), torch.relu(-z * logits), atol=1e-3 * float(logits.abs().max()), rtol=1e-3
        )
    soft = softmax_contrastive_loss(x, y, logit_scale=t)
    grads = torch.autograd.grad(soft, (x, y, t))
    assert torch.isfinite(soft)
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_initial_siglip_loss_value():
    # With t = 10, b = -10 and orthogonal embeddings every logit is -10.
    x = torch.eye(4)
    loss = sigmoid_contrastive_loss(x, x.clone(), logit_scale=10.0, logit_bias=-10.0)
    expected = (
        -math.log(1 / (1 + math.exp(0.0))) * 4 + -math.log(1 / (1 + math.exp(-10.0))) * 12
    ) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_shape_errors_name_the_parameter():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="text_emb"):
        sigmoid_pair_losses(x, torch.randn(4, 7), logit_scale=1.0, logit_bias=0.0)
    with pytest.raises(ValueError, match="text_emb"):
        sigmoid_contrastive_loss(x, torch.randn(5, 8), logit_scale=1.0, logit_bias=0.0)
    with pytest.raises(ValueError, match="image_emb"):
        sigmoid_contrastive_loss(torch.randn(4), x, logit_scale=1.0, logit_bias=0.0)
    with pytest.raises(ValueError, match="labels"):
        sigmoid_pair_losses(
            x, torch.randn(6, 8), logit_scale=1.0, logit_bias=0.0, labels=torch.ones(4, 5)
        )
    with pytest.raises(ValueError, match="logit_scale"):
        sigmoid_contrastive_loss(x, x, logit_scale=torch.ones(2), logit_bias=0.0)
    with pytest.raises(ValueError, match="logit_bias"):
        sigmoid_contrastive_loss(x, x, logit_scale=1.0, logit_bias=torch.ones(3))
    with pytest.raises(ValueError, match="text_emb"):
        softmax_contrastive_loss(x, torch.randn(3, 8), logit_scale=1.0)
