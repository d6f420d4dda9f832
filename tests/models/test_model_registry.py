"""Registry of named sizes, config validation, and the sizes table in docs/models.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from curatorch.models import (
    MODEL_SIZES,
    ImageTowerConfig,
    ModelSize,
    TextTowerConfig,
    TwoTowerConfig,
    build_model,
    get_model_config,
    image_forward_flops,
    register_model_size,
    text_forward_flops,
    two_tower_forward_flops,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _table(marker: str) -> list[list[str]]:
    text = DOCS.read_text()
    body = text.split(f"<!-- {marker}:begin -->")[1].split(f"<!-- {marker}:end -->")[0]
    rows = [
        line.strip().strip("|").split("|") for line in body.splitlines() if line.startswith("|")
    ]
    return [[c.strip() for c in r] for r in rows[2:]]  # skip header and separator


def _int(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_registered_sizes():
    assert {"tiny", "small", "base"} <= set(MODEL_SIZES)
    assert all(isinstance(s, ModelSize) for s in MODEL_SIZES.values())


@pytest.mark.parametrize(("image_size", "patches"), [(16, (4, 8)), (32, (8, 16))])
def test_default_patch_sizes(image_size, patches):
    cfg = get_model_config("tiny", image_size=image_size, vocab_size=10, context_length=8)
    assert isinstance(cfg, TwoTowerConfig)
    assert cfg.image.patch_sizes == patches
    assert cfg.image.base_patch == patches[0]
    assert cfg.text.vocab_size == 10 and cfg.text.context_length == 8
    assert cfg.image.attention == cfg.text.attention == "sdpa"


def test_explicit_patch_sizes_and_attention():
    cfg = get_model_config(
        "small",
        image_size=32,
        patch_sizes=[4, 8, 16],
        vocab_size=10,
        context_length=8,
        attention="math",
    )
    assert cfg.image.patch_sizes == (4, 8, 16)
    assert cfg.image.attention == cfg.text.attention == "math"
    assert cfg.with_attention("sdpa").image.attention == "sdpa"


def test_unknown_size_lists_available():
    with pytest.raises(ValueError, match=r"`name`.*tiny.*'huge'"):
        get_model_config("huge", image_size=16, vocab_size=10, context_length=8)


def test_bad_data_fields_name_the_parameter():
    with pytest.raises(ValueError, match="image_size"):
        get_model_config("tiny", image_size=18, vocab_size=10, context_length=8)
    with pytest.raises(ValueError, match="patch_sizes"):
        get_model_config("tiny", image_size=16, patch_sizes=(5,), vocab_size=10, context_length=8)
    with pytest.raises(ValueError, match="vocab_size"):
        get_model_config("tiny", image_size=16, vocab_size=0, context_length=8)
    with pytest.raises(ValueError, match="context_length"):
        get_model_config("tiny", image_size=16, vocab_size=10, context_length=-1)
    with pytest.raises(ValueError, match="attention"):
        get_model_config("tiny", image_size=16, vocab_size=10, context_length=8, attention="fast")
    with pytest.raises(ValueError, match="heads"):
        ImageTowerConfig(image_size=16, patch_sizes=(4,), width=30, depth=1, heads=4)
    with pytest.raises(ValueError, match="depth"):
        TextTowerConfig(vocab_size=10, context_length=4, width=32, depth=0, heads=4)
    with pytest.raises(ValueError, match="text_heads"):
        ModelSize(
            image_width=64,
            image_depth=1,
            image_heads=2,
            text_width=64,
            text_depth=1,
            text_heads=3,
            embed_dim=8,
        )


def test_register_model_size():
    size = ModelSize(
        image_width=32,
        image_depth=1,
        image_heads=2,
        text_width=32,
        text_depth=1,
        text_heads=2,
        embed_dim=16,
    )
    register_model_size("_test_micro", size)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model_size("_test_micro", size)
        cfg = get_model_config("_test_micro", image_size=8, vocab_size=5, context_length=4)
        model = build_model(cfg)
        out = model(torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2, 4)), 4)
        assert out["image_emb"].shape == (2, 16)
        with pytest.raises(ValueError, match="size"):
            register_model_size("_test_bad", {"width": 3})
    finally:
        MODEL_SIZES.pop("_test_micro", None)


def test_docs_sizes_table_matches_models():
    rows = _table("sizes")
    assert [r[0] for r in rows] == ["tiny", "small", "base"]
    for name, *_, image_params, text_params, total in rows:
        cfg = get_model_config(name, image_size=16, vocab_size=256, context_length=16)
        with torch.device("meta"):  # no memory, no init cost for `base`
            model = build_model(cfg)
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        assert (_int(image_params), _int(text_params), _int(total)) == (
            count(model.image),
            count(model.text),
            count(model),
        )


def test_docs_flops_table_matches_formulas():
    rows = _table("flops")
    assert len(rows) == 12
    for name, image_size, patch, tokens, image, text, total in rows:
        cfg = get_model_config(name, image_size=int(image_size), vocab_size=256, context_length=16)
        p = int(patch)
        assert int(tokens) == cfg.image.grid(p) ** 2
        assert _int(image) == image_forward_flops(cfg, p)
        assert _int(text) == text_forward_flops(cfg)
        assert _int(total) == two_tower_forward_flops(cfg, p)
