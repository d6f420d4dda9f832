"""Two-tower image-text models: FlexiViT image tower, transformer text tower, registry."""

from curatorch.models.config import (
    ImageTowerConfig,
    ModelSize,
    TextTowerConfig,
    TwoTowerConfig,
)
from curatorch.models.flexivit import (
    FlexiViT,
    bilinear_resize_matrix,
    pi_resize_kernel,
    pi_resize_matrix,
    resize_pos_embed,
)
from curatorch.models.flops import (
    image_forward_flops,
    pi_resize_flops,
    text_forward_flops,
    transformer_forward_flops,
    two_tower_forward_flops,
)
from curatorch.models.layers import (
    ATTENTION_IMPLEMENTATIONS,
    MultiheadSelfAttention,
    Transformer,
    TransformerBlock,
)
from curatorch.models.multimodal import (
    ENCODER_KINDS,
    MultimodalClassifier,
    MultimodalClassifierConfig,
)
from curatorch.models.param_groups import no_weight_decay_names, weight_decay_groups
from curatorch.models.registry import (
    MODEL_SIZES,
    build_model,
    get_model_config,
    register_model_size,
)
from curatorch.models.text import TextTransformer
from curatorch.models.two_tower import TwoTower

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "ENCODER_KINDS",
    "MODEL_SIZES",
    "FlexiViT",
    "ImageTowerConfig",
    "ModelSize",
    "MultiheadSelfAttention",
    "MultimodalClassifier",
    "MultimodalClassifierConfig",
    "TextTowerConfig",
    "TextTransformer",
    "Transformer",
    "TransformerBlock",
    "TwoTower",
    "TwoTowerConfig",
    "bilinear_resize_matrix",
    "build_model",
    "get_model_config",
    "image_forward_flops",
    "no_weight_decay_names",
    "pi_resize_flops",
    "pi_resize_kernel",
    "pi_resize_matrix",
    "register_model_size",
    "resize_pos_embed",
    "text_forward_flops",
    "transformer_forward_flops",
    "two_tower_forward_flops",
    "weight_decay_groups",
]
