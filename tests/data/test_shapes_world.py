import numpy as np
import pytest
import torch

from curatorch.data import NOISE_KINDS, PAD_ID, UNK_ID, DataConfig, build_world
from curatorch.data.shapes import (
    _COLOUR_SYN,
    _JITTER,
    _SHAPE_SYN,
    COLOURS,
    PALETTE,
    SHAPES,
    build_shapes_pools,
    mask_bank,
    shape_mask,
)
from curatorch.data.shapes import _object_geometry as object_geometry

CFG = DataConfig(raw_size=3000, eval_size=500, retrieval_size=300, probe_shots=3, seed=7)
NUM_CLASSES = len(COLOURS) * len(SHAPES)
CODE = {k: i for i, k in enumerate(NOISE_KINDS)}


@pytest.fixture(scope="module")
def pools():
    return build_shapes_pools(CFG)


@pytest.fixture(scope="module")
def world():
    return build_world(CFG)


def _datasets(world):
    return {
        "raw": world.raw,
        "curated": world.curated,
        "classify": world.eval.classify,
        "probe": world.eval.probe_train,
        "retrieval": world.eval.retrieval,
    }


def _assert_same(a, b):
    for name in ("images", "tokens", "ids", "noise", "labels"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_world_matches_pools(world, pools):
    for name, ds in _datasets(world).items():
        _assert_same(ds, pools[name].dataset)


def test_shapes_and_dtypes(world):
    assert world.num_classes == NUM_CLASSES == len(world.eval.class_names)
    assert world.eval.class_names[0] == "red circle"
    L = world.tokenizer.context_length
    assert 20 <= L <= 24
    for name, ds in _datasets(world).items():
        n = len(ds)
        assert ds.images.dtype == torch.uint8 and tuple(ds.images.shape) == (n, 3, 16, 16), name
        assert ds.tokens.dtype == torch.int64 and tuple(ds.tokens.shape) == (n, L)
        for t in (ds.ids, ds.noise, ds.labels):
            assert t.dtype == torch.int64 and tuple(t.shape) == (n,)
        assert int(ds.labels.min()) >= 0 and int(ds.labels.max()) < NUM_CLASSES
        assert ds.tokenizer is world.tokenizer
    assert len(world.raw) == 3000 and len(world.curated) == 150
    assert len(world.eval.classify) == 500 and len(world.eval.retrieval) == 300
    assert len(world.eval.probe_train) == 3 * NUM_CLASSES


def test_deterministic_and_seed_dependent(world):
    again = build_world(CFG)
    for name, ds in _datasets(world).items():
        _assert_same(ds, _datasets(again)[name])
    other = build_world(DataConfig(**{**CFG.__dict__, "seed": 8}))
    assert not torch.equal(other.raw.images, world.raw.images)
    assert not torch.equal(other.raw.tokens, world.raw.tokens)
    assert not torch.equal(other.eval.classify.images, world.eval.classify.images)


def test_eval_sets_do_not_depend_on_pool_size_or_noise(world):
    small = build_world(
        DataConfig(**{**CFG.__dict__, "raw_size": 400, "misaligned": 0.0, "zipf_exponent": 2.0})
    )
    for a, b in (
        (world.eval.classify, small.eval.classify),
        (world.eval.probe_train, small.eval.probe_train),
        (world.eval.retrieval, small.eval.retrieval),
    ):
        _assert_same(a, b)


def test_ids_unique_and_disjoint(world):
    ids = torch.cat([ds.ids for ds in _datasets(world).values()])
    assert ids.unique().numel() == ids.numel()
    assert torch.equal(world.raw.ids, torch.arange(3000))


def test_exact_noise_counts(world):
    counts = world.raw.noise_counts()
    n = CFG.raw_size
    expected = {k: round(getattr(CFG, k) * n) for k in NOISE_KINDS[1:]}
    for k, v in expected.items():
        assert counts[k] == v, k
    assert counts["clean"] == n - sum(expected.values())


def test_noise_positions_are_random(world):
    # not a block at the start or the end of the pool
    mis = torch.nonzero(world.raw.noise == CODE["misaligned"]).flatten().float()
    assert 0.4 * 3000 < mis.mean() < 0.6 * 3000


def test_curated_pool_is_clean_and_balanced(world, pools):
    cur = world.curated
    assert len(cur) == round(CFG.curated_fraction * CFG.raw_size)
    assert (cur.noise == 0).all()
    counts = torch.bincount(cur.labels, minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1
    p = pools["curated"]
    assert np.array_equal(p.caption_attributes, p.attributes)
    assert np.array_equal(p.caption_source, np.arange(len(cur)))


def test_eval_sets_clean_balanced_single_object(world, pools):
    ev = world.eval
    for ds in (ev.classify, ev.probe_train, ev.retrieval):
        assert (ds.noise == 0).all()
    counts = torch.bincount(ev.classify.labels, minlength=NUM_CLASSES)
    assert counts.max() - counts.min() <= 1
    assert (torch.bincount(ev.probe_train.labels, minlength=NUM_CLASSES) == 3).all()
    for name in ("classify", "probe"):
        assert (pools[name].attributes[:, 1] == -1).all()
    # retrieval captions are rich: mostly distinct
    caps = ev.retrieval.captions()
    assert len(set(caps)) > 0.9 * len(caps)
    assert (pools["retrieval"].attributes[:, 1, 0] >= 0).mean() > 0.3


def test_raw_pool_is_long_tailed(world):
    counts = torch.bincount(world.raw.labels, minlength=NUM_CLASSES).float()
    assert counts.max() >= 10 * max(counts.min().item(), 1.0)
    # the head: the 5 most frequent classes hold over a third of the pool (Zipf(1) over 48)
    assert counts.sort(descending=True).values[:5].sum() > 0.33 * counts.sum()


def test_labels_are_primary_colour_and_shape(pools):
    for p in pools.values():
        a = p.attributes[:, 0]
        assert np.array_equal(p.dataset.labels.numpy(), a[:, 1] * len(SHAPES) + a[:, 0])


def _words(caption):
    return caption.split(" ")


def _mentions(caption, phrases):
    text = f" {caption} "
    return any(f" {p} " in text for p in phrases)


def test_clean_captions_describe_the_image(pools):
    p = pools["raw"]
    ds = p.dataset
    clean = np.flatnonzero(ds.noise.numpy() == 0)
    assert np.array_equal(p.caption_attributes[clean], p.attributes[clean])
    caps = ds.captions(torch.from_numpy(clean))
    for i, cap in zip(clean, caps, strict=True):
        shape, colour = p.attributes[i, 0, :2]
        assert _mentions(cap, _COLOUR_SYN[colour]), cap
        assert _mentions(cap, _SHAPE_SYN[shape]), cap


def test_near_miss_changes_exactly_one_mentioned_attribute(pools):
    p = pools["raw"]
    ds = p.dataset
    near = np.flatnonzero(ds.noise.numpy() == CODE["near_miss"])
    assert near.size == round(CFG.near_miss * CFG.raw_size)
    diff = (p.caption_attributes[near] != p.attributes[near]) & p.mentioned[near]
    assert (diff.sum(axis=(1, 2)) == 1).all()
    # unmentioned attributes are never the edited one, and all four kinds get edited
    assert not ((p.caption_attributes[near] != p.attributes[near]) & ~p.mentioned[near]).any()
    assert set(np.nonzero(diff)[2].tolist()) == {0, 1, 2, 3}
    # single-object captions with a wrong colour name the wrong colour, not the true one
    caps = ds.captions(torch.from_numpy(near))
    checked = 0
    for i, cap, d in zip(near, caps, diff, strict=True):
        if p.attributes[i, 1, 0] == -1 and d[0, 1]:
            assert _mentions(cap, _COLOUR_SYN[p.caption_attributes[i, 0, 1]]), cap
            assert not _mentions(cap, _COLOUR_SYN[p.attributes[i, 0, 1]]), cap
            checked += 1
    assert checked > 5


def test_misaligned_captions_are_another_examples(pools):
    p = pools["raw"]
    noise = p.dataset.noise.numpy()
    mis = np.flatnonzero(noise == CODE["misaligned"])
    src = p.caption_source[mis]
    assert (src != mis).all() and (src >= 0).all()
    assert np.array_equal(p.caption_attributes[mis], p.attributes[src])
    tokens = p.dataset.tokens
    clean_src = noise[src] == 0
    assert clean_src.sum() > 100
    assert torch.equal(
        tokens[torch.from_numpy(mis[clean_src])], tokens[torch.from_numpy(src[clean_src])]
    )
    # mostly a different primary concept than the image's own
    labels = p.dataset.labels.numpy()
    assert (labels[src] != labels[mis]).mean() > 0.6


def test_boilerplate_captions_are_uninformative(pools):
    p = pools["raw"]
    ds = p.dataset
    boiler = np.flatnonzero(ds.noise.numpy() == CODE["boilerplate"])
    assert (p.caption_source[boiler] == -1).all()
    assert (p.caption_attributes[boiler] == -1).all()
    content = {w for syn in (*_COLOUR_SYN, *_SHAPE_SYN) for s in syn for w in s.split()}
    content.discard("plus")  # also a connector word
    caps = ds.captions(torch.from_numpy(boiler))
    for cap in caps:
        assert not set(_words(cap)) & content, cap
    assert len(set(caps)) > 20


def _roughness(images):
    x = images.float()
    return (x[..., 1:] - x[..., :-1]).abs().mean(dim=(1, 2, 3))


def test_degraded_images_are_mostly_noise(world):
    ds = world.raw
    deg = _roughness(ds.images[ds.noise == CODE["degraded"]])
    other = _roughness(ds.images[ds.noise != CODE["degraded"]])
    assert deg.min() > other.max()


def test_primary_object_is_drawn_in_its_colour(pools):
    """Real content check: the pixels under the primary mask have the primary colour."""
    p = pools["raw"]
    ds = p.dataset
    bank = mask_bank(16)
    keep = np.flatnonzero(ds.noise.numpy() != CODE["degraded"])
    masks = bank[torch.from_numpy(p.mask_index[keep, 0])]  # [m, H, W]
    assert masks.flatten(1).sum(1).min() >= 4
    img = ds.images[torch.from_numpy(keep)].float()  # [m, 3, H, W]
    area = masks.flatten(1).sum(1).float()
    mean_in = (img * masks[:, None]).sum(dim=(2, 3)) / area[:, None]  # [m, 3]
    shades = torch.tensor([0.8, 0.9, 1.0])
    refs = torch.from_numpy(PALETTE)[None, :, :] * shades[:, None, None]  # [3, C, 3]
    dist = (mean_in[:, None, None, :] - refs[None]).norm(dim=-1)  # [m, 3, C]
    nearest = dist.min(dim=1).values.argmin(dim=1)
    assert np.array_equal(nearest.numpy(), p.attributes[keep, 0, 1])
    # every object pixel is near its mean (flat colour + mild noise)
    dev = (img - mean_in[:, :, None, None]).abs().amax(dim=1)  # [m, H, W]
    assert dev[masks].max() <= 30
    # and the background is darker than the object on average
    outside = ~(masks | bank[torch.from_numpy(p.mask_index[keep, 1]).clamp(min=0)])
    mean_out = (img * outside[:, None]).sum(dim=(2, 3)) / outside.flatten(1).sum(1)[:, None]
    assert (mean_out.amax(1) < mean_in.amax(1)).all()


def test_mask_bank_matches_reference_renderer():
    """Fast path (bank lookup) vs slow twin (shape_mask per object)."""
    for size in (16, 32):
        bank = mask_bank(size)
        nj = len(_JITTER)
        assert bank.shape == (len(SHAPES) * 2 * 9 * nj * nj, size, size)
        rng = np.random.default_rng(0)
        for k in rng.choice(bank.shape[0], size=40, replace=False):
            jx, col, jy = k % nj, k // nj % 3, k // (3 * nj) % nj
            row, obj_size, shape = (
                k // (3 * nj * nj) % 3,
                k // (9 * nj * nj) % 2,
                k // (18 * nj * nj),
            )
            cx, cy, r = object_geometry(size, obj_size, row * 3 + col, jx, jy)
            ref = shape_mask(int(shape), float(cx), float(cy), float(r), size)
            assert np.array_equal(bank[k].numpy(), ref)


@pytest.mark.parametrize("size", [16, 32])
def test_shapes_are_distinct_at_every_size_and_place(size):
    """Every pair of shapes differs in at least 4 pixels (16 px) / 12 pixels (32 px)."""
    nj = len(_JITTER)
    for obj_size, pos, jx, jy in np.ndindex(2, 9, nj, nj):
        cx, cy, r = object_geometry(size, obj_size, pos, jx, jy)
        masks = [shape_mask(s, float(cx), float(cy), float(r), size) for s in range(6)]
        for a in range(6):
            assert masks[a].sum() >= 8
            for b in range(a):
                assert (masks[a] != masks[b]).sum() >= {16: 4, 32: 12}[size], (a, b)


def test_captions_round_trip_through_the_tokenizer(world):
    tok = world.tokenizer
    for ds in _datasets(world).values():
        assert not (ds.tokens == UNK_ID).any()
        caps = ds.captions()
        assert torch.equal(tok.encode(caps), ds.tokens)
        # nothing was truncated: every row ends with a pad or is exactly full
        lengths = (ds.tokens != PAD_ID).sum(1)
        assert lengths.min() >= 1
        assert torch.equal(
            ds.tokens != PAD_ID, torch.arange(tok.context_length)[None] < lengths[:, None]
        )


def test_prompts_have_no_unknown_words(world):
    tok = world.tokenizer
    prompts = [p for row in world.eval.prompts() for p in row]
    assert len(prompts) == NUM_CLASSES * len(world.eval.prompt_templates)
    assert len(world.eval.prompt_templates) >= 4
    ids = tok.encode(prompts)
    assert not (ids == UNK_ID).any()
    assert ((ids != PAD_ID).sum(1) < tok.context_length).all()
    assert all("{}" in t for t in world.eval.prompt_templates)


def test_image_batch_subset_and_captions(world):
    ds = world.raw
    idx = torch.tensor([5, 0, 17])
    x = ds.image_batch(idx)
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 3, 16, 16)
    assert x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x, ds.images[idx].float() / 127.5 - 1)
    sub = ds.subset(idx)
    assert len(sub) == 3 and torch.equal(sub.ids, idx)
    assert sub.captions() == ds.captions(idx)
    assert len(ds.subset(ds.noise == 0)) == ds.noise_counts()["clean"]


def test_32px_world():
    w = build_world(DataConfig(image_size=32, raw_size=200, eval_size=60, retrieval_size=20,
                               probe_shots=1))  # fmt: skip
    assert tuple(w.raw.images.shape) == (200, 3, 32, 32)
    assert tuple(w.eval.classify.images.shape) == (60, 3, 32, 32)
    assert w.raw.noise_counts()["misaligned"] == 70
