"""Multimodal classification data: coloured-and-gray digits and datasets from user arrays.

**Coloured-and-gray digits** follows Coloured-and-gray-MNIST (Kim et al., CVPR 2019; the
MMPareto paper's synthetic benchmark) on scikit-learn's bundled 8x8 handwritten digits
(``load_digits``, 1,797 scans, nothing downloaded). Each example has two modalities of the
same scan, intensities scaled to [0, 1]:

- ``"gray"``: the digit in grayscale, ``[1, 8, 8]``;
- ``"colour"``: the same digit painted in a colour, ``[3, 8, 8]`` (ink intensity times an
  RGB colour on black). In the training split the colour is the class's mean colour
  (:data:`DIGIT_COLOURS`) plus Gaussian jitter of variance ``colour_variance`` (0.03) per
  channel, clipped to [0, 1]; in the test split it is uniformly random. Colour is a
  training shortcut that does not hold at test time.

The split is per class, seeded by ``seed`` only: ``test_fraction`` of each class's scans
are the test set, never trained on.

**Coloured-gray-profile digits** (:func:`coloured_gray_profile_digits`) adds a third
modality of the same scan, with the same gray, colour and split as
:func:`coloured_gray_digits` (bit for bit):

- ``"profile"``: a 1-D line-sensor trace ``[1, 16]``, the scan's projection profiles
  (:func:`projection_profiles`: the 8 row means followed by the 8 column means of the ink
  intensities), times a per-example gain drawn uniformly from [0.7, 1.3], plus Gaussian
  noise of standard deviation ``profile_noise`` (0.05) per entry, in train and test alike
  (no shortcut). Projections lose information (many scans share them), so this is a
  weaker modality than the image. Its gains and noise come from their own generator,
  seeded by ``seed``, so the other modalities are unchanged.

**Generic datasets**: :func:`load_npz_dataset` reads an ``.npz`` file holding one array
per modality (``[N, ...]``, any float shape) and an int label array ``[N]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from curatorch.data._common import sklearn_digits

__all__ = [
    "DIGIT_COLOURS",
    "PROFILE_GAIN_RANGE",
    "MultimodalDataset",
    "MultimodalSplits",
    "coloured_gray_digits",
    "coloured_gray_profile_digits",
    "load_npz_dataset",
    "projection_profiles",
    "save_npz_dataset",
]

# class -> mean RGB colour in [0, 1] (ten well-separated colours)
DIGIT_COLOURS = (
    (0.90, 0.10, 0.10),  # 0 red
    (0.10, 0.75, 0.10),  # 1 green
    (0.15, 0.25, 0.95),  # 2 blue
    (0.95, 0.90, 0.10),  # 3 yellow
    (0.85, 0.15, 0.85),  # 4 magenta
    (0.10, 0.85, 0.85),  # 5 cyan
    (0.98, 0.55, 0.05),  # 6 orange
    (0.55, 0.20, 0.90),  # 7 purple
    (0.55, 0.95, 0.55),  # 8 light green
    (0.60, 0.40, 0.20),  # 9 brown
)


@dataclass(frozen=True)
class MultimodalDataset:
    """Examples with several modalities and a class label.

    Attributes:
        inputs: modality name -> float32 tensor ``[N, ...]`` (e.g. ``[N, C, H, W]``).
        labels: int64 ``[N]`` class indices in ``[0, num_classes)``.
        num_classes: number of classes.
    """

    inputs: Mapping[str, Tensor]
    labels: Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("inputs must hold at least one modality, got none")
        if self.labels.ndim != 1 or self.labels.dtype != torch.int64:
            raise ValueError(
                f"labels must be an int64 [N] tensor, got {self.labels.dtype} "
                f"of shape {tuple(self.labels.shape)}"
            )
        n = self.labels.shape[0]
        for name, x in self.inputs.items():
            if x.ndim < 2 or x.shape[0] != n:
                raise ValueError(
                    f"inputs[{name!r}] must be [N={n}, ...], got shape {tuple(x.shape)}"
                )
            if not x.is_floating_point():
                raise ValueError(f"inputs[{name!r}] must be floating point, got {x.dtype}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.num_classes):
            raise ValueError(
                f"labels must be in [0, num_classes={self.num_classes}), got values in "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.inputs)

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Modality -> shape of one example (without the batch dimension)."""
        return {name: tuple(x.shape[1:]) for name, x in self.inputs.items()}

    def batch(self, idx: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The examples ``idx`` (int64 ``[b]``): ``({modality: [b, ...]}, labels [b])``."""
        return {name: x[idx] for name, x in self.inputs.items()}, self.labels[idx]

    def select(self, modalities: Sequence[str]) -> MultimodalDataset:
        """The same examples with only ``modalities`` (e.g. one modality trained alone)."""
        unknown = [m for m in modalities if m not in self.inputs]
        if unknown or not modalities:
            raise ValueError(
                f"modalities must be a non-empty subset of {list(self.inputs)}, "
                f"got {list(modalities)}"
            )
        return MultimodalDataset(
            inputs={m: self.inputs[m] for m in modalities},
            labels=self.labels,
            num_classes=self.num_classes,
        )


@dataclass(frozen=True)
class MultimodalSplits:
    """A training split and a test split with the same modalities and classes."""

    train: MultimodalDataset
    test: MultimodalDataset


def coloured_gray_digits(
    *, seed: int = 0, test_fraction: float = 0.3, colour_variance: float = 0.03
) -> MultimodalSplits:
    """Coloured-and-gray digits (see the module docstring); deterministic in ``seed``.

    Args:
        seed: seeds the train/test split and the colours.
        test_fraction: fraction of each class's scans in the test split, in (0, 1).
        colour_variance: variance of the per-channel training colour jitter (0.03 by the
            benchmark's definition; change it only to study the shortcut).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not colour_variance >= 0.0:
        raise ValueError(f"colour_variance must be >= 0, got {colour_variance}")
    images, labels = sklearn_digits()
    rng = np.random.default_rng([seed, 6])
    test_idx, train_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = max(1, round(test_fraction * len(idx)))
        test_idx.append(idx[:n_test])
        train_idx.append(idx[n_test:])
    palette = np.asarray(DIGIT_COLOURS, dtype=np.float32)  # [10, 3]

    def build(idx: np.ndarray, train: bool) -> MultimodalDataset:
        idx = np.sort(idx)
        x, y = images[idx], labels[idx]
        if train:
            jitter = rng.normal(0.0, np.sqrt(colour_variance), size=(len(idx), 3))
            colours = np.clip(palette[y] + jitter, 0.0, 1.0)
        else:
            colours = rng.uniform(0.0, 1.0, size=(len(idx), 3))
        coloured = x[:, None, :, :] * colours.astype(np.float32)[:, :, None, None]
        return MultimodalDataset(
            inputs={
                "gray": torch.from_numpy(np.ascontiguousarray(x[:, None])),
                "colour": torch.from_numpy(np.ascontiguousarray(coloured)),
            },
            labels=torch.from_numpy(y),
            num_classes=10,
        )

    train = build(np.concatenate(train_idx), True)
    test = build(np.concatenate(test_idx), False)
    return MultimodalSplits(train=train, test=test)


# the line sensor's per-example gain is uniform in this range (both ends in the range)
PROFILE_GAIN_RANGE = (0.7, 1.3)


def projection_profiles(images: Tensor) -> Tensor:
    """The projection profiles of ``images`` (``[N, H, W]`` ink intensities): the ``H`` row
    means followed by the ``W`` column means, float64 ``[N, H + W]`` in the images' units."""
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W], got shape {tuple(images.shape)}")
    x = images.to(torch.float64)
    return torch.cat([x.mean(dim=2), x.mean(dim=1)], dim=1)  # [N, H] rows, [N, W] columns


def _with_profile(
    dataset: MultimodalDataset, rng: np.random.Generator, profile_noise: float
) -> MultimodalDataset:
    """``dataset`` plus ``"profile"`` ``[N, 1, 16]`` of its gray scans: gain x projections
    + noise. Draws the gains ``[N]``, then standard normals ``[N, 16]`` (scaled by
    ``profile_noise``), so the gains do not depend on ``profile_noise``."""
    proj = projection_profiles(dataset.inputs["gray"][:, 0]).numpy()  # [N, 16] float64
    n = proj.shape[0]
    gain = rng.uniform(*PROFILE_GAIN_RANGE, size=n)  # [N]
    noise = rng.standard_normal(size=proj.shape)  # [N, 16]
    profile = gain[:, None] * proj + profile_noise * noise
    return MultimodalDataset(
        inputs={
            **dataset.inputs,
            "profile": torch.from_numpy(profile.astype(np.float32)[:, None, :]),
        },
        labels=dataset.labels,
        num_classes=dataset.num_classes,
    )


def coloured_gray_profile_digits(
    *,
    seed: int = 0,
    test_fraction: float = 0.3,
    colour_variance: float = 0.03,
    profile_noise: float = 0.05,
) -> MultimodalSplits:
    """Coloured-gray-profile digits (see the module docstring): :func:`coloured_gray_digits`
    with the same arguments plus ``"profile"`` ``[1, 16]``; deterministic in ``seed``.

    Args:
        seed: seeds the split and the colours (as :func:`coloured_gray_digits`) and,
            through a generator of its own, the profile's gains and noise.
        test_fraction: fraction of each class's scans in the test split, in (0, 1).
        colour_variance: variance of the per-channel training colour jitter (0.03).
        profile_noise: standard deviation of the profile's Gaussian noise, in ink
            intensity units (0.05), finite and >= 0.
    """
    if not (math.isfinite(profile_noise) and profile_noise >= 0.0):
        raise ValueError(f"profile_noise must be a finite number >= 0, got {profile_noise}")
    base = coloured_gray_digits(
        seed=seed, test_fraction=test_fraction, colour_variance=colour_variance
    )
    rng = np.random.default_rng([seed, 7])  # the profile's own stream (the split uses 6)
    train = _with_profile(base.train, rng, profile_noise)
    test = _with_profile(base.test, rng, profile_noise)
    return MultimodalSplits(train=train, test=test)


def load_npz_dataset(
    path: str | os.PathLike[str],
    *,
    label_key: str = "labels",
    modalities: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> MultimodalDataset:
    """A dataset from an ``.npz`` file: every array but ``label_key`` is a modality.

    Args:
        path: the ``.npz`` file.
        label_key: name of the int label array ``[N]``.
        modalities: the arrays to use, in this order (default: all but the labels, in file
            order). At least one.
        num_classes: default ``max(label) + 1``.

    Raises:
        ValueError naming the file and the array when it is missing or malformed.
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError as exc:
        raise ValueError(f"dataset file {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ValueError(f"dataset file {path} is not a readable .npz: {exc}") from exc
    if label_key not in arrays:
        raise ValueError(f"dataset file {path} has no label array {label_key!r} ({list(arrays)})")
    labels = arrays.pop(label_key)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: {label_key} must be a 1-D integer array, got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    names = list(arrays) if modalities is None else list(modalities)
    missing = [m for m in names if m not in arrays]
    if missing or not names:
        raise ValueError(f"{path}: modalities {missing or names} not among arrays {list(arrays)}")
    inputs = {}
    for m in names:
        a = arrays[m]
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{path}: array {m!r} must be numeric, got {a.dtype}")
        inputs[m] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    n_cls = int(labels.max()) + 1 if num_classes is None else int(num_classes)
    try:
        return MultimodalDataset(
            inputs=inputs, labels=torch.from_numpy(labels.astype(np.int64)), num_classes=n_cls
        )
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def save_npz_dataset(
    path: str | os.PathLike[str], dataset: MultimodalDataset, *, label_key: str = "labels"
) -> None:
    """Write ``dataset`` in the format :func:`load_npz_dataset` reads."""
    if label_key in dataset.inputs:
        raise ValueError(f"label_key {label_key!r} collides with a modality name")
    arrays = {m: x.numpy() for m, x in dataset.inputs.items()}
    np.savez(path, **arrays, **{label_key: dataset.labels.numpy()})
