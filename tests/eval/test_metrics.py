import pytest
import torch
import torch.nn.functional as F

from curatorch.eval import (
    class_prompts,
    fewshot_probe_accuracy,
    retrieval_recall_at_1,
    zero_shot_accuracy,
)


def test_class_prompts_order_and_validation() -> None:
    assert class_prompts(["a", "b"], ["x {}", "{}"]) == ["x a", "a", "x b", "b"]
    with pytest.raises(ValueError, match="templates"):
        class_prompts(["a"], ["no slot"])


def test_zero_shot_perfect_and_ensemble() -> None:
    classes = F.normalize(torch.randn(5, 16), dim=-1)
    # two templates per class, each a noisy copy of the class direction
    prompts = torch.stack(
        [classes + 0.01 * torch.randn(5, 16), classes + 0.01 * torch.randn(5, 16)], 1
    )
    prompts = F.normalize(prompts.reshape(10, 16), dim=-1)
    labels = torch.randint(0, 5, (40,))
    images = F.normalize(classes[labels] + 0.05 * torch.randn(40, 16), dim=-1)
    assert zero_shot_accuracy(images, prompts, labels, num_templates=2) == 1.0
    wrong = (labels + 1) % 5
    assert zero_shot_accuracy(images, prompts, wrong, num_templates=2) == 0.0
    with pytest.raises(ValueError, match="num_templates"):
        zero_shot_accuracy(images, prompts, labels, num_templates=3)


def test_fewshot_probe_separable_and_random() -> None:
    centers = torch.randn(4, 8) * 3
    ytr = torch.arange(4).repeat_interleave(10)
    yte = torch.arange(4).repeat_interleave(25)
    xtr = centers[ytr] + 0.3 * torch.randn(40, 8)
    xte = centers[yte] + 0.3 * torch.randn(100, 8)
    assert fewshot_probe_accuracy(xtr, ytr, xte, yte, num_classes=4, l2=0.1) == 1.0
    noise_acc = fewshot_probe_accuracy(
        torch.randn(40, 8), ytr, torch.randn(100, 8), yte, num_classes=4
    )
    assert noise_acc < 0.6


def test_retrieval_r1_counts_identical_captions() -> None:
    emb = F.normalize(torch.randn(6, 8), dim=-1)
    tokens = torch.arange(6)[:, None].repeat(1, 3)
    assert retrieval_recall_at_1(emb, emb, tokens) == (1.0, 1.0)
    shifted = emb.roll(1, dims=0)  # every text now matches the wrong image
    i2t, t2i = retrieval_recall_at_1(emb, shifted, tokens)
    assert i2t == 0.0 and t2i == 0.0
    # two identical captions: their texts are interchangeable
    tokens[1] = tokens[0]
    text = emb.clone()
    text[1] = emb[0]
    text[0] = emb[1]
    i2t, _ = retrieval_recall_at_1(emb, text, tokens)
    assert i2t == 1.0
