"""The multi-task classifier: output shapes, the shared/head parameter split the
integrators rely on, each head reached by its own task only, and config errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from curatorch.models import MultiTaskClassifier, MultiTaskClassifierConfig

CFG = MultiTaskClassifierConfig(
    tasks=("digit", "parity", "ink"), num_classes=(10, 2, 2), hidden=16, embed_dim=8
)


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_forward_shapes_and_parameter_groups(encoder: str) -> None:
    model = MultiTaskClassifier(dataclasses.replace(CFG, encoder=encoder))
    out = model(torch.randn(5, 1, 8, 8))
    assert list(out) == ["digit", "parity", "ink"]
    assert [tuple(v.shape) for v in out.values()] == [(5, 10), (5, 2), (5, 2)]
    shared, heads = model.shared_parameters(), model.head_parameters()
    ids = [id(p) for p in shared + heads]
    assert len(set(ids)) == len(ids) and set(ids) == {id(p) for p in model.parameters()}
    assert len(heads) == 6  # weight and bias per task
    with pytest.raises(ValueError, match=r"x must have shape \[B, 1, 8, 8\]"):
        model(torch.randn(5, 64))


def test_each_head_is_reached_by_its_task_only() -> None:
    model = MultiTaskClassifier(CFG)
    out = model(torch.randn(6, 1, 8, 8))
    heads = {t: list(model.heads[t].parameters()) for t in CFG.tasks}
    for task in CFG.tasks:
        grads = torch.autograd.grad(
            out[task].square().sum(),
            [p for ps in heads.values() for p in ps] + model.shared_parameters(),
            retain_graph=True,
            allow_unused=True,
        )
        by_task = dict(zip(CFG.tasks, [grads[0:2], grads[2:4], grads[4:6]], strict=True))
        for other, g in by_task.items():
            assert all((x is not None) == (other == task) for x in g)
        assert all(x is not None for x in grads[6:])  # the shared encoder: every task


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"tasks": ()}, r"tasks must be non-empty and unique"),
        ({"tasks": ("a", "a", "b")}, r"tasks must be non-empty and unique, got \['a', 'a'"),
        ({"num_classes": (10, 2)}, r"num_classes must have one entry per task \(3\)"),
        ({"num_classes": (10, 1, 2)}, r"num_classes for task 'parity' must be an int >= 2"),
        ({"encoder": "vit"}, r"encoder must be one of \['mlp', 'conv'\], got 'vit'"),
        ({"encoder": "conv", "input_shape": (64,)}, r"encoder 'conv' needs a \(C, H, W\)"),
        ({"input_shape": (1, 0, 8)}, r"input_shape must be positive"),
        ({"embed_dim": 0}, r"embed_dim must be >= 1, got 0"),
    ],
)
def test_config_errors_name_the_field(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(CFG, **change)
