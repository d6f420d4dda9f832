"""All evaluations of a two-tower model on a world's held-out sets."""

from __future__ import annotations

from typing import Protocol

import torch

from curatorch.data import EvalSets, PairDataset
from curatorch.eval.fewshot import fewshot_probe_accuracy
from curatorch.eval.retrieval import retrieval_recall_at_1
from curatorch.eval.zeroshot import class_prompts, zero_shot_accuracy

__all__ = ["EVAL_METRICS", "TwoTowerEncoder", "embed_images", "embed_texts", "evaluate"]

EVAL_METRICS = ("zeroshot_acc", "zeroshot_chance", "fewshot_acc", "i2t_r1", "t2i_r1", "mean_score")


class TwoTowerEncoder(Protocol):
    """What evaluation needs of a model: L2-normalised embeddings of each modality."""

    def encode_image(self, images: torch.Tensor, patch_size: int | None = None) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def embed_images(
    model: TwoTowerEncoder,
    data: PairDataset,
    *,
    patch_size: int | None,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Image embeddings of a whole dataset, float32 ``[n, D]`` on CPU."""
    out = []
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        images = data.image_batch(idx).to(device, non_blocking=True)
        out.append(model.encode_image(images, patch_size=patch_size).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def embed_texts(
    model: TwoTowerEncoder,
    tokens: torch.Tensor,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Text embeddings of ``tokens`` ``[n, L]``, float32 ``[n, D]`` on CPU."""
    out = [
        model.encode_text(tokens[s : s + batch_size].to(device, non_blocking=True)).float().cpu()
        for s in range(0, tokens.shape[0], batch_size)
    ]
    return torch.cat(out)


@torch.no_grad()
def evaluate(
    model: TwoTowerEncoder,
    sets: EvalSets,
    *,
    patch_size: int | None = None,
    batch_size: int = 500,
    fewshot_l2: float = 1.0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Zero-shot accuracy (prompt ensemble), 10-shot ridge probe, retrieval R@1, their mean.

    ``mean_score`` is the mean of ``zeroshot_acc``, ``fewshot_acc``, ``i2t_r1`` and
    ``t2i_r1``: the analogue of the JEST paper's average of ImageNet 0-/10-shot accuracy
    and COCO image→text / text→image R@1. All values are fractions in [0, 1].
    The model is put in eval mode and restored to its previous mode afterwards.
    """
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()  # type: ignore[attr-defined]
    try:
        kw = {"batch_size": batch_size, "device": device}
        tok = sets.classify.tokenizer
        num_classes = len(sets.class_names)
        prompts = class_prompts(sets.class_names, sets.prompt_templates)
        prompt_emb = embed_texts(model, tok.encode(prompts), **kw)
        test_emb = embed_images(model, sets.classify, patch_size=patch_size, **kw)
        zeroshot = zero_shot_accuracy(
            test_emb, prompt_emb, sets.classify.labels, num_templates=len(sets.prompt_templates)
        )
        probe_emb = embed_images(model, sets.probe_train, patch_size=patch_size, **kw)
        fewshot = fewshot_probe_accuracy(
            probe_emb,
            sets.probe_train.labels,
            test_emb,
            sets.classify.labels,
            num_classes=num_classes,
            l2=fewshot_l2,
        )
        r_img = embed_images(model, sets.retrieval, patch_size=patch_size, **kw)
        r_txt = embed_texts(model, sets.retrieval.tokens, **kw)
        i2t, t2i = retrieval_recall_at_1(r_img, r_txt, sets.retrieval.tokens)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()  # type: ignore[attr-defined]
    return {
        "zeroshot_acc": zeroshot,
        "zeroshot_chance": 1.0 / num_classes,
        "fewshot_acc": fewshot,
        "i2t_r1": i2t,
        "t2i_r1": t2i,
        "mean_score": (zeroshot + fewshot + i2t + t2i) / 4.0,
    }
