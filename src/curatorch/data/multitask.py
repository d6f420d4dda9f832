"""Multi-task classification data: one input, several labels of unequal difficulty.

**Noisy digit tasks** (:func:`noisy_digit_tasks`) is built from scikit-learn's bundled 8x8
handwritten digits (``load_digits``, 1,797 scans, nothing downloaded). Each example is one
gray scan ``[1, 8, 8]``, ink intensities in [0, 1], plus Gaussian pixel noise of standard
deviation ``pixel_noise`` (:data:`PIXEL_NOISE` = 0.5, half the ink range: chosen once so
that the 10-way identity is hard, never tuned on any method's result; not clipped, so the
input leaves [0, 1]). The noise is drawn once per scan (train and test alike) from a
generator of its own seeded by ``seed``. Three tasks share the input
(:data:`DIGIT_TASKS`), deliberately of unequal difficulty:

- ``"digit"``: the digit's identity, 10 classes: hard under the noise;
- ``"parity"``: odd (1) or even (0), 2 classes: needs the identity, but only half of its
  confusions cross the odd/even line;
- ``"ink"``: whether the scan's total observed ink (the sum of its 64 noisy pixels) is
  above the median of the training split's totals (1) or not (0), 2 classes: a coarse
  attribute, one linear threshold of the input, easy. (The clean scan's ink is *not*
  used: under the default noise its total is recovered so poorly, its spread over the
  scans being 2.2 against the 64 pixels' noise sum's 4.0, that it would be the hardest
  task, not the easy one.)

The split is per digit class, seeded by ``seed`` only: ``test_fraction`` of each class's
scans are the test set, never trained on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from curatorch.data._common import sklearn_digits

__all__ = [
    "DIGIT_TASKS",
    "PIXEL_NOISE",
    "MultiTaskDataset",
    "MultiTaskSplits",
    "noisy_digit_tasks",
]

DIGIT_TASKS = ("digit", "parity", "ink")
PIXEL_NOISE = 0.5
_STREAM_SPLIT, _STREAM_NOISE = 8, 9  # np.random.default_rng([seed, stream])


@dataclass(frozen=True)
class MultiTaskDataset:
    """One input per example and one label per task.

    Attributes:
        inputs: float32 ``[N, ...]`` (``[N, 1, 8, 8]`` for the digit tasks).
        labels: task name -> int64 ``[N]`` class indices in ``[0, num_classes[task])``.
        num_classes: task name -> number of classes ``K >= 2`` (the same task names).
    """

    inputs: Tensor
    labels: Mapping[str, Tensor]
    num_classes: Mapping[str, int]

    def __post_init__(self) -> None:
        if not isinstance(self.inputs, Tensor) or self.inputs.ndim < 2:
            raise ValueError(f"inputs must be a tensor [N, ...], got {_describe(self.inputs)}")
        if not self.inputs.is_floating_point():
            raise ValueError(f"inputs must be floating point, got {self.inputs.dtype}")
        if not self.labels:
            raise ValueError("labels must hold at least one task, got none")
        if set(self.labels) != set(self.num_classes):
            raise ValueError(
                f"num_classes must name the tasks of labels {list(self.labels)}, "
                f"got {list(self.num_classes)}"
            )
        n = self.inputs.shape[0]
        for task, y in self.labels.items():
            k = self.num_classes[task]
            if isinstance(k, bool) or not isinstance(k, int) or k < 2:
                raise ValueError(f"num_classes[{task!r}] must be an int >= 2, got {k!r}")
            if not isinstance(y, Tensor) or y.dtype != torch.int64 or tuple(y.shape) != (n,):
                raise ValueError(f"labels[{task!r}] must be int64 [N={n}], got {_describe(y)}")
            if n and (int(y.min()) < 0 or int(y.max()) >= k):
                raise ValueError(
                    f"labels[{task!r}] must be in [0, num_classes[{task!r}]={k}), got values "
                    f"in [{int(y.min())}, {int(y.max())}]"
                )

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in order."""
        return tuple(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One example's shape (without the batch dimension)."""
        return tuple(self.inputs.shape[1:])

    def batch(self, idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The examples ``idx`` (int64 ``[b]``): ``(inputs [b, ...], {task: labels [b]})``."""
        return self.inputs[idx], {t: y[idx] for t, y in self.labels.items()}

    def select(self, tasks: Sequence[str]) -> MultiTaskDataset:
        """The same examples with only the labels of ``tasks`` (e.g. one task alone)."""
        unknown = [t for t in tasks if t not in self.labels]
        if unknown or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(
                f"tasks must be a non-empty subset of {list(self.labels)} without repeats, "
                f"got {list(tasks)}"
            )
        return MultiTaskDataset(
            inputs=self.inputs,
            labels={t: self.labels[t] for t in tasks},
            num_classes={t: self.num_classes[t] for t in tasks},
        )


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"{x.dtype} of shape {tuple(x.shape)}"
    return type(x).__name__


@dataclass(frozen=True)
class MultiTaskSplits:
    """A training split and a test split with the same input shape and tasks."""

    train: MultiTaskDataset
    test: MultiTaskDataset

    def __post_init__(self) -> None:
        if self.train.tasks != self.test.tasks:
            raise ValueError(
                f"test must have the tasks of train {list(self.train.tasks)}, "
                f"got {list(self.test.tasks)}"
            )
        if self.train.input_shape != self.test.input_shape:
            raise ValueError(
                f"test inputs must have train's shape {self.train.input_shape}, "
                f"got {self.test.input_shape}"
            )


def _per_class_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """``[N]`` bool: the first ``round(test_fraction * n_c)`` (at least 1) scans of each
    class ``c`` in a seeded random order are test scans."""
    rng = np.random.default_rng([seed, _STREAM_SPLIT])
    order = rng.permutation(len(labels))
    order = order[np.argsort(labels[order], kind="stable")]  # by class, random within
    classes, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    n_test = np.maximum(1, np.round(test_fraction * counts)).astype(np.int64)  # [C]
    cls = np.searchsorted(classes, labels[order])
    rank = np.arange(len(order)) - starts[cls]  # position within the class
    mask = np.zeros(len(labels), dtype=bool)
    mask[order[rank < n_test[cls]]] = True
    return mask


def noisy_digit_tasks(
    *, seed: int = 0, test_fraction: float = 0.3, pixel_noise: float = PIXEL_NOISE
) -> MultiTaskSplits:
    """Noisy digit tasks (see the module docstring); deterministic in ``seed``.

    Args:
        seed: seeds the train/test split and, through a generator of its own, the noise.
        test_fraction: fraction of each class's scans in the test split, in (0, 1).
        pixel_noise: standard deviation of the Gaussian pixel noise, in ink-intensity units
            (:data:`PIXEL_NOISE`), finite and >= 0. The standard normals are drawn before
            scaling, so the noise pattern does not depend on it.

    Returns:
        :class:`MultiTaskSplits` with inputs ``[N, 1, 8, 8]`` float32 and the tasks
        ``digit`` (10 classes), ``parity`` (2) and ``ink`` (2).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not (math.isfinite(pixel_noise) and pixel_noise >= 0.0):
        raise ValueError(f"pixel_noise must be a finite number >= 0, got {pixel_noise}")
    images, digits = sklearn_digits()  # [1797, 8, 8] in [0, 1], [1797]
    noise = np.random.default_rng([seed, _STREAM_NOISE]).standard_normal(images.shape)
    noisy = (images + pixel_noise * noise).astype(np.float32)  # [1797, 8, 8]
    total = noisy.reshape(len(noisy), -1).sum(axis=1, dtype=np.float64)  # [1797] observed ink
    test = _per_class_test_mask(digits, test_fraction, seed)
    median = float(np.median(total[~test]))

    def build(mask: np.ndarray) -> MultiTaskDataset:
        y = digits[mask]
        labels = {"digit": y, "parity": y % 2, "ink": (total[mask] > median).astype(np.int64)}
        return MultiTaskDataset(
            inputs=torch.from_numpy(np.ascontiguousarray(noisy[mask][:, None])),
            labels={t: torch.from_numpy(np.ascontiguousarray(v)) for t, v in labels.items()},
            num_classes={"digit": 10, "parity": 2, "ink": 2},
        )

    return MultiTaskSplits(train=build(~test), test=build(test))
