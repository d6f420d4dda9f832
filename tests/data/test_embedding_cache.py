from pathlib import Path

import pytest
import torch

from curatorch.data import is_embedding_cache, load_embedding_cache, save_embedding_cache


def test_round_trip_sorted_and_float16(tmp_path: Path) -> None:
    ids = torch.tensor([30, 10, 20])
    image = torch.randn(3, 4)
    text = torch.randn(3, 4)
    save_embedding_cache(
        tmp_path / "c",
        ids=ids,
        image=image,
        text=text,
        logit_scale=12.5,
        logit_bias=-9.0,
        meta={"pool": "raw"},
    )
    cache = load_embedding_cache(tmp_path / "c")
    assert cache.ids.tolist() == [10, 20, 30]
    assert cache.image.dtype == torch.float16
    assert (cache.logit_scale, cache.logit_bias, cache.meta["pool"]) == (12.5, -9.0, "raw")
    img, txt = cache.lookup(torch.tensor([30, 10]))
    torch.testing.assert_close(img, image[[0, 1]].half().float())
    torch.testing.assert_close(txt, text[[0, 1]].half().float())


def test_missing_ids_and_bad_folders_are_named(tmp_path: Path) -> None:
    save_embedding_cache(
        tmp_path / "c",
        ids=torch.arange(4),
        image=torch.zeros(4, 2),
        text=torch.zeros(4, 2),
        logit_scale=1.0,
        logit_bias=0.0,
    )
    cache = load_embedding_cache(tmp_path / "c")
    with pytest.raises(ValueError, match="no entry for 1 of 2"):
        cache.lookup(torch.tensor([2, 9]))
    with pytest.raises(ValueError, match="not a reference embedding cache"):
        load_embedding_cache(tmp_path)
    with pytest.raises(ValueError, match="unique"):
        save_embedding_cache(
            tmp_path / "d",
            ids=torch.tensor([1, 1]),
            image=torch.zeros(2, 2),
            text=torch.zeros(2, 2),
            logit_scale=1.0,
            logit_bias=0.0,
        )
    assert not (tmp_path / "d").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an embedding cache"):
        save_embedding_cache(
            other,
            ids=torch.arange(2),
            image=torch.zeros(2, 2),
            text=torch.zeros(2, 2),
            logit_scale=1.0,
            logit_bias=0.0,
        )
    assert (other / "notes.txt").read_text() == "mine"
    assert not is_embedding_cache(other)
