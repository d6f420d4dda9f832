import numpy as np
import pytest
import torch

from curatorch.data import NOISE_KINDS, PAD_ID, UNK_ID, DataConfig, build_world
from curatorch.data.digits import DIGIT_NAMES, build_digits_pools, digits_splits

CFG = DataConfig(world="digits", raw_size=2000, eval_size=300, retrieval_size=100,
                 probe_shots=4, seed=3)  # fmt: skip
CODE = {k: i for i, k in enumerate(NOISE_KINDS)}


@pytest.fixture(scope="module")
def world():
    return build_world(CFG)


@pytest.fixture(scope="module")
def pools():
    return build_digits_pools(CFG)


def test_shapes_sizes_and_classes(world):
    assert world.num_classes == 10
    assert world.eval.class_names == list(DIGIT_NAMES)
    assert tuple(world.raw.images.shape) == (2000, 3, 16, 16)
    assert world.raw.images.dtype == torch.uint8
    assert len(world.curated) == 100 and len(world.eval.classify) == 300
    assert len(world.eval.retrieval) == 100
    assert (torch.bincount(world.eval.probe_train.labels, minlength=10) == 4).all()
    counts = torch.bincount(world.eval.classify.labels, minlength=10)
    assert counts.max() - counts.min() <= 1
    # gray (except degraded images, whose noise is coloured): the three channels are equal
    gray = world.raw.images[world.raw.noise != CODE["degraded"]]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    ids = torch.cat([world.raw.ids, world.curated.ids, world.eval.classify.ids,
                     world.eval.probe_train.ids, world.eval.retrieval.ids])  # fmt: skip
    assert ids.unique().numel() == ids.numel()


def test_noise_counts_and_clean_eval(world):
    counts = world.raw.noise_counts()
    for k in NOISE_KINDS[1:]:
        assert counts[k] == round(getattr(CFG, k) * 2000)
    for ds in (world.curated, world.eval.classify, world.eval.probe_train, world.eval.retrieval):
        assert (ds.noise == 0).all()


def test_deterministic(world):
    again = build_world(CFG)
    assert torch.equal(again.raw.images, world.raw.images)
    assert torch.equal(again.raw.tokens, world.raw.tokens)
    other = build_world(DataConfig(**{**CFG.__dict__, "seed": 4}))
    assert not torch.equal(other.raw.images, world.raw.images)


def test_eval_digits_are_never_trained_on(pools):
    split = digits_splits(CFG.seed)
    train, probe, test = (set(split[k].tolist()) for k in ("train", "probe", "test"))
    assert not (train & probe) and not (train & test) and not (probe & test)
    assert len(train | probe | test) == 1797
    assert set(pools["raw"].source.tolist()) <= train
    assert set(pools["curated"].source.tolist()) <= train
    assert set(pools["probe"].source.tolist()) <= probe
    assert set(pools["classify"].source.tolist()) <= test
    assert set(pools["retrieval"].source.tolist()) <= test


def _named_digit(caption):
    words = caption.split(" ")
    found = {d for d, name in enumerate(DIGIT_NAMES) if name in words}
    found |= {int(w) for w in words if w.isdigit()}
    return found


def test_captions_name_the_right_or_wrong_digit(world, pools):
    p = pools["raw"]
    noise = world.raw.noise.numpy()
    labels = world.raw.labels.numpy()
    caps = world.raw.captions()
    for i, cap in enumerate(caps):
        if noise[i] in (CODE["clean"], CODE["degraded"]):
            assert _named_digit(cap) == {labels[i]}, cap
        elif noise[i] == CODE["near_miss"]:
            assert _named_digit(cap) == {p.caption_digit[i]} and p.caption_digit[i] != labels[i]
        elif noise[i] == CODE["misaligned"]:
            j = p.caption_source[i]
            assert j != i and _named_digit(cap) == {labels[j]}
        else:
            assert p.caption_digit[i] == -1 and p.caption_source[i] == -1


def test_tokens_and_prompts(world):
    tok = world.tokenizer
    assert not (world.raw.tokens == UNK_ID).any()
    assert torch.equal(tok.encode(world.raw.captions()), world.raw.tokens)
    ids = tok.encode([p for row in world.eval.prompts() for p in row])
    assert not (ids == UNK_ID).any()
    assert ((ids != PAD_ID).sum(1) <= tok.context_length).all()


def test_raw_pool_is_not_mere_duplicates(world, pools):
    src = pools["raw"].source
    _, first = np.unique(src, return_index=True)
    dup = np.setdiff1d(np.arange(len(src)), first)
    i = dup[0]
    j = first[np.searchsorted(np.unique(src), src[i])]
    assert src[i] == src[j]
    # the same original rendered twice usually differs (shift / intensity / noise)
    assert not torch.equal(world.raw.images[i], world.raw.images[j])


def test_digits_32px():
    w = build_world(DataConfig(world="digits", image_size=32, raw_size=50, eval_size=20,
                               retrieval_size=10, probe_shots=1))  # fmt: skip
    assert tuple(w.raw.images.shape) == (50, 3, 32, 32)
