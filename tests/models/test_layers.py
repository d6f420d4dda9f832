"""The two attention implementations agree; padding masks behave."""

from __future__ import annotations

import pytest
import torch

from curatorch.models import (
    MultiheadSelfAttention,
    Transformer,
    build_model,
    get_model_config,
)


def _pair(cls, *args, **kw):
    a = cls(*args, attention="sdpa", **kw).double()
    b = cls(*args, attention="math", **kw).double()
    b.load_state_dict(a.state_dict())
    return a, b


def test_attention_sdpa_matches_math():
    a, b = _pair(MultiheadSelfAttention, 32, 4)
    x = torch.randn(3, 7, 32, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x))


def test_transformer_sdpa_matches_math_with_padding_mask():
    a, b = _pair(Transformer, 32, 2, 4)
    x = torch.randn(3, 6, 32, dtype=torch.float64)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0] * 6, [1] * 6], dtype=torch.bool)
    out_a, out_b = a(x, mask), b(x, mask)
    assert torch.isfinite(out_a).all()
    torch.testing.assert_close(out_a, out_b)
    # Masked keys are ignored: changing padded inputs leaves unpadded positions unchanged.
    x2 = x.clone()
    x2[0, 3:] = torch.randn(3, 32, dtype=torch.float64)
    torch.testing.assert_close(b(x2, mask)[0, :3], out_b[0, :3])


@pytest.mark.parametrize("patch_size", [4, 8])
def test_two_tower_sdpa_matches_math(patch_size):
    cfg = get_model_config("tiny", image_size=16, vocab_size=50, context_length=10)
    fast = build_model(cfg).double()
    slow = build_model(cfg.with_attention("math")).double()
    slow.load_state_dict(fast.state_dict())
    images = torch.randn(4, 3, 16, 16, dtype=torch.float64)
    tokens = torch.randint(1, 50, (4, 10))
    tokens[1, 6:] = 0
    tokens[2] = 0
    out_fast, out_slow = fast(images, tokens, patch_size), slow(images, tokens, patch_size)
    for key in ("image_emb", "text_emb"):
        torch.testing.assert_close(out_fast[key], out_slow[key])


def test_unknown_attention_names_parameter():
    with pytest.raises(ValueError, match="attention"):
        MultiheadSelfAttention(32, 4, attention="flash")
    with pytest.raises(ValueError, match="heads"):
        MultiheadSelfAttention(32, 5)
