"""Shared test setup: everything seeded, the device from CURATORCH_TEST_DEVICE (default cpu)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> str:
    return os.environ.get("CURATORCH_TEST_DEVICE", "cpu")
