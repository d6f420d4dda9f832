from __future__ import annotations

import pytest
import torch

from curatorch.models import TwoTowerConfig, get_model_config


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_cfg() -> TwoTowerConfig:
    return get_model_config("tiny", image_size=16, vocab_size=97, context_length=12)
