"""Weight-decay groups come from what the models declare; they equal the rule the two
trainers used before (matrices decayed; vectors, scalars and positional embeddings not)."""

from __future__ import annotations

import pytest
from torch import nn

from curatorch.models import (
    MODEL_SIZES,
    MultimodalClassifier,
    MultimodalClassifierConfig,
    build_model,
    get_model_config,
    no_weight_decay_names,
    weight_decay_groups,
)


def _old_two_tower_rule(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.ndim < 2 or "pos" in n.split(".")[-1]}


@pytest.mark.parametrize("size", sorted(MODEL_SIZES))
def test_two_tower_groups_equal_the_old_rule(size: str) -> None:
    model = build_model(get_model_config(size, image_size=16, vocab_size=50, context_length=8))
    assert no_weight_decay_names(model) == _old_two_tower_rule(model)
    decay, no_decay = weight_decay_groups(model)
    assert len(decay) + len(no_decay) == len(list(model.parameters()))


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_multimodal_groups_equal_the_old_rule(encoder: str) -> None:
    cfg = MultimodalClassifierConfig(
        modalities=("a", "b"), input_shapes=((1, 8, 8), (3, 8, 8)), num_classes=10, encoder=encoder
    )
    model = MultimodalClassifier(cfg)
    want = {n for n, p in model.named_parameters() if p.ndim < 2}
    assert no_weight_decay_names(model) == want


def test_declared_name_that_is_not_a_parameter_is_an_error() -> None:
    class Bad(nn.Module):
        no_weight_decay_params = ("missing",)

    with pytest.raises(ValueError, match="missing"):
        no_weight_decay_names(Bad())
