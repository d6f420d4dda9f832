"""Zero-shot classification with a prompt ensemble."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["class_prompts", "zero_shot_accuracy"]


def class_prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """All prompts, class-major: ``[t.format(c) for c in class_names for t in templates]``."""
    if not class_names:
        raise ValueError("class_names must not be empty")
    if not templates or any("{}" not in t for t in templates):
        raise ValueError(
            f"templates must be non-empty and each contain '{{}}', got {list(templates)}"
        )
    return [t.format(c) for c in class_names for t in templates]


def zero_shot_accuracy(
    image_emb: torch.Tensor, prompt_emb: torch.Tensor, labels: torch.Tensor, *, num_templates: int
) -> float:
    """Top-1 accuracy of nearest-class-embedding classification.

    Args:
        image_emb: ``[n, D]`` L2-normalised image embeddings.
        prompt_emb: ``[C * num_templates, D]`` L2-normalised prompt embeddings, class-major
            (as :func:`class_prompts` orders them). Each class's embedding is the normalised
            mean of its templates' embeddings (the prompt ensemble).
        labels: ``[n]`` int64 class indices.
    """
    if prompt_emb.shape[0] % num_templates:
        raise ValueError(
            f"prompt_emb has {prompt_emb.shape[0]} rows, "
            f"not a multiple of num_templates={num_templates}"
        )
    if image_emb.shape[0] != labels.shape[0]:
        raise ValueError(
            f"image_emb has {image_emb.shape[0]} rows but labels has {labels.shape[0]}"
        )
    classes = prompt_emb.reshape(-1, num_templates, prompt_emb.shape[-1]).mean(dim=1)
    classes = torch.nn.functional.normalize(classes, dim=-1)  # [C, D]
    pred = (image_emb @ classes.T).argmax(dim=1)
    return float((pred == labels).float().mean())
