"""Two-tower model: outputs, initialisation, determinism, a few training steps."""

from __future__ import annotations

import math

import torch

from curatorch.losses import sigmoid_contrastive_loss
from curatorch.models import TwoTower, build_model


def _batch(cfg, n=8):
    images = torch.randn(n, 3, cfg.image.image_size, cfg.image.image_size)
    tokens = torch.randint(1, cfg.text.vocab_size, (n, cfg.text.context_length))
    tokens[:, -3:] = 0
    return images, tokens


def test_forward_outputs_and_unit_norm(tiny_cfg):
    model = build_model(tiny_cfg)
    assert isinstance(model, TwoTower)
    images, tokens = _batch(tiny_cfg)
    for p in (None, *tiny_cfg.image.patch_sizes):
        out = model(images, tokens, p)
        assert set(out) == {"image_emb", "text_emb", "logit_scale", "logit_bias"}
        assert out["image_emb"].shape == out["text_emb"].shape == (8, tiny_cfg.embed_dim)
        torch.testing.assert_close(out["image_emb"].norm(dim=-1), torch.ones(8))
        torch.testing.assert_close(out["text_emb"].norm(dim=-1), torch.ones(8))
    torch.testing.assert_close(model.encode_image(images, 8), model(images, tokens, 8)["image_emb"])
    torch.testing.assert_close(model.encode_text(tokens), out["text_emb"])


def test_siglip_initialisation(tiny_cfg):
    model = build_model(tiny_cfg)
    assert model.logit_scale_log.item() == torch.tensor(math.log(10.0)).item()
    assert abs(model.logit_scale.item() - 10.0) < 1e-5
    assert model.logit_bias.item() == -10.0


def test_same_seed_same_init(tiny_cfg):
    torch.manual_seed(123)
    a = build_model(tiny_cfg)
    torch.manual_seed(123)
    b = build_model(tiny_cfg)
    torch.manual_seed(124)
    c = build_model(tiny_cfg)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_training_at_mixed_patch_sizes_reduces_loss(tiny_cfg):
    model = build_model(tiny_cfg)
    images, tokens = _batch(tiny_cfg, 16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_at(p):
        out = model(images, tokens, p)
        return sigmoid_contrastive_loss(
            out["image_emb"],
            out["text_emb"],
            logit_scale=out["logit_scale"],
            logit_bias=out["logit_bias"],
        )

    with torch.no_grad():
        start = loss_at(4).item()
    for step in range(16):
        opt.zero_grad()
        loss = loss_at(tiny_cfg.image.patch_sizes[step % 2])
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert loss_at(4).item() < 0.5 * start
