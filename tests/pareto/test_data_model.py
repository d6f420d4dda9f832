"""Coloured-and-gray digits, the .npz dataset and the multimodal classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from curatorch.data import (
    DIGIT_COLOURS,
    MultimodalDataset,
    coloured_gray_digits,
    load_npz_dataset,
    save_npz_dataset,
)
from curatorch.models import MultimodalClassifier, MultimodalClassifierConfig


def test_coloured_gray_digits_properties() -> None:
    s = coloured_gray_digits(seed=0)
    assert s.train.input_shapes() == {"gray": (1, 8, 8), "colour": (3, 8, 8)}
    assert len(s.train) + len(s.test) == 1797
    # the coloured modality is the gray digit times one RGB colour per example
    for split in (s.train, s.test):
        g, c = split.inputs["gray"], split.inputs["colour"]
        peak = g.flatten(1).argmax(1)
        colour = (
            c.flatten(2)[torch.arange(len(split)), :, peak] / g.flatten(1).max(1).values[:, None]
        )
        torch.testing.assert_close(c, g * colour[:, :, None, None], rtol=1e-5, atol=1e-6)
        if split is s.train:  # class mean colour + jitter of variance 0.03 (clipped)
            resid = colour - torch.tensor(DIGIT_COLOURS)[split.labels]
            unclipped = ((colour > 0.01) & (colour < 0.99)).all(1)
            var = resid[unclipped].var().item()
            assert 0.015 < var < 0.04
        else:  # random colour at test: unrelated to the class
            resid = colour - torch.tensor(DIGIT_COLOURS)[split.labels]
            assert resid.var().item() > 0.06
    again = coloured_gray_digits(seed=0)
    assert torch.equal(again.test.inputs["colour"], s.test.inputs["colour"])
    with pytest.raises(ValueError, match="test_fraction"):
        coloured_gray_digits(test_fraction=1.0)


def test_npz_round_trip_and_errors(tmp_path: Path) -> None:
    ds = MultimodalDataset(
        inputs={"audio": torch.randn(6, 10), "video": torch.randn(6, 3, 2, 2)},
        labels=torch.tensor([0, 1, 2, 0, 1, 2]),
        num_classes=3,
    )
    f = tmp_path / "d.npz"
    save_npz_dataset(f, ds)
    back = load_npz_dataset(f)
    assert back.modalities == ("audio", "video") and back.num_classes == 3
    torch.testing.assert_close(back.inputs["video"], ds.inputs["video"])
    with pytest.raises(ValueError, match="no label array"):
        load_npz_dataset(f, label_key="y")
    np.savez(tmp_path / "bad.npz", a=np.zeros((5, 2)), labels=np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError, match=r"inputs\['a'\]"):
        load_npz_dataset(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_npz_dataset(tmp_path / "missing.npz")


@pytest.mark.parametrize("encoder", ["mlp", "conv"])
def test_classifier_shapes_and_groups(encoder: str) -> None:
    cfg = MultimodalClassifierConfig(
        modalities=("gray", "colour"),
        input_shapes=((1, 8, 8), (3, 8, 8)),
        num_classes=10,
        encoder=encoder,
        hidden=8,
        embed_dim=4,
    )
    model = MultimodalClassifier(cfg)
    out = model({"gray": torch.rand(5, 1, 8, 8), "colour": torch.rand(5, 3, 8, 8)})
    assert out["logits"].shape == (5, 10)
    assert {k: v.shape for k, v in out["unimodal_logits"].items()} == {
        "gray": (5, 10),
        "colour": (5, 10),
    }
    groups = [*model.encoder_parameters().values(), model.head_parameters()]
    ids = [id(p) for g in groups for p in g]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    with pytest.raises(ValueError, match="encoder"):
        MultimodalClassifierConfig(
            modalities=("a",), input_shapes=((2,),), num_classes=3, encoder="vit"
        )
