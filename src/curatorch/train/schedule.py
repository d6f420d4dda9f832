"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio * lr``."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(
    step: int, *, base_lr: float, total_steps: int, warmup_steps: int, min_lr_ratio: float = 0.0
) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup rises linearly from ``base_lr / warmup_steps`` to ``base_lr`` over
    ``warmup_steps`` steps; the rest follows a half cosine down to ``min_lr_ratio * base_lr``
    at the last step.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps - 1, 1)
    progress = min((step - warmup_steps) / decay_steps, 1.0)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (min_lr_ratio + (1.0 - min_lr_ratio) * cosine)
