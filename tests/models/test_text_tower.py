"""Text tower: padding invariance, all-pad rows, validation."""

from __future__ import annotations

import pytest
import torch

from curatorch.models import TextTowerConfig, TextTransformer


def _tower(attention: str = "sdpa") -> TextTransformer:
    cfg = TextTowerConfig(
        vocab_size=40, context_length=16, width=32, depth=2, heads=4, attention=attention
    )
    return TextTransformer(cfg, embed_dim=24).double()


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_appending_pads_does_not_change_embedding(attention):
    tower = _tower(attention)
    tokens = torch.randint(1, 40, (3, 6))
    tokens[1, 4:] = 0  # already padded row
    padded = torch.cat([tokens, torch.zeros(3, 10, dtype=torch.long)], dim=1)
    out = tower(tokens)
    assert out.shape == (3, 24)
    torch.testing.assert_close(tower(padded), out)
    torch.testing.assert_close(tower(padded[:, :9]), out)


@pytest.mark.parametrize("attention", ["sdpa", "math"])
def test_all_pad_row_is_finite_and_does_not_affect_others(attention):
    tower = _tower(attention)
    tokens = torch.randint(1, 40, (3, 8))
    tokens[1] = 0
    out = tower(tokens)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[[0, 2]], tower(tokens[[0, 2]]))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in tower.parameters() if p.grad is not None)


def test_token_validation_names_parameter():
    tower = _tower()
    with pytest.raises(ValueError, match="tokens"):
        tower(torch.ones(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens"):
        tower(torch.ones(2, 4))
    with pytest.raises(ValueError, match="tokens"):
        tower(torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="pad_id"):
        TextTowerConfig(vocab_size=40, context_length=16, width=32, depth=2, heads=4, pad_id=40)
