"""The image conversions of :mod:`curatorch.data.images` against their definitions."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from curatorch.data import (
    float_images,
    pil_to_tensor,
    quantize_,
    tensor_to_pil,
    to_channels_last,
)


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (5, 3, 7, 6), dtype=torch.uint8, generator=g)


def test_float_images_is_x_over_127_5_minus_1(images: torch.Tensor) -> None:
    x = float_images(images)
    assert x.dtype == torch.float32 and x.shape == images.shape
    want = images.to(torch.float32) * (1.0 / 127.5) - 1.0
    assert torch.equal(x, want)
    assert x.min() >= -1.0 and x.max() <= 1.0
    with pytest.raises(ValueError, match="uint8"):
        float_images(images.float())


def test_quantize_rounds_half_to_even_and_clamps() -> None:
    x = torch.tensor([-3.0, 0.5, 1.5, 2.49, 254.5, 255.4, 300.0])
    assert quantize_(x.clone()).tolist() == [0, 0, 2, 2, 254, 255, 255]
    assert quantize_(torch.tensor([-5, 7, 256], dtype=torch.int16)).tolist() == [0, 7, 255]
    with pytest.raises(ValueError, match="pixels"):
        quantize_(torch.tensor([True]))


def test_pil_round_trip_is_exact(images: torch.Tensor) -> None:
    for image in images:
        pil = tensor_to_pil(image)
        assert (pil.mode, pil.size) == ("RGB", (6, 7))
        assert np.array_equal(np.asarray(pil), image.permute(1, 2, 0).numpy())
        back = pil_to_tensor(pil)
        assert back.dtype == torch.uint8 and back.is_contiguous() and torch.equal(back, image)
        buf = io.BytesIO()
        pil.save(buf, format="PNG")
        with Image.open(io.BytesIO(buf.getvalue())) as decoded:
            assert torch.equal(pil_to_tensor(decoded.convert("RGB")), image)
    with pytest.raises(ValueError, match="RGB"):
        pil_to_tensor(tensor_to_pil(images[0]).convert("L"))


def test_channels_last(images: torch.Tensor) -> None:
    assert np.array_equal(to_channels_last(images), images.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(to_channels_last(images[0]), images[0].permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        to_channels_last(images[:, :2])
