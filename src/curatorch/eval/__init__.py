"""Evaluation: zero-shot classification, few-shot linear probe, retrieval R@1."""

from curatorch.eval.evaluate import (
    EVAL_METRICS,
    TwoTowerEncoder,
    embed_images,
    embed_texts,
    evaluate,
)
from curatorch.eval.fewshot import fewshot_probe_accuracy
from curatorch.eval.retrieval import retrieval_recall_at_1
from curatorch.eval.zeroshot import class_prompts, zero_shot_accuracy

__all__ = [
    "EVAL_METRICS",
    "TwoTowerEncoder",
    "class_prompts",
    "embed_images",
    "embed_texts",
    "evaluate",
    "fewshot_probe_accuracy",
    "retrieval_recall_at_1",
    "zero_shot_accuracy",
]
