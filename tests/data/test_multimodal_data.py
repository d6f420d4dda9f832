"""Coloured-gray-profile digits: shapes, determinism, the documented profile formula, and
gray/colour/split bit-identical to the two-modality dataset."""

from __future__ import annotations

import math

import pytest
import torch

from curatorch.data import (
    PROFILE_GAIN_RANGE,
    MultimodalSplits,
    coloured_gray_digits,
    coloured_gray_profile_digits,
    projection_profiles,
)


@pytest.fixture(scope="module")
def three() -> MultimodalSplits:
    return coloured_gray_profile_digits(seed=3)


def _gain(profile: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """Per-example gain ``[N]`` fitted to ``profile [N, 16] ~ gain * proj [N, 16]``."""
    return profile.double().sum(1) / proj.sum(1)


def test_shapes_classes_and_modalities(three: MultimodalSplits) -> None:
    for split in (three.train, three.test):
        assert split.modalities == ("gray", "colour", "profile")
        assert split.input_shapes() == {"gray": (1, 8, 8), "colour": (3, 8, 8), "profile": (1, 16)}
        assert split.inputs["profile"].dtype == torch.float32
        assert split.num_classes == 10
    assert len(three.train) + len(three.test) == 1797


def test_gray_colour_and_split_are_the_two_modality_datasets() -> None:
    kw = {"seed": 5, "test_fraction": 0.25, "colour_variance": 0.01}
    two, three = coloured_gray_digits(**kw), coloured_gray_profile_digits(**kw, profile_noise=0.1)
    for a, b in ((two.train, three.train), (two.test, three.test)):
        assert torch.equal(a.labels, b.labels)
        for m in ("gray", "colour"):
            assert torch.equal(a.inputs[m], b.inputs[m])


def test_deterministic_in_seed() -> None:
    a, b = coloured_gray_profile_digits(seed=1), coloured_gray_profile_digits(seed=1)
    c = coloured_gray_profile_digits(seed=2)
    assert torch.equal(a.train.inputs["profile"], b.train.inputs["profile"])
    assert torch.equal(a.test.inputs["profile"], b.test.inputs["profile"])
    assert not torch.equal(a.test.labels, c.test.labels)


def test_projection_profiles_are_row_then_column_means() -> None:
    img = torch.zeros(1, 8, 8)
    img[0, 2, :] = 1.0  # a full row 2
    img[0, :, 5] += 0.5  # half ink down column 5
    proj = projection_profiles(img)[0]
    rows, cols = proj[:8], proj[8:]
    assert proj.shape == (16,) and proj.dtype == torch.float64
    assert rows[2] == pytest.approx(1.0 + 0.5 / 8) and rows[0] == pytest.approx(0.5 / 8)
    assert cols[5] == pytest.approx(0.5 + 1 / 8) and cols[0] == pytest.approx(1 / 8)
    with pytest.raises(ValueError, match="images"):
        projection_profiles(torch.zeros(2, 1, 8, 8))


def test_noiseless_profile_is_gain_times_projections() -> None:
    s = coloured_gray_profile_digits(seed=0, profile_noise=0.0)
    lo, hi = PROFILE_GAIN_RANGE
    for split in (s.train, s.test):
        proj = projection_profiles(split.inputs["gray"][:, 0])  # [N, 16]
        profile = split.inputs["profile"][:, 0].double()  # [N, 16]
        gain = _gain(profile, proj)
        # one gain per example explains all 16 entries, up to float32 rounding
        torch.testing.assert_close(profile, gain[:, None] * proj, rtol=1e-6, atol=1e-7)
        assert lo <= float(gain.min()) and float(gain.max()) <= hi
        # uniform on [0.7, 1.3]: mean 1, std 0.6 / sqrt(12)
        assert float(gain.mean()) == pytest.approx(1.0, abs=0.03)
        assert float(gain.std()) == pytest.approx(0.6 / math.sqrt(12), rel=0.1)


def test_profile_noise_is_gaussian_with_that_std_in_train_and_test() -> None:
    clean = coloured_gray_profile_digits(seed=0, profile_noise=0.0)
    noisy = coloured_gray_profile_digits(seed=0, profile_noise=0.05)  # the default
    for a, b in ((clean.train, noisy.train), (clean.test, noisy.test)):
        diff = (b.inputs["profile"] - a.inputs["profile"]).double()  # same gains, only noise
        assert float(diff.mean()) == pytest.approx(0.0, abs=0.003)
        assert float(diff.std()) == pytest.approx(0.05, rel=0.05)
    default = coloured_gray_profile_digits(seed=0)
    assert torch.equal(default.test.inputs["profile"], noisy.test.inputs["profile"])


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_profile_noise_is_validated(bad: float) -> None:
    with pytest.raises(ValueError, match="profile_noise"):
        coloured_gray_profile_digits(profile_noise=bad)
