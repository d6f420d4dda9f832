"""Two-tower image-text models: FlexiViT image tower, transformer text tower, registry,
and the model protocol with its adapters (curatorch's TwoTower, HF SigLIP and CLIP)."""

from curatorch.models.adapters import (
    ADAPTER_FILE,
    CLIP_INIT_LOGIT_BIAS,
    MODEL_SOURCES,
    HFCLIPAdapter,
    HFSiglipAdapter,
    ImagePreprocessing,
    ImageTextModel,
    TwoTowerAdapter,
    check_image_size,
    check_tokenizer_vocab,
    fit_logit_bias,
    hf_adapter_from_config,
    load_model_adapter,
    module_fingerprint,
)
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
    FUSION_KINDS,
    FusionTrunk,
    MultimodalClassifier,
    MultimodalClassifierConfig,
    PatchTokenizer,
    multimodal_forward_flops,
    token_layout,
)
from curatorch.models.multitask import MultiTaskClassifier, MultiTaskClassifierConfig
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
    "ADAPTER_FILE",
    "ATTENTION_IMPLEMENTATIONS",
    "CLIP_INIT_LOGIT_BIAS",
    "ENCODER_KINDS",
    "FUSION_KINDS",
    "MODEL_SIZES",
    "MODEL_SOURCES",
    "FlexiViT",
    "FusionTrunk",
    "HFCLIPAdapter",
    "HFSiglipAdapter",
    "ImagePreprocessing",
    "ImageTextModel",
    "ImageTowerConfig",
    "ModelSize",
    "MultiTaskClassifier",
    "MultiTaskClassifierConfig",
    "MultiheadSelfAttention",
    "MultimodalClassifier",
    "MultimodalClassifierConfig",
    "PatchTokenizer",
    "TextTowerConfig",
    "TextTransformer",
    "Transformer",
    "TransformerBlock",
    "TwoTower",
    "TwoTowerAdapter",
    "TwoTowerConfig",
    "bilinear_resize_matrix",
    "build_model",
    "check_image_size",
    "check_tokenizer_vocab",
    "fit_logit_bias",
    "get_model_config",
    "hf_adapter_from_config",
    "image_forward_flops",
    "load_model_adapter",
    "module_fingerprint",
    "multimodal_forward_flops",
    "no_weight_decay_names",
    "pi_resize_flops",
    "pi_resize_kernel",
    "pi_resize_matrix",
    "register_model_size",
    "resize_pos_embed",
    "text_forward_flops",
    "token_layout",
    "transformer_forward_flops",
    "two_tower_forward_flops",
    "weight_decay_groups",
]
