import os

import pytest
import torch

from curatorch.data import DataConfig, build_world
from curatorch.report import preview_grid


@pytest.fixture(scope="module")
def raw():
    return build_world(DataConfig(raw_size=64, eval_size=48, retrieval_size=8, probe_shots=1)).raw


def test_preview_writes_a_png_atomically(tmp_path, raw):
    out = tmp_path / "grid.png"
    preview_grid(raw, out, n=8, seed=1)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert os.listdir(tmp_path) == ["grid.png"]  # no temp file left behind
    few = raw.subset(torch.arange(12))  # n > len(dataset) is clamped; overwrite works
    preview_grid(few, str(out), n=200)
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_preview_rejects_bad_arguments(tmp_path, raw):
    with pytest.raises(ValueError, match="n must be"):
        preview_grid(raw, tmp_path / "x.png", n=0)
    with pytest.raises(ValueError, match="existing directory"):
        preview_grid(raw, tmp_path / "missing" / "x.png")
