"""Built-in image–text worlds, their noise, and the caption tokenizer.

``build_world(DataConfig(world="shapes"))`` returns a :class:`World` with a noisy raw
pool, a clean curated pool and clean eval sets; see ``docs/data.md``.
"""

from curatorch.data.config import NOISE_FIELDS, DataConfig
from curatorch.data.dataset import NOISE_KINDS, EvalSets, PairDataset, World, noise_code
from curatorch.data.embedding_cache import (
    EmbeddingCache,
    file_sha256,
    is_embedding_cache,
    load_embedding_cache,
    save_embedding_cache,
)
from curatorch.data.images import (
    float_images,
    pil_to_tensor,
    quantize_,
    tensor_to_pil,
    to_channels_last,
)
from curatorch.data.multimodal import (
    DIGIT_COLOURS,
    MultimodalDataset,
    MultimodalSplits,
    coloured_gray_digits,
    load_npz_dataset,
    save_npz_dataset,
)
from curatorch.data.noise import (
    BOILERPLATE_TEMPLATES,
    DEGRADE_STRENGTH,
    assign_noise,
    degrade_images,
    noise_counts,
)
from curatorch.data.registry import available_worlds, build_world, register_world
from curatorch.data.shard_cache import (
    ShardEmbeddingCache,
    is_shard_cache,
    save_shard_embeddings,
    write_shard_cache_meta,
)
from curatorch.data.shards import (
    FAULT_REASONS,
    DataFaultError,
    ShardBatch,
    ShardFault,
    ShardSample,
    ShardStream,
    expand_shards,
    export_shards,
    iter_shard,
    shard_name,
)
from curatorch.data.tokenizer import (
    PAD_ID,
    UNK_ID,
    HFTokenizer,
    WordTokenizer,
    load_tokenizer,
    split_words,
)

__all__ = [
    "BOILERPLATE_TEMPLATES",
    "DEGRADE_STRENGTH",
    "DIGIT_COLOURS",
    "FAULT_REASONS",
    "NOISE_FIELDS",
    "NOISE_KINDS",
    "PAD_ID",
    "UNK_ID",
    "DataConfig",
    "DataFaultError",
    "EmbeddingCache",
    "EvalSets",
    "HFTokenizer",
    "MultimodalDataset",
    "MultimodalSplits",
    "PairDataset",
    "ShardBatch",
    "ShardEmbeddingCache",
    "ShardFault",
    "ShardSample",
    "ShardStream",
    "WordTokenizer",
    "World",
    "assign_noise",
    "available_worlds",
    "build_world",
    "coloured_gray_digits",
    "degrade_images",
    "expand_shards",
    "export_shards",
    "file_sha256",
    "float_images",
    "is_embedding_cache",
    "is_shard_cache",
    "iter_shard",
    "load_embedding_cache",
    "load_npz_dataset",
    "load_tokenizer",
    "noise_code",
    "noise_counts",
    "pil_to_tensor",
    "quantize_",
    "register_world",
    "save_embedding_cache",
    "save_npz_dataset",
    "save_shard_embeddings",
    "shard_name",
    "split_words",
    "tensor_to_pil",
    "to_channels_last",
    "write_shard_cache_meta",
]
