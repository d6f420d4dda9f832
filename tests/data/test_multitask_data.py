"""Noisy digit tasks: shapes, the per-class split (seed only), the documented noise and
labels, determinism, and the dataset's validation naming the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from curatorch.data import (
    DIGIT_TASKS,
    PIXEL_NOISE,
    MultiTaskDataset,
    MultiTaskSplits,
    noisy_digit_tasks,
)


@pytest.fixture(scope="module")
def splits() -> MultiTaskSplits:
    return noisy_digit_tasks(seed=0)


def _clean() -> tuple[torch.Tensor, np.ndarray]:
    d = load_digits()
    return torch.from_numpy((d.images / 16.0).astype(np.float32)), d.target


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x}


def test_shapes_tasks_and_per_class_split(splits: MultiTaskSplits) -> None:
    assert PIXEL_NOISE == 0.5 and DIGIT_TASKS == ("digit", "parity", "ink")
    for part in (splits.train, splits.test):
        assert part.tasks == DIGIT_TASKS and part.input_shape == (1, 8, 8)
        assert part.inputs.dtype == torch.float32
        assert dict(part.num_classes) == {"digit": 10, "parity": 2, "ink": 2}
        assert all(y.dtype == torch.int64 for y in part.labels.values())
    assert len(splits.train) + len(splits.test) == 1797
    _, digits = _clean()
    per_class = np.bincount(digits, minlength=10)
    test_counts = torch.bincount(splits.test.labels["digit"], minlength=10).numpy()
    assert test_counts.tolist() == np.maximum(1, np.round(0.3 * per_class)).astype(int).tolist()
    assert not _rows(splits.train.inputs) & _rows(splits.test.inputs)  # disjoint scans


def test_labels_are_as_documented(splits: MultiTaskSplits) -> None:
    for part in (splits.train, splits.test):
        assert torch.equal(part.labels["parity"], part.labels["digit"] % 2)
    total = splits.train.inputs.double().sum(dim=(1, 2, 3))  # observed ink
    median = float(np.median(total.numpy()))
    assert torch.equal(splits.train.labels["ink"], (total > median).long())
    test_total = splits.test.inputs.double().sum(dim=(1, 2, 3))
    assert torch.equal(splits.test.labels["ink"], (test_total > median).long())
    assert float(splits.train.labels["ink"].float().mean()) == pytest.approx(0.5, abs=0.01)


def test_noise_is_gaussian_of_the_stated_std_and_its_pattern_fixed_by_the_seed() -> None:
    clean_imgs, _ = _clean()
    zero = noisy_digit_tasks(seed=4, pixel_noise=0.0)
    # without noise the inputs are the clean scans in [0, 1], in the same split
    assert float(zero.train.inputs.min()) >= 0.0 and float(zero.train.inputs.max()) <= 1.0
    assert _rows(zero.train.inputs[:, 0]) <= _rows(clean_imgs)
    a, b = noisy_digit_tasks(seed=4, pixel_noise=0.25), noisy_digit_tasks(seed=4)
    for za, zb, z0 in ((a.train, b.train, zero.train), (a.test, b.test, zero.test)):
        assert torch.equal(za.labels["digit"], z0.labels["digit"])  # the split: seed only
        na, nb = za.inputs - z0.inputs, zb.inputs - z0.inputs
        torch.testing.assert_close(2 * na, nb, atol=1e-5, rtol=0)  # one pattern, scaled
    assert float((b.train.inputs - zero.train.inputs).std()) == pytest.approx(0.5, rel=0.03)


def test_deterministic_in_the_seed() -> None:
    a, b, c = noisy_digit_tasks(seed=1), noisy_digit_tasks(seed=1), noisy_digit_tasks(seed=2)
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert all(torch.equal(a.test.labels[t], b.test.labels[t]) for t in DIGIT_TASKS)
    assert not torch.equal(a.train.labels["digit"], c.train.labels["digit"])


def test_batch_and_select(splits: MultiTaskSplits) -> None:
    idx = torch.tensor([3, 0, 7])
    x, y = splits.train.batch(idx)
    assert x.shape == (3, 1, 8, 8) and torch.equal(y["digit"], splits.train.labels["digit"][idx])
    alone = splits.train.select(["ink"])
    assert alone.tasks == ("ink",) and dict(alone.num_classes) == {"ink": 2}
    with pytest.raises(ValueError, match=r"tasks must be a non-empty subset.*\['colour'\]"):
        splits.train.select(["colour"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\), got 1.0"),
        ({"pixel_noise": -0.1}, r"pixel_noise must be a finite number >= 0, got -0.1"),
        ({"pixel_noise": float("nan")}, r"pixel_noise must be a finite number >= 0, got nan"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        noisy_digit_tasks(**kwargs)


def test_dataset_validation_names_the_field() -> None:
    x, y = torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1])
    ok = {"inputs": x, "labels": {"a": y}, "num_classes": {"a": 2}}
    MultiTaskDataset(**ok)
    bad = [
        ({"inputs": torch.zeros(4, 64, dtype=torch.int64)}, r"inputs must be floating point"),
        ({"inputs": torch.zeros(4)}, r"inputs must be a tensor \[N, \.\.\.\]"),
        ({"labels": {}, "num_classes": {}}, r"labels must hold at least one task"),
        ({"num_classes": {"b": 2}}, r"num_classes must name the tasks of labels \['a'\]"),
        ({"num_classes": {"a": 1}}, r"num_classes\['a'\] must be an int >= 2, got 1"),
        ({"labels": {"a": y.float()}}, r"labels\['a'\] must be int64 \[N=4\]"),
        ({"labels": {"a": y[:3]}}, r"labels\['a'\] must be int64 \[N=4\], got .*\(3,\)"),
        ({"labels": {"a": y + 1}}, r"labels\['a'\] must be in \[0, num_classes\['a'\]=2\)"),
    ]
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            MultiTaskDataset(**{**ok, **change})
    one = MultiTaskDataset(**ok)
    with pytest.raises(ValueError, match=r"test must have the tasks of train \['a'\]"):
        MultiTaskSplits(train=one, test=one.__class__(x, {"b": y}, {"b": 2}))
    with pytest.raises(ValueError, match=r"test inputs must have train's shape \(1, 8, 8\)"):
        MultiTaskSplits(train=one, test=MultiTaskDataset(torch.zeros(4, 64), {"a": y}, {"a": 2}))
