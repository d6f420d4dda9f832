"""Few-shot linear probe: closed-form ridge regression onto ±1 class targets."""

from __future__ import annotations

import torch

__all__ = ["fewshot_probe_accuracy"]


def fewshot_probe_accuracy(
    train_emb: torch.Tensor,
    train_labels: torch.Tensor,
    test_emb: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_classes: int,
    l2: float = 1.0,
) -> float:
    """Accuracy of a ridge-regression probe fitted on frozen embeddings.

    The probe solves ``min_W ||X W - Y||² + l2 ||W||²`` in float64 with centred features
    and targets ``Y`` = +1 for the true class and -1 elsewhere (as big_vision's few-shot
    evaluator does), then predicts ``argmax(X_test W)``.

    Args:
        train_emb: ``[n, D]`` embeddings of the labelled shots.
        train_labels: ``[n]`` int64 in ``[0, num_classes)``.
        test_emb: ``[m, D]``; test_labels: ``[m]``.
    """
    if train_emb.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"train_emb has {train_emb.shape[0]} rows but train_labels has {train_labels.shape[0]}"
        )
    if test_emb.shape[0] != test_labels.shape[0]:
        raise ValueError(
            f"test_emb has {test_emb.shape[0]} rows but test_labels has {test_labels.shape[0]}"
        )
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    x = train_emb.double()
    mean = x.mean(dim=0, keepdim=True)
    x = x - mean
    y = -torch.ones(x.shape[0], num_classes, dtype=torch.float64)
    y[torch.arange(x.shape[0]), train_labels] = 1.0
    gram = x.T @ x + l2 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)  # [D, C]
    bias = y.mean(dim=0, keepdim=True)
    scores = (test_emb.double() - mean) @ w + bias
    return float((scores.argmax(dim=1) == test_labels).double().mean())
