import re

import numpy as np
import pytest
import torch

from curatorch.data import (
    BOILERPLATE_TEMPLATES,
    NOISE_KINDS,
    PAD_ID,
    WordTokenizer,
    assign_noise,
    degrade_images,
    noise_counts,
)
from curatorch.data._phrases import PhraseBook, assemble_tokens
from curatorch.data.noise import Boilerplate, misaligned_sources

FRACTIONS = {"misaligned": 0.35, "near_miss": 0.15, "boilerplate": 0.10, "degraded": 0.10}


def test_noise_counts_are_exact_rounds():
    c = noise_counts(1001, FRACTIONS)
    assert c == {"clean": 301, "misaligned": 350, "near_miss": 150, "boilerplate": 100,
                 "degraded": 100}  # fmt: skip
    assert list(c) == list(NOISE_KINDS)


def test_noise_counts_trim_rounding_overshoot():
    c = noise_counts(3, {"misaligned": 0.5, "near_miss": 0.5})
    assert sum(c.values()) == 3 and c["clean"] == 0
    assert c["misaligned"] == 2 and c["near_miss"] == 1


def test_noise_counts_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown"):
        noise_counts(10, {"typo": 0.1})
    with pytest.raises(ValueError, match="misaligned"):
        noise_counts(10, {"misaligned": 1.5})


def test_assign_noise_exact_and_deterministic():
    a = assign_noise(500, FRACTIONS, np.random.default_rng(1))
    b = assign_noise(500, FRACTIONS, np.random.default_rng(1))
    c = assign_noise(500, FRACTIONS, np.random.default_rng(2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    counts = noise_counts(500, FRACTIONS)
    assert np.bincount(a, minlength=5).tolist() == [counts[k] for k in NOISE_KINDS]


def test_misaligned_sources_never_self():
    idx = np.arange(0, 1000, 3)
    src = misaligned_sources(idx, 1000, np.random.default_rng(0))
    assert src.shape == idx.shape and (src != idx).all()
    assert src.min() >= 0 and src.max() < 1000
    assert np.array_equal(misaligned_sources(np.array([0, 1]), 2, np.random.default_rng(0)),
                          [1, 0])  # fmt: skip
    with pytest.raises(ValueError, match="n >= 2"):
        misaligned_sources(np.array([0]), 1, np.random.default_rng(0))


def test_degrade_images():
    rng = np.random.default_rng(0)
    x = torch.full((5, 3, 8, 8), 200, dtype=torch.uint8)
    assert torch.equal(degrade_images(x, rng, strength=0.0), x)
    y = degrade_images(x, np.random.default_rng(0), strength=0.8, chunk=2)
    assert y.dtype == torch.uint8 and y.shape == x.shape
    assert (y.float() - 0.2 * 200).min() >= -0.5 and (y.float() - 40).max() <= 0.8 * 255 + 0.5
    assert y.float().std() > 40
    with pytest.raises(ValueError, match="strength"):
        degrade_images(x, rng, strength=1.5)


def test_boilerplate_captions_follow_templates():
    book = PhraseBook()
    bp = Boilerplate(book)
    tok = WordTokenizer(book.words(), bp.max_len)
    ids = assemble_tokens(bp.phrase_ids(300, np.random.default_rng(0)), book.token_table(tok),
                          tok.context_length)  # fmt: skip
    caps = tok.decode(ids)
    patterns = []
    for t in BOILERPLATE_TEMPLATES:
        words = [r"\d" if w == "#" else re.escape(w)
                 for w in re.findall(r"#|[^\W\d_]+|\d|[^\w\s]|_", t.lower())]  # fmt: skip
        patterns.append(re.compile(" ".join(words) + "$"))
    for cap in caps:
        assert any(p.match(cap) for p in patterns), cap
    assert "img _" in " ".join(caps) or len(set(caps)) > 10


def test_assemble_tokens_matches_string_encoding():
    """Fast path (phrase-id gather + compaction) vs slow twin (join strings, encode)."""
    book = PhraseBook()
    phrases = ["a", "small red", "circle", "in the upper left corner", ",", "IMG_2041.jpg"]
    pids = [book.add(p) for p in phrases]
    tok = WordTokenizer(book.words(), 9)
    rng = np.random.default_rng(0)
    rows = rng.choice([0, *pids], size=(200, 5))
    fast = assemble_tokens(rows, book.token_table(tok), 9, chunk=37)
    texts = [" ".join(phrases[pids.index(p)] for p in row if p) for row in rows]
    assert torch.equal(fast, tok.encode(texts))
    assert (fast == PAD_ID).any() and (fast != PAD_ID).all(dim=1).any()  # pads and truncation
