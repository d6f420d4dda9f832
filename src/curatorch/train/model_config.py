"""Resolve the ``[model]`` section against the data into a full model config."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from curatorch.data import World, build_tokenizer
from curatorch.models import TwoTowerConfig, get_model_config
from curatorch.train.config import ExperimentConfig, ModelSection

__all__ = ["model_config_for", "train_patch_size"]


def model_config_for(cfg: ExperimentConfig, world: World | None) -> TwoTowerConfig:
    """The registry's config for ``cfg.model.size``, sized to the world's images and to
    the tokenizer ``data.tokenizer`` names (vocabulary, context length, pad id), with the
    section's patch sizes and attention implementation."""
    tokenizer = build_tokenizer(cfg.data, world)
    model = get_model_config(
        cfg.model.size,
        image_size=cfg.data.image_size,
        patch_sizes=cfg.model.patch_sizes or None,
        vocab_size=tokenizer.vocab_size,
        context_length=tokenizer.context_length,
        attention=cfg.model.attention,
    )
    pad_id = getattr(tokenizer, "pad_id", 0)
    if pad_id != model.text.pad_id:  # e.g. a Hugging Face tokenizer whose pad is not 0
        model = dataclasses.replace(model, text=dataclasses.replace(model.text, pad_id=pad_id))
    return model


def train_patch_size(section: ModelSection, model: TwoTowerConfig | Sequence[int]) -> int:
    """The patch size a model trains (and, by default, is evaluated and embedded) at:
    ``model.train_patch_size``, or the smallest of the model's patch sizes (``model``: a
    two-tower config, or the patch sizes of any model)."""
    patches = model.image.patch_sizes if isinstance(model, TwoTowerConfig) else model
    return section.train_patch_size or min(patches)
