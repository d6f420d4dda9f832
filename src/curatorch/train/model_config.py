"""Resolve the ``[model]`` section against the data into a full model config."""

from __future__ import annotations

from curatorch.data import World
from curatorch.models import TwoTowerConfig, get_model_config
from curatorch.train.config import ExperimentConfig

__all__ = ["model_config_for"]


def model_config_for(cfg: ExperimentConfig, world: World) -> TwoTowerConfig:
    """The registry's config for ``cfg.model.size``, sized to the world's images and
    tokenizer, with the section's patch sizes and attention implementation."""
    return get_model_config(
        cfg.model.size,
        image_size=cfg.data.image_size,
        patch_sizes=cfg.model.patch_sizes or None,
        vocab_size=world.tokenizer.vocab_size,
        context_length=world.tokenizer.context_length,
        attention=cfg.model.attention,
    )
