"""Evaluation: zero-shot classification, few-shot linear probe, retrieval R@1 and R@k;
the built-in worlds' evaluation and evaluation on held-out shards."""

from curatorch.eval.evaluate import (
    EVAL_METRICS,
    TwoTowerEncoder,
    embed_images,
    embed_texts,
    evaluate,
)
from curatorch.eval.fewshot import fewshot_probe_accuracy
from curatorch.eval.retrieval import retrieval_recall_at_1, retrieval_recall_at_k
from curatorch.eval.shards import (
    DEFAULT_TEMPLATES,
    MEAN_SCORE_TERMS,
    SHARD_EVAL_SCORES,
    CaptionTokenizer,
    ImageTextEncoder,
    ShardEvalSet,
    ShardEvaluator,
    build_shard_evaluator,
    load_classes,
    load_templates,
)
from curatorch.eval.zeroshot import class_prompts, zero_shot_accuracy

__all__ = [
    "DEFAULT_TEMPLATES",
    "EVAL_METRICS",
    "MEAN_SCORE_TERMS",
    "SHARD_EVAL_SCORES",
    "CaptionTokenizer",
    "ImageTextEncoder",
    "ShardEvalSet",
    "ShardEvaluator",
    "TwoTowerEncoder",
    "build_shard_evaluator",
    "class_prompts",
    "embed_images",
    "embed_texts",
    "evaluate",
    "fewshot_probe_accuracy",
    "load_classes",
    "load_templates",
    "retrieval_recall_at_1",
    "retrieval_recall_at_k",
    "zero_shot_accuracy",
]
