"""Multimodal classifiers with one unimodal head per modality (the MMPareto paper's setting).

Two fusion kinds (:data:`FUSION_KINDS`):

* ``"late"``: one small encoder per modality (``"mlp"`` or ``"conv"``), the features
  concatenated into a linear fusion head, and one linear unimodal head per modality.
* ``"early"``: one tokenizer per modality (non-overlapping patches or chunks, linearly
  projected, plus a learned position and modality-type embedding) and a shared pre-LN
  transformer trunk with a CLS token. The fused prediction runs the trunk over
  ``[CLS] + every modality's tokens``; the unimodal prediction for modality ``k`` runs the
  *same* trunk over ``[CLS] + k's tokens`` only, so a unimodal loss reaches its own
  tokenizer and the trunk but no other tokenizer.

For the gradient integrators (:mod:`curatorch.pareto`) the encoders are
:meth:`MultimodalClassifier.encoder_parameters` (the tokenizers with early fusion); the
rest, :meth:`~MultimodalClassifier.shared_parameters` (the trunk; empty for late fusion)
and :meth:`~MultimodalClassifier.head_parameters`, is what an integrator calls ``heads``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from curatorch.models.flops import transformer_forward_flops
from curatorch.models.layers import TransformerBlock

__all__ = [
    "ENCODER_KINDS",
    "FUSION_KINDS",
    "FusionTrunk",
    "MultimodalClassifier",
    "MultimodalClassifierConfig",
    "PatchTokenizer",
    "build_encoder",
    "multimodal_forward_flops",
    "token_layout",
]

ENCODER_KINDS = ("mlp", "conv")
FUSION_KINDS = ("late", "early")


def token_layout(modality: str, shape: Sequence[int], patch: int) -> tuple[int, int]:
    """``(tokens, token_dim)`` of one example of ``modality`` cut into patches.

    ``(C, H, W)`` is cut into ``(H / patch) * (W / patch)`` patches of ``C * patch**2``
    values; ``(C, L)`` into ``L / patch`` chunks of ``C * patch`` values.
    """
    shape = tuple(shape)
    if len(shape) == 3 and shape[1] % patch == 0 and shape[2] % patch == 0:
        c, h, w = shape
        return (h // patch) * (w // patch), c * patch * patch
    if len(shape) == 2 and shape[1] % patch == 0:
        c, length = shape
        return length // patch, c * patch
    raise ValueError(
        f"early fusion needs input shape (C, H, W) with H, W divisible by patch={patch} or "
        f"(C, L) with L divisible by it; got {shape} for modality {modality!r}"
    )


@dataclass(frozen=True)
class MultimodalClassifierConfig:
    """Architecture of a :class:`MultimodalClassifier`.

    Attributes:
        modalities: modality names, in order (the fusion head concatenates, and the
            early-fusion trunk reads tokens, in this order).
        input_shapes: one example's shape per modality, e.g. ``(1, 8, 8)``; ``conv``
            encoders need ``(C, H, W)``; early fusion needs ``(C, H, W)`` or ``(C, L)``
            with the spatial sizes divisible by ``patch``.
        num_classes: number of classes.
        encoder: late fusion only: ``"mlp"`` (flatten, two ReLU layers) or ``"conv"`` (two
            3x3 convolutions, average pooling, a ReLU projection). Early fusion rejects
            anything but the default.
        hidden: hidden width (late: MLP units or conv channels of the second layer;
            early: the width of each transformer block's MLP).
        embed_dim: feature size each encoder outputs (early: the token width ``D``).
        fusion: ``"late"`` or ``"early"`` (:data:`FUSION_KINDS`).
        patch: early fusion: patch side (images) or chunk length (sequences).
        depth: early fusion: number of transformer blocks in the shared trunk.
        num_heads: early fusion: attention heads; must divide ``embed_dim``.
    """

    modalities: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    num_classes: int
    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64
    fusion: str = "late"
    patch: int = 2
    depth: int = 2
    num_heads: int = 4

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
        self._check_fusion()
        for name, shape in zip(self.modalities, self.input_shapes, strict=True):
            if not shape or any(s < 1 for s in shape):
                raise ValueError(f"input_shapes for {name!r} must be positive, got {shape}")
            if self.encoder == "conv" and len(shape) != 3:
                raise ValueError(
                    f"encoder 'conv' needs (C, H, W) input shapes, got {shape} for {name!r}"
                )
            if self.fusion == "early":
                token_layout(name, shape, self.patch)
        for key in ("num_classes", "hidden", "embed_dim"):
            value = getattr(self, key)
            if value < (2 if key == "num_classes" else 1):
                raise ValueError(f"{key} must be positive (num_classes >= 2), got {value}")
        if self.fusion == "early" and self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"num_heads must divide embed_dim={self.embed_dim}, got {self.num_heads}"
            )

    def _check_fusion(self) -> None:
        if self.fusion not in FUSION_KINDS:
            raise ValueError(f"fusion must be one of {list(FUSION_KINDS)}, got {self.fusion!r}")
        for key in ("patch", "depth", "num_heads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        if self.fusion == "early" and self.encoder != "mlp":
            raise ValueError(
                f"encoder applies only to fusion='late' (early fusion tokenizes every "
                f"modality), got encoder={self.encoder!r} with fusion='early'"
            )

    def token_counts(self) -> dict[str, int]:
        """Early fusion: modality -> number of tokens ``T_m`` of one example."""
        return {
            m: token_layout(m, shape, self.patch)[0]
            for m, shape in zip(self.modalities, self.input_shapes, strict=True)
        }


def build_encoder(kind: str, shape: tuple[int, ...], hidden: int, embed: int) -> nn.Module:
    """A late-fusion encoder: ``"mlp"`` (flatten, two ReLU layers) or ``"conv"`` (two 3x3
    convolutions, average pooling, a ReLU projection), ``[B, *shape]`` -> ``[B, embed]``."""
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


class PatchTokenizer(nn.Module):
    """One modality's tokens: ``[B, *shape] -> [B, T, D]``.

    Non-overlapping ``patch x patch`` patches of ``(C, H, W)`` (row-major over the grid,
    each flattened as ``(C, patch, patch)``) or chunks of length ``patch`` of ``(C, L)``
    (each flattened as ``(C, patch)``), a linear projection to ``D = embed_dim``, plus a
    learned position embedding ``[T, D]`` and a learned modality-type embedding ``[D]``.
    """

    no_weight_decay_params = ("pos_embed", "type_embed")

    def __init__(self, modality: str, shape: Sequence[int], patch: int, embed_dim: int) -> None:
        super().__init__()
        self.modality = modality
        self.shape = tuple(shape)
        self.patch = patch
        tokens, token_dim = token_layout(modality, self.shape, patch)
        self.proj = nn.Linear(token_dim, embed_dim)
        self.pos_embed = nn.Parameter(torch.empty(tokens, embed_dim))
        self.type_embed = nn.Parameter(torch.empty(embed_dim))
        nn.init.normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.type_embed, std=0.02)

    def patchify(self, x: Tensor) -> Tensor:
        """``[B, *shape] -> [B, T, token_dim]`` (no parameters involved)."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"inputs[{self.modality!r}] must have shape [B, {', '.join(map(str, self.shape))}]"
                f", got {tuple(x.shape)}"
            )
        b, p = x.shape[0], self.patch
        if len(self.shape) == 3:
            c, h, w = self.shape
            x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
            return x.reshape(b, (h // p) * (w // p), c * p * p)
        c, length = self.shape
        x = x.reshape(b, c, length // p, p).permute(0, 2, 1, 3)
        return x.reshape(b, length // p, c * p)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.patchify(x)) + self.pos_embed + self.type_embed  # [B, T, D]


class FusionTrunk(nn.Module):
    """Shared transformer over token sequences: ``[CLS] + tokens -> final CLS [B, D]``.

    ``depth`` pre-LN :class:`~curatorch.models.layers.TransformerBlock` s (``num_heads``
    heads, MLP width ``hidden``, no dropout) and a final LayerNorm, applied to the CLS
    position (the only one read).
    """

    no_weight_decay_params = ("cls",)

    def __init__(self, width: int, depth: int, num_heads: int, hidden: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.empty(1, 1, width))
        nn.init.normal_(self.cls, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(width, num_heads, mlp_ratio=hidden / width) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, tokens: Sequence[Tensor]) -> Tensor:
        """``tokens``: ``[B, T_i, D]`` each, concatenated in order after the CLS token."""
        b = tokens[0].shape[0]
        x = torch.cat([self.cls.expand(b, -1, -1), *tokens], dim=1)  # [B, 1 + sum T_i, D]
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, 0])  # [B, D]


class MultimodalClassifier(nn.Module):
    """Encoders -> fusion head, plus one head per modality; late or early fusion.

    ``forward({"gray": [B, 1, 8, 8], "colour": [B, 3, 8, 8]})`` returns ``{"logits":
    [B, K], "unimodal_logits": {modality: [B, K]}, "features": {modality: ...}}`` with
    features ``[B, D]`` (late fusion: encoder outputs) or ``[B, T_m, D]`` (early fusion:
    tokenizer outputs).
    """

    def __init__(self, cfg: MultimodalClassifierConfig) -> None:
        super().__init__()
        self.cfg = cfg
        mods = cfg.modalities
        if cfg.fusion == "early":
            self.encoders = nn.ModuleDict(
                {
                    m: PatchTokenizer(m, shape, cfg.patch, cfg.embed_dim)
                    for m, shape in zip(mods, cfg.input_shapes, strict=True)
                }
            )
            self.trunk: FusionTrunk | None = FusionTrunk(
                cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.hidden
            )
            fused_dim = cfg.embed_dim
        else:  # late: this creation order and these modules only (pinned records rely on it)
            self.encoders = nn.ModuleDict(
                {
                    m: build_encoder(cfg.encoder, shape, cfg.hidden, cfg.embed_dim)
                    for m, shape in zip(mods, cfg.input_shapes, strict=True)
                }
            )
            self.trunk = None
            fused_dim = cfg.embed_dim * len(mods)
        self.fusion_head = nn.Linear(fused_dim, cfg.num_classes)
        self.unimodal_heads = nn.ModuleDict(
            {m: nn.Linear(cfg.embed_dim, cfg.num_classes) for m in mods}
        )

    def encode(self, inputs: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Modality -> its encoder's features ``[B, D]`` (early fusion: tokens ``[B, T_m, D]``)."""
        missing = [m for m in self.cfg.modalities if m not in inputs]
        if missing:
            raise ValueError(f"inputs lacks modalities {missing} (has {sorted(inputs)})")
        return {m: self.encoders[m](inputs[m]) for m in self.cfg.modalities}

    def forward_from_features(
        self,
        features: Mapping[str, Tensor],
        unimodal_features: Mapping[str, Tensor] | None = None,
    ) -> dict[str, object]:
        """The fusion and unimodal predictions from encoder features: the fused path
        (late: fusion head; early: trunk over all tokens, then fusion head) reads
        ``features``, each unimodal path reads ``unimodal_features`` (default:
        ``features``), e.g. the two leaves of :func:`curatorch.pareto.split_features`.
        Same output as :meth:`forward`.
        """
        uni = features if unimodal_features is None else unimodal_features
        for name, feats in (("features", features), ("unimodal_features", uni)):
            missing = [m for m in self.cfg.modalities if m not in feats]
            if missing:
                raise ValueError(f"{name} lacks modalities {missing} (has {sorted(feats)})")
        if self.trunk is not None:
            return self._early_from_features(self.trunk, features, uni)
        fused = torch.cat([features[m] for m in self.cfg.modalities], dim=1)  # [B, M*D]
        return {
            "logits": self.fusion_head(fused),
            "unimodal_logits": {m: self.unimodal_heads[m](uni[m]) for m in self.cfg.modalities},
            "features": dict(features),
        }

    def _early_from_features(
        self, trunk: FusionTrunk, features: Mapping[str, Tensor], uni: Mapping[str, Tensor]
    ) -> dict[str, object]:
        counts, d = self.cfg.token_counts(), self.cfg.embed_dim
        for name, feats in (("features", features), ("unimodal_features", uni)):
            for m in self.cfg.modalities:
                shape = tuple(feats[m].shape)
                if len(shape) != 3 or shape[1:] != (counts[m], d):
                    raise ValueError(
                        f"{name}[{m!r}] must be tokens [B, {counts[m]}, {d}], got {shape}"
                    )
        mods = self.cfg.modalities
        fused = trunk([features[m] for m in mods])  # [B, D]
        return {
            "logits": self.fusion_head(fused),
            "unimodal_logits": {m: self.unimodal_heads[m](trunk([uni[m]])) for m in mods},
            "features": dict(features),
        }

    def forward(self, inputs: Mapping[str, Tensor]) -> dict[str, object]:
        return self.forward_from_features(self.encode(inputs))

    def encoder_parameters(self) -> dict[str, list[nn.Parameter]]:
        """Modality -> its encoder's (early fusion: tokenizer's) parameters, the groups a
        gradient integrator takes."""
        return {m: list(self.encoders[m].parameters()) for m in self.cfg.modalities}

    def shared_parameters(self) -> list[nn.Parameter]:
        """The early-fusion trunk's parameters (CLS, blocks, final LayerNorm), which every
        loss reaches; empty for late fusion."""
        return [] if self.trunk is None else list(self.trunk.parameters())

    def head_parameters(self) -> list[nn.Parameter]:
        """The fusion head's and the unimodal heads' parameters."""
        return [*self.fusion_head.parameters(), *self.unimodal_heads.parameters()]


def _late_encoder_flops(kind: str, shape: tuple[int, ...], hidden: int, embed: int) -> int:
    if kind == "mlp":
        return 2 * (math.prod(shape) * hidden + hidden * embed)
    c, h, w = shape
    mid = max(hidden // 2, 1)
    ho, wo = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # 3x3, stride 2, padding 1
    return 2 * 9 * (h * w * c * mid + ho * wo * mid * hidden) + 2 * hidden * embed


def multimodal_forward_flops(cfg: MultimodalClassifierConfig) -> int:
    """Forward FLOPs of :class:`MultimodalClassifier` for one example: the encoders, the
    fused prediction and every unimodal prediction (early fusion: ``1 + M`` trunk passes,
    over ``1 + sum_m T_m`` and ``1 + T_m`` tokens). Same convention as
    :mod:`curatorch.models.flops` (matmuls and convolutions, 2 FLOPs per multiply-add).
    """
    if not isinstance(cfg, MultimodalClassifierConfig):
        raise ValueError(f"cfg must be a MultimodalClassifierConfig, got {cfg!r}")
    d, k, n_mod = cfg.embed_dim, cfg.num_classes, len(cfg.modalities)
    shapes = dict(zip(cfg.modalities, cfg.input_shapes, strict=True))
    if cfg.fusion == "late":
        enc = sum(_late_encoder_flops(cfg.encoder, s, cfg.hidden, d) for s in shapes.values())
        return enc + 2 * n_mod * d * k + n_mod * 2 * d * k
    layouts = {m: token_layout(m, s, cfg.patch) for m, s in shapes.items()}
    tokenizers = sum(2 * t * dim * d for t, dim in layouts.values())
    ratio = cfg.hidden / d

    def trunk(tokens: int) -> int:
        return transformer_forward_flops(1 + tokens, d, cfg.depth, ratio)

    total_tokens = sum(t for t, _ in layouts.values())
    trunks = trunk(total_tokens) + sum(trunk(t) for t, _ in layouts.values())
    return tokenizers + trunks + (1 + n_mod) * 2 * d * k
