"""Analytic FLOPs against torch.utils.flop_counter.FlopCounterMode (attention="math")."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from curatorch.models import (
    build_model,
    get_model_config,
    image_forward_flops,
    pi_resize_flops,
    text_forward_flops,
    two_tower_forward_flops,
)

BATCH = 4


def _measure(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize(
    ("size", "image_size"), [("tiny", 16), ("tiny", 32), ("small", 16), ("small", 32)]
)
def test_analytic_flops_match_flop_counter(size, image_size):
    cfg = get_model_config(
        size, image_size=image_size, vocab_size=64, context_length=12, attention="math"
    )
    model = build_model(cfg).eval()
    images = torch.randn(BATCH, 3, image_size, image_size)
    tokens = torch.randint(1, 64, (BATCH, cfg.text.context_length))  # full length
    text_measured = _measure(lambda: model.text(tokens))
    text_expected = BATCH * text_forward_flops(cfg)
    assert text_measured == pytest.approx(text_expected, rel=0.05)
    assert text_measured == text_expected  # the count is exact, not just within 5%
    for p in cfg.image.patch_sizes:
        # The PI-resize of the kernel is one matmul per forward call, not per example.
        image_measured = _measure(lambda p=p: model.image(images, p))
        image_expected = BATCH * image_forward_flops(cfg, p) + pi_resize_flops(cfg, p)
        assert image_measured == pytest.approx(image_expected, rel=0.05)
        assert image_measured == image_expected
        total = _measure(lambda p=p: model(images, tokens, p))
        assert total == BATCH * two_tower_forward_flops(cfg, p) + pi_resize_flops(cfg, p)


def test_pi_resize_flops_zero_at_base():
    cfg = get_model_config("tiny", image_size=16, vocab_size=8, context_length=4)
    assert pi_resize_flops(cfg, 4) == 0
    assert pi_resize_flops(cfg, 8) == 2 * 64 * 3 * 16 * 64
    with pytest.raises(ValueError, match="patch_size"):
        image_forward_flops(cfg, 2)
