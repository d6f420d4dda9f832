"""Late-fusion multimodal classifier: one small encoder per modality, a concatenation
fusion head and one linear unimodal head per modality (the MMPareto paper's setting).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["ENCODER_KINDS", "MultimodalClassifier", "MultimodalClassifierConfig"]

ENCODER_KINDS = ("mlp", "conv")


@dataclass(frozen=True)
class MultimodalClassifierConfig:
    """Architecture of a :class:`MultimodalClassifier`.

    Attributes:
        modalities: modality names, in order (the fusion head concatenates in this order).
        input_shapes: one example's shape per modality, e.g. ``(1, 8, 8)``; ``conv``
            encoders need ``(C, H, W)``.
        num_classes: number of classes.
        encoder: ``"mlp"`` (flatten, two ReLU layers) or ``"conv"`` (two 3x3 convolutions,
            average pooling, a ReLU projection).
        hidden: hidden width (MLP units or conv channels of the second layer).
        embed_dim: feature size each encoder outputs.
    """

    modalities: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    num_classes: int
    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64

    def __post_init__(self) -> None:
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities must be non-empty and unique, got {self.modalities}")
        if len(self.input_shapes) != len(self.modalities):
            raise ValueError(
                f"input_shapes must have one shape per modality ({len(self.modalities)}), "
                f"got {len(self.input_shapes)}"
            )
        if self.encoder not in ENCODER_KINDS:
            raise ValueError(f"encoder must be one of {list(ENCODER_KINDS)}, got {self.encoder!r}")
        for name, shape in zip(self.modalities, self.input_shapes, strict=True):
            if not shape or any(s < 1 for s in shape):
                raise ValueError(f"input_shapes for {name!r} must be positive, got {shape}")
            if self.encoder == "conv" and len(shape) != 3:
                raise ValueError(
                    f"encoder 'conv' needs (C, H, W) input shapes, got {shape} for {name!r}"
                )
        for key in ("num_classes", "hidden", "embed_dim"):
            value = getattr(self, key)
            if value < (2 if key == "num_classes" else 1):
                raise ValueError(f"{key} must be positive (num_classes >= 2), got {value}")


def _encoder(kind: str, shape: tuple[int, ...], hidden: int, embed: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(shape), hidden),
            nn.ReLU(),
            nn.Linear(hidden, embed),
            nn.ReLU(),
        )
    c = shape[0]
    mid = max(hidden // 2, 1)
    return nn.Sequential(
        nn.Conv2d(c, mid, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(mid, hidden, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(hidden, embed),
        nn.ReLU(),
    )


class MultimodalClassifier(nn.Module):
    """Encoders -> concatenated features -> fusion head; plus a linear head per modality.

    ``forward({"gray": [B, 1, 8, 8], "colour": [B, 3, 8, 8]})`` returns ``{"logits":
    [B, K], "unimodal_logits": {modality: [B, K]}, "features": {modality: [B, D]}}``.
    """

    def __init__(self, cfg: MultimodalClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoders = nn.ModuleDict(
            {
                m: _encoder(cfg.encoder, shape, cfg.hidden, cfg.embed_dim)
                for m, shape in zip(cfg.modalities, cfg.input_shapes, strict=True)
            }
        )
        self.fusion_head = nn.Linear(cfg.embed_dim * len(cfg.modalities), cfg.num_classes)
        self.unimodal_heads = nn.ModuleDict(
            {m: nn.Linear(cfg.embed_dim, cfg.num_classes) for m in cfg.modalities}
        )

    def encode(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Modality -> its encoder's features ``[B, D]``."""
        missing = [m for m in self.cfg.modalities if m not in inputs]
        if missing:
            raise ValueError(f"inputs lacks modalities {missing} (has {sorted(inputs)})")
        return {m: self.encoders[m](inputs[m]) for m in self.cfg.modalities}  # [B, D] each

    def forward_from_features(
        self,
        features: Mapping[str, Tensor],
        unimodal_features: Mapping[str, Tensor] | None = None,
    ) -> dict[str, object]:
        """The heads on encoder features: the fusion head reads ``features``, each
        unimodal head reads ``unimodal_features`` (default: ``features``), e.g. the two
        leaves of :func:`curatorch.pareto.split_features`. Same output as :meth:`forward`.
        """
        uni = features if unimodal_features is None else unimodal_features
        for name, feats in (("features", features), ("unimodal_features", uni)):
            missing = [m for m in self.cfg.modalities if m not in feats]
            if missing:
                raise ValueError(f"{name} lacks modalities {missing} (has {sorted(feats)})")
        fused = torch.cat([features[m] for m in self.cfg.modalities], dim=1)  # [B, M*D]
        return {
            "logits": self.fusion_head(fused),
            "unimodal_logits": {m: self.unimodal_heads[m](uni[m]) for m in self.cfg.modalities},
            "features": dict(features),
        }

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, object]:
        return self.forward_from_features(self.encode(inputs))

    def encoder_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Modality -> its encoder's parameters (the groups a gradient integrator takes)."""
        return {m: list(self.encoders[m].parameters()) for m in self.cfg.modalities}

    def head_parameters(self) -> list[nn.Parameter]:
        """The fusion head's and the unimodal heads' parameters."""
        return [*self.fusion_head.parameters(), *self.unimodal_heads.parameters()]
