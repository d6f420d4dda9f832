"""A multi-task classifier: one shared encoder, one linear head per task.

For the gradient integrators (:mod:`curatorch.pareto`, :func:`build_group_integrator`) the
shared encoder is the one parameter group every task's loss reaches
(:meth:`MultiTaskClassifier.shared_parameters`); each head is reached by its own task's
loss only (:meth:`~MultiTaskClassifier.head_parameters`, an integrator's ``heads``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from curatorch.models.multimodal import ENCODER_KINDS, build_encoder

__all__ = ["MultiTaskClassifier", "MultiTaskClassifierConfig"]


@dataclass(frozen=True)
class MultiTaskClassifierConfig:
    """Architecture of a :class:`MultiTaskClassifier`.

    Attributes:
        tasks: task names, in order (unique).
        num_classes: classes per task, in the order of ``tasks`` (each >= 2).
        input_shape: one example's shape, e.g. ``(1, 8, 8)``; ``conv`` needs ``(C, H, W)``.
        encoder: ``"mlp"`` (flatten, two ReLU layers) or ``"conv"`` (two 3x3 convolutions,
            average pooling, a ReLU projection): the multimodal classifier's encoders.
        hidden: hidden width (MLP units, or conv channels of the second layer).
        embed_dim: size of the shared features ``[B, embed_dim]`` every head reads.
    """

    tasks: tuple[str, ...]
    num_classes: tuple[int, ...]
    input_shape: tuple[int, ...] = (1, 8, 8)
    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64

    def __post_init__(self) -> None:
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be non-empty and unique, got {list(self.tasks)}")
        if len(self.num_classes) != len(self.tasks):
            raise ValueError(
                f"num_classes must have one entry per task ({len(self.tasks)}), "
                f"got {list(self.num_classes)}"
            )
        for task, k in zip(self.tasks, self.num_classes, strict=True):
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"num_classes for task {task!r} must be an int >= 2, got {k!r}")
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"encoder must be one of {list(ENCODER_KINDS)}, got {self.encoder!r}")
        if not self.input_shape or any(s < 1 for s in self.input_shape):
            raise ValueError(f"input_shape must be positive, got {self.input_shape}")
        if self.encoder == "conv" and len(self.input_shape) != 3:
            raise ValueError(
                f"encoder 'conv' needs a (C, H, W) input_shape, got {self.input_shape}"
            )
        for key in ("hidden", "embed_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")


class MultiTaskClassifier(nn.Module):
    """Shared encoder -> one linear head per task.

    ``forward(x)`` with ``x`` ``[B, *input_shape]`` returns ``{task: logits [B, K_task]}``
    in the order of ``cfg.tasks``.
    """

    def __init__(self, cfg: MultiTaskClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.encoder, cfg.input_shape, cfg.hidden, cfg.embed_dim)
        pairs = zip(cfg.tasks, cfg.num_classes, strict=True)
        self.heads = nn.ModuleDict({t: nn.Linear(cfg.embed_dim, k) for t, k in pairs})

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        if tuple(x.shape[1:]) != self.cfg.input_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.cfg.input_shape))}], "
                f"got {tuple(x.shape)}"
            )
        features = self.encoder(x)  # [B, embed_dim]
        return {t: self.heads[t](features) for t in self.cfg.tasks}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The shared encoder's parameters (every task's loss reaches them)."""
        return list(self.encoder.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """Every head's parameters, in task order (each reached by its task only)."""
        return [p for t in self.cfg.tasks for p in self.heads[t].parameters()]
