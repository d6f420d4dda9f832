"""The "digits" world: real handwritten digits with templated captions.

Images are scikit-learn's bundled 8x8 handwritten digits (``load_digits``; 1,797
scans, shipped with the package, nothing is downloaded), upsampled bilinearly to
``image_size``, drawn as gray ink on a dark gray background and replicated to RGB.
Every example gets a random shift of up to ``image_size // 16`` pixels, an ink and
background intensity jitter and mild pixel noise, so a raw pool larger than the
originals is not mere duplicates.

The originals are split per class, seeded by ``cfg.seed`` only, into disjoint parts:
50 % train (raw and curated pools), 15 % probe (few-shot probe train set) and 35 % test
(classification and retrieval eval sets). Eval digits are never trained on.

Classes are the ten digits; captions come from templates such as
``"a handwritten seven"``, ``"the digit 7"``, ``"7 , written by hand"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from curatorch.data._common import (
    POOL_ID_OFFSET,
    apply_boilerplate,
    apply_degraded,
    noise_rows,
    sklearn_digits,
    stream_rng,
    world_from_pools,
    zipf_probs,
)
from curatorch.data._phrases import PhraseBook, assemble_tokens
from curatorch.data.config import DataConfig
from curatorch.data.dataset import PairDataset, World
from curatorch.data.images import quantize_
from curatorch.data.noise import Boilerplate, assign_noise, misaligned_sources
from curatorch.data.tokenizer import WordTokenizer

__all__ = [
    "DIGIT_NAMES",
    "DIGIT_PROMPT_TEMPLATES",
    "DigitsPool",
    "build_digits_world",
    "digits_splits",
    "digits_tokenizer",
]

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_PROMPT_TEMPLATES = [
    "{}",
    "a {}",
    "the digit {}",
    "the number {}",
    "a handwritten {}",
    "handwritten digit {}",
    "a photo of the digit {}",
]
# "{w}" is the digit's word, "{n}" its numeral.
_TEMPLATES = (
    "a handwritten {w}",
    "the digit {n}",
    "handwritten number {w}",
    "a scanned {n}",
    "{n} , written by hand",
    "the number {w}",
    "digit {n}",
    "{w} , written by hand",
    "handwritten digit {n}",
    "scan of a handwritten {w}",
    "{w}",
    "a photo of the digit {w}",
    "number {n} , handwritten",
    "an image of a handwritten {n}",
    "handwriting : {w}",
)
_SPLIT = (0.5, 0.15)  # train, probe; the rest is test
_N_NOISE = 512
_NOISE_STD = 5.0
_CHUNK = 16384
_STREAM_SPLIT, _STREAM_CLASS_ORDER, _STREAM_RAW, _STREAM_CURATED = 10, 11, 12, 13
_STREAM_CLASSIFY, _STREAM_PROBE, _STREAM_RETRIEVAL, _STREAM_BANKS = 14, 15, 16, 17
_SALT = 0xD161  # this world's random streams (see stream_rng)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return stream_rng(seed, stream, _SALT)


def digits_splits(seed: int) -> dict[str, np.ndarray]:
    """Disjoint per-class split of the original digits: ``"train"``, ``"probe"``, ``"test"``.

    Each value is a sorted ``[m]`` int64 array of indices into ``load_digits()``.
    """
    _, labels = sklearn_digits()
    rng = _rng(seed, _STREAM_SPLIT)
    parts: dict[str, list[np.ndarray]] = {"train": [], "probe": [], "test": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a = round(_SPLIT[0] * idx.size)
        b = a + round(_SPLIT[1] * idx.size)
        parts["train"].append(idx[:a])
        parts["probe"].append(idx[a:b])
        parts["test"].append(idx[b:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


class _Grammar:
    def __init__(self) -> None:
        book = PhraseBook()
        self.words = book.table([(w,) for w in DIGIT_NAMES])
        self.numerals = book.table([(str(d),) for d in range(10)])
        # each template: list of phrase ids; -1 = word slot, -2 = numeral slot
        self.templates: list[list[int]] = []
        lengths = []
        for t in _TEMPLATES:
            row, length = [], 0
            for piece in t.split(" "):
                if piece == "{w}":
                    row.append(-1)
                    length += self.words.max_len
                elif piece == "{n}":
                    row.append(-2)
                    length += self.numerals.max_len
                else:
                    pid = book.add(piece)
                    row.append(pid)
                    length += book.length(pid)
            self.templates.append(row)
            lengths.append(length)
        self.boilerplate = Boilerplate(book)
        self.width = max(max(len(r) for r in self.templates), self.boilerplate.width)
        self.context_length = max(max(lengths), self.boilerplate.max_len)
        for text in [*DIGIT_NAMES, *DIGIT_PROMPT_TEMPLATES]:
            book.add(text.replace("{}", ""))
        self.tokenizer = WordTokenizer(book.words(), self.context_length)
        self.token_table = book.token_table(self.tokenizer)

    def phrase_ids(self, digit: np.ndarray, template: np.ndarray) -> np.ndarray:
        n = digit.shape[0]
        out = np.zeros((n, self.width), dtype=np.int64)
        zero = np.zeros(n, dtype=np.int64)
        word = self.words.pick(digit, zero)
        numeral = self.numerals.pick(digit, zero)
        for t, row in enumerate(self.templates):
            rows = np.flatnonzero(template == t)
            for j, pid in enumerate(row):
                out[rows, j] = word[rows] if pid == -1 else numeral[rows] if pid == -2 else pid
        return out


@lru_cache(maxsize=1)
def _grammar() -> _Grammar:
    return _Grammar()


def digits_tokenizer() -> WordTokenizer:
    """The tokenizer of the digits world (same for every config)."""
    return _grammar().tokenizer


@lru_cache(maxsize=4)
def _upsampled(image_size: int) -> torch.Tensor:
    """``[1797, H, W]`` float32 ink of every original, bilinearly upsampled."""
    images, _ = sklearn_digits()
    x = torch.from_numpy(images.copy()).unsqueeze(1)  # the shared arrays are read-only
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.squeeze(1).clamp_(0.0, 1.0)


@lru_cache(maxsize=4)
def _noise_bank(image_size: int) -> torch.Tensor:
    rng = _rng(0, _STREAM_BANKS)
    noise = rng.normal(0.0, _NOISE_STD, size=(_N_NOISE, 1, image_size, image_size))
    return torch.from_numpy(np.clip(np.round(noise), -15, 15).astype(np.float32))


def _render(
    source: np.ndarray,
    shift: np.ndarray,
    ink: np.ndarray,
    bg: np.ndarray,
    noise_idx: np.ndarray,
    image_size: int,
) -> torch.Tensor:
    """``[n, 3, H, W]`` uint8 gray images of the originals ``source``, shifted by ``shift``."""
    base = _upsampled(image_size)
    bank = _noise_bank(image_size)
    k = max(1, image_size // 16)
    padded = F.pad(base, (k, k, k, k))  # [M, H + 2k, W + 2k]
    n = source.shape[0]
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    ar = torch.arange(image_size)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        src = torch.from_numpy(source[s:e])
        sh = torch.from_numpy(shift[s:e])
        rows = (ar[None, :] + k - sh[:, 1:2])[:, :, None]  # [m, H, 1]
        cols = (ar[None, :] + k - sh[:, 0:1])[:, None, :]  # [m, 1, W]
        v = padded[src[:, None, None], rows, cols]  # [m, H, W]
        b = torch.from_numpy(bg[s:e])[:, None, None]
        i = torch.from_numpy(ink[s:e])[:, None, None]
        img = (b + (i - b) * v).unsqueeze(1) + bank[torch.from_numpy(noise_idx[s:e])]
        out[s:e] = quantize_(img).expand(-1, 3, -1, -1)
    return out


@dataclass
class DigitsPool:
    """A generated digits pool with the generator's ground truth.

    Attributes:
        dataset: the pairs.
        source: ``[N]`` int64 index of each image's original in ``load_digits()``.
        caption_digit: ``[N]`` int64 digit the caption names; -1 for boilerplate.
        caption_source: ``[N]`` int64 position of the image the caption was written for:
            itself, another example for misaligned, -1 for boilerplate.
    """

    dataset: PairDataset
    source: np.ndarray
    caption_digit: np.ndarray
    caption_source: np.ndarray


def generate_digits_pool(
    n: int,
    *,
    originals: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
    id_offset: int = 0,
    class_p: np.ndarray | None = None,
    per_class: int | None = None,
    noise_fractions: dict[str, float] | None = None,
) -> DigitsPool:
    """Generate ``n`` digits examples drawn from the originals ``originals``.

    Args:
        n: number of examples (ignored when ``per_class`` is given).
        originals: ``[m]`` indices into ``load_digits()`` the images may use.
        image_size: 16 or 32 pixels.
        rng: the pool's own random stream.
        id_offset: first example id.
        class_p: ``[10]`` digit probabilities; ``None`` = exactly balanced classes
            (counts differ by at most one).
        per_class: if given, exactly ``per_class`` examples of each digit.
        noise_fractions: noise kind -> fraction; ``None`` = all clean.
    """
    _, labels = sklearn_digits()
    if per_class is not None:
        n = 10 * per_class
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    by_class = [originals[labels[originals] == c] for c in range(10)]
    if class_p is None:
        digit = rng.permutation(np.arange(n, dtype=np.int64) % 10)
    else:
        digit = rng.choice(10, size=n, p=class_p).astype(np.int64)
    counts = np.array([b.size for b in by_class])
    if (counts == 0).any():
        raise ValueError("every class needs at least one original digit")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    flat = np.concatenate(by_class)
    source = flat[starts[digit] + (rng.random(n) * counts[digit]).astype(np.int64)]
    k = max(1, image_size // 16)
    shift = rng.integers(-k, k + 1, size=(n, 2))
    ink = rng.uniform(190.0, 255.0, n).astype(np.float32)
    bg = rng.uniform(0.0, 60.0, n).astype(np.float32)
    noise_idx = rng.integers(0, _N_NOISE, n)
    g = _grammar()
    template = rng.integers(0, len(_TEMPLATES), n)
    cap_digit = digit.copy()
    noise = assign_noise(n, noise_fractions, rng) if noise_fractions else np.zeros(n, np.int64)
    caption_source = np.arange(n, dtype=np.int64)
    mis = noise_rows(noise, "misaligned")
    src = misaligned_sources(mis, n, rng)
    cap_digit[mis] = digit[src]
    template[mis] = template[src]
    caption_source[mis] = src
    near = noise_rows(noise, "near_miss")
    cap_digit[near] = (cap_digit[near] + 1 + rng.integers(0, 9, near.size)) % 10
    phrase_ids = g.phrase_ids(cap_digit, template)
    boiler = apply_boilerplate(phrase_ids, noise, g.boilerplate, rng)
    cap_digit[boiler] = -1
    caption_source[boiler] = -1

    images = _render(source, shift, ink, bg, noise_idx, image_size)
    apply_degraded(images, noise, rng)
    dataset = PairDataset(
        images=images,
        tokens=assemble_tokens(phrase_ids, g.token_table, g.context_length),
        ids=torch.arange(n, dtype=torch.int64) + id_offset,
        noise=torch.from_numpy(noise.astype(np.int64)),
        labels=torch.from_numpy(digit),
        tokenizer=g.tokenizer,
    )
    return DigitsPool(
        dataset=dataset, source=source, caption_digit=cap_digit, caption_source=caption_source
    )


def build_digits_pools(cfg: DataConfig) -> dict[str, DigitsPool]:
    """All pools of a digits world: ``"raw"``, ``"curated"``, ``"classify"``, ``"probe"``,
    ``"retrieval"``."""
    split = digits_splits(cfg.seed)
    class_p = zipf_probs(10, cfg.zipf_exponent, _rng(cfg.seed, _STREAM_CLASS_ORDER))
    size = cfg.image_size
    return {
        "raw": generate_digits_pool(
            cfg.raw_size, originals=split["train"], image_size=size,
            rng=_rng(cfg.seed, _STREAM_RAW), id_offset=POOL_ID_OFFSET["raw"], class_p=class_p,
            noise_fractions=cfg.noise_fractions(),
        ),
        "curated": generate_digits_pool(
            cfg.curated_size, originals=split["train"], image_size=size,
            rng=_rng(cfg.seed, _STREAM_CURATED), id_offset=POOL_ID_OFFSET["curated"],
        ),
        "classify": generate_digits_pool(
            cfg.eval_size, originals=split["test"], image_size=size,
            rng=_rng(cfg.seed, _STREAM_CLASSIFY), id_offset=POOL_ID_OFFSET["classify"],
        ),
        "probe": generate_digits_pool(
            0, originals=split["probe"], image_size=size, rng=_rng(cfg.seed, _STREAM_PROBE),
            id_offset=POOL_ID_OFFSET["probe"], per_class=cfg.probe_shots,
        ),
        "retrieval": generate_digits_pool(
            cfg.retrieval_size, originals=split["test"], image_size=size,
            rng=_rng(cfg.seed, _STREAM_RETRIEVAL), id_offset=POOL_ID_OFFSET["retrieval"],
            class_p=np.full(10, 0.1),
        ),
    }  # fmt: skip


def build_digits_world(cfg: DataConfig) -> World:
    """Build the digits world described by ``cfg`` (validated first)."""
    cfg.validate()
    pools = build_digits_pools(cfg)
    return world_from_pools(
        {name: pool.dataset for name, pool in pools.items()},
        tokenizer=digits_tokenizer(),
        class_names=DIGIT_NAMES,
        prompt_templates=DIGIT_PROMPT_TEMPLATES,
    )
