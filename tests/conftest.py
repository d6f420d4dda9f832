"""Shared test setup: everything seeded, the device from CURATORCH_TEST_DEVICE (default cpu)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import settings

from tests.helpers import PARETO_TINY, TINY

# property tests (tests/fuzz) draw the same examples on every run: deterministic CI, no
# example database; HYPOTHESIS_PROFILE=explore draws fresh random examples
settings.register_profile("curatorch", derandomize=True, database=None, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "curatorch"))


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def device() -> str:
    return os.environ.get("CURATORCH_TEST_DEVICE", "cpu")


@pytest.fixture
def tiny_cfg_file(tmp_path: Path) -> Path:
    """``tests.helpers.TINY`` written to a file (two-tower training, 6 steps)."""
    f = tmp_path / "tiny.toml"
    f.write_text(TINY)
    return f


@pytest.fixture
def pareto_cfg_file(tmp_path: Path) -> Path:
    """``tests.helpers.PARETO_TINY`` written to a file (multimodal classifier, 12 steps)."""
    f = tmp_path / "p.toml"
    f.write_text(PARETO_TINY)
    return f
