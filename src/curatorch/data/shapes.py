"""The "shapes" world: a procedural web of captioned coloured shapes.

Each RGB image shows one or two objects on a dark, desaturated background (a solid
tint plus a linear gradient and mild pixel noise). An object has a shape
(:data:`SHAPES`), a colour (:data:`COLOURS`), a size (:data:`SIZES`) and a position on
a 3x3 grid (:data:`POSITIONS`) with a little jitter. The class of an image is the
colour x shape of its *primary* object, the one mentioned first in the caption; the
primary object is drawn last, so it is never occluded.

Captions come from a small grammar with synonyms and varied word order, e.g.
``"a tiny crimson triangle in the upper left corner"``,
``"red triangle , upper left"``, ``"top left : one red triangle and a large blue
circle at the bottom"``.

Everything is vectorised: object masks are looked up in a bank of pre-rendered masks
(one per shape, size, grid cell and jitter step; :func:`shape_mask` is the slow
reference that renders one), and captions are assembled as token ids from interned
phrases (:mod:`curatorch.data._phrases`). A million 16x16 examples take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from curatorch.data._common import (
    POOL_ID_OFFSET,
    apply_boilerplate,
    apply_degraded,
    noise_rows,
    stream_rng,
    world_from_pools,
    zipf_probs,
)
from curatorch.data._phrases import PhraseBook, SynonymTable, assemble_tokens
from curatorch.data.config import DataConfig
from curatorch.data.dataset import PairDataset, World
from curatorch.data.images import quantize_
from curatorch.data.noise import Boilerplate, assign_noise, misaligned_sources
from curatorch.data.tokenizer import WordTokenizer

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "PALETTE",
    "POSITIONS",
    "PROMPT_TEMPLATES",
    "SHAPES",
    "SIZES",
    "ShapesPool",
    "build_shapes_world",
    "class_names",
    "generate_shapes_pool",
    "mask_bank",
    "shape_mask",
    "shapes_tokenizer",
    "zipf_probs",
]

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan", "orange", "white")
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
# Columns of the structured attribute arrays ``[N, 2, 4]``.
ATTRIBUTES = ("shape", "colour", "size", "position")
_CARD = (len(SHAPES), len(COLOURS), len(SIZES), len(POSITIONS))

# RGB of each colour, uint8 scale.
PALETTE = np.array(
    [
        [225, 35, 35],  # red
        [40, 200, 60],  # green
        [45, 85, 235],  # blue
        [240, 225, 40],  # yellow
        [190, 50, 210],  # purple
        [40, 215, 225],  # cyan
        [250, 140, 25],  # orange
        [245, 245, 245],  # white
    ],
    dtype=np.float32,
)

PROMPT_TEMPLATES = [
    "{}",
    "a {}",
    "a photo of a {}",
    "a picture of a {}",
    "an image of a {}",
    "one {}",
    "the {}",
    "a small {}",
    "a large {}",
]

# ---------------------------------------------------------------- grammar
_COLOUR_SYN = (
    ("red", "crimson", "scarlet"),
    ("green", "emerald", "lime"),
    ("blue", "azure", "cobalt"),
    ("yellow", "golden", "lemon"),
    ("purple", "magenta", "violet"),
    ("cyan", "turquoise", "aqua"),
    ("orange", "amber", "tangerine"),
    ("white", "ivory", "snowy"),
)
_SHAPE_SYN = (
    ("circle", "disc", "round dot"),
    ("square", "box", "block"),
    ("triangle", "wedge", "pyramid"),
    ("cross", "plus sign", "plus"),
    ("ring", "hoop", "donut"),
    ("diamond", "rhombus", "lozenge"),
)
_SIZE_SYN = (("small", "tiny", "little"), ("large", "big", "huge"))
_POS_PREP = (
    ("at the top left", "in the upper left corner", "in the top left"),
    ("at the top", "along the top edge", "in the top middle"),
    ("at the top right", "in the upper right corner", "in the top right"),
    ("on the left", "at the left side", "in the middle left"),
    ("in the center", "in the middle", "at the centre"),
    ("on the right", "at the right side", "in the middle right"),
    ("at the bottom left", "in the lower left corner", "in the bottom left"),
    ("at the bottom", "along the bottom edge", "in the bottom middle"),
    ("at the bottom right", "in the lower right corner", "in the bottom right"),
)
_POS_BARE = (
    ("top left", "upper left"),
    ("top", "top middle"),
    ("top right", "upper right"),
    ("left", "middle left"),
    ("center", "middle", "centre"),
    ("right", "middle right"),
    ("bottom left", "lower left"),
    ("bottom", "bottom middle"),
    ("bottom right", "lower right"),
)
_DET = (("a", "one", "the", ""),)  # before a size word (all start with a consonant)
_DET2 = (("", "one", "the", "a single"),)  # before a colour word
_PREFIX = ("", "photo of", "picture of", "image of", "photo :")
_PREFIX_P = (0.6, 0.1, 0.1, 0.1, 0.1)
_CONNECTORS = ("and", ", and", "with", ", plus", "alongside")
_P_TWO = 0.5  # probability of a second object in raw / curated / retrieval images

# Object-phrase templates: slot names or literal text. "size" in a template means the
# caption mentions the size (near-miss edits only mentioned attributes).
_OBJ_TEMPLATES = (
    ("det", "size", "colour", "shape", "pos_prep"),
    ("colour", "shape", ",", "pos_bare"),
    ("pos_bare", ":", "det2", "colour", "shape"),
    ("colour", "shape", "pos_prep"),
    ("size", "colour", "shape", "pos_prep"),
    ("pos_prep", ",", "size", "colour", "shape"),
)
_SLOTS = ("det", "det2", "size", "colour", "shape", "pos_prep", "pos_bare")
_SLOT_ATTR = {"size": 2, "colour": 1, "shape": 0, "pos_prep": 3, "pos_bare": 3}
_OBJ_WIDTH = max(len(t) for t in _OBJ_TEMPLATES)
_SIZE_MENTIONED = np.array(["size" in t for t in _OBJ_TEMPLATES])
_STARTS_WITH_POSITION = np.array([t[0].startswith("pos") for t in _OBJ_TEMPLATES])

# ---------------------------------------------------------------- geometry
_CELL = (0.24, 0.5, 0.76)  # cell centres, fraction of the image side
_JITTER = (-0.05, 0.0, 0.05)  # centre jitter steps, fraction of the image side
_RADIUS = (0.16, 0.22)  # small, large object radius, fraction of the image side
_N_DIRS = 8  # background gradient directions
_N_NOISE = 1024  # pixel-noise patterns in the bank
_NOISE_STD = 4.0  # pixel noise, uint8 units
_CHUNK_PIXELS = 1 << 19  # pixels per rendering chunk (cache-sized: ~3 MB of int16)

# Random-stream ids (see _rng).
_STREAM_CLASS_ORDER, _STREAM_RAW, _STREAM_CURATED = 0, 1, 2
_STREAM_CLASSIFY, _STREAM_PROBE, _STREAM_RETRIEVAL = 3, 4, 5
_STREAM_BANKS = 6
_SALT = 0x5A4E  # this world's random streams (see stream_rng)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return stream_rng(seed, stream, _SALT)


def class_names() -> list[str]:
    """``"colour shape"`` per class; class ``c`` is colour ``c // 6``, shape ``c % 6``."""
    return [f"{c} {s}" for c in COLOURS for s in SHAPES]


def num_classes() -> int:
    """Number of classes (colour x shape of the primary object): 48."""
    return len(COLOURS) * len(SHAPES)


# ---------------------------------------------------------------- rendering
def shape_mask(shape: int, cx: float, cy: float, radius: float, image_size: int) -> np.ndarray:
    """Reference rendering of one object: ``[H, W]`` bool mask.

    Args:
        shape: index into :data:`SHAPES`.
        cx, cy: centre in pixels (pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``).
        radius: object radius in pixels.
        image_size: side of the image in pixels.
    """
    c = np.arange(image_size, dtype=np.float64) + 0.5
    dx = (c[None, :] - cx) / radius
    dy = (c[:, None] - cy) / radius
    adx, ady = np.abs(dx), np.abs(dy)
    d2 = dx * dx + dy * dy
    name = SHAPES[shape]
    if name == "circle":
        return d2 <= 1.0
    if name == "square":
        return np.maximum(adx, ady) <= 0.95
    if name == "triangle":  # apex up
        return (dy >= -1.0) & (dy <= 0.75) & (adx <= (dy + 1.0) / 1.75 * 1.05)
    if name == "cross":
        return (np.minimum(adx, ady) <= 0.3) & (np.maximum(adx, ady) <= 1.0)
    if name == "ring":
        return (d2 <= 1.0) & (d2 >= 0.5**2)
    if name == "diamond":
        return adx + ady <= 1.0
    raise ValueError(f"shape must be in [0, {len(SHAPES)}), got {shape}")


def _mask_index(shape, size, pos, jx, jy) -> np.ndarray:
    """Index into :func:`mask_bank` of objects with these attributes (arrays)."""
    nj = len(_JITTER)
    row, col = pos // 3, pos % 3
    return (((((shape * 2 + size) * 3 + row) * nj + jy) * 3 + col) * nj) + jx


def _object_geometry(image_size: int, size, pos, jx, jy):
    """Centre ``(cx, cy)`` and radius in pixels (arrays or scalars)."""
    cell = np.asarray(_CELL)
    jit = np.asarray(_JITTER)
    cx = (cell[pos % 3] + jit[jx]) * image_size
    cy = (cell[pos // 3] + jit[jy]) * image_size
    r = np.asarray(_RADIUS)[size] * image_size
    return cx, cy, r


@lru_cache(maxsize=4)
def mask_bank(image_size: int) -> torch.Tensor:
    """``[K, H, W]`` bool masks of every (shape, size, row, jitter y, col, jitter x)."""
    nj = len(_JITTER)
    masks = []
    for shape in range(len(SHAPES)):
        for size in range(2):
            for row in range(3):
                for jy in range(nj):
                    for col in range(3):
                        for jx in range(nj):
                            cx, cy, r = _object_geometry(image_size, size, row * 3 + col, jx, jy)
                            masks.append(shape_mask(shape, cx, cy, r, image_size))
    return torch.from_numpy(np.stack(masks))


@lru_cache(maxsize=4)
def _backdrop_banks(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ramps ``[D, H, W]`` float32 in [-1, 1], pixel noise ``[K, 3, H, W]`` int16."""
    c = (np.arange(image_size) + 0.5) / image_size * 2.0 - 1.0
    ang = np.arange(_N_DIRS) * (2 * np.pi / _N_DIRS)
    ramps = (np.cos(ang)[:, None, None] * c[None, None, :] + np.sin(ang)[:, None, None]
             * c[None, :, None]) / np.sqrt(2.0)  # fmt: skip
    rng = _rng(0, _STREAM_BANKS)
    noise = rng.normal(0.0, _NOISE_STD, size=(_N_NOISE, 3, image_size, image_size))
    noise = np.clip(np.round(noise), -3 * _NOISE_STD, 3 * _NOISE_STD)
    return (
        torch.from_numpy(ramps.astype(np.float32)),
        torch.from_numpy(noise.astype(np.int16)),
    )


@dataclass
class _Scene:
    """Structured content of n images (numpy, one row per example)."""

    attrs: np.ndarray  # [n, 2, 4] int64 (shape, colour, size, position), -1 = no object
    jitter: np.ndarray  # [n, 2, 2] int64 (jx, jy)
    shade: np.ndarray  # [n, 2] float32 brightness factor of each object
    bg_base: np.ndarray  # [n, 3] float32
    bg_amp: np.ndarray  # [n] float32
    bg_dir: np.ndarray  # [n] int64
    noise_idx: np.ndarray  # [n] int64


def _sample_scene(
    n: int, rng: np.random.Generator, primary: np.ndarray, class_p: np.ndarray | None,
    p_two: float,
) -> _Scene:  # fmt: skip
    nc = num_classes()
    second = rng.choice(nc, size=n, p=class_p) if class_p is not None else rng.integers(0, nc, n)
    two = rng.random(n) < p_two
    attrs = np.full((n, 2, 4), -1, dtype=np.int64)
    attrs[:, 0, 0] = primary % len(SHAPES)
    attrs[:, 0, 1] = primary // len(SHAPES)
    attrs[:, 0, 2] = rng.integers(0, 2, n)
    attrs[:, 0, 3] = rng.integers(0, 9, n)
    size2 = rng.integers(0, 2, n)
    pos2 = (attrs[:, 0, 3] + 1 + rng.integers(0, 8, n)) % 9  # a different cell
    attrs[two, 1, 0] = (second % len(SHAPES))[two]
    attrs[two, 1, 1] = (second // len(SHAPES))[two]
    attrs[two, 1, 2] = size2[two]
    attrs[two, 1, 3] = pos2[two]
    jitter = rng.integers(0, len(_JITTER), size=(n, 2, 2))
    shade = rng.uniform(0.8, 1.0, size=(n, 2)).astype(np.float32)
    gray = rng.uniform(15.0, 85.0, size=(n, 1))
    tint = rng.uniform(-12.0, 12.0, size=(n, 3))
    return _Scene(
        attrs=attrs,
        jitter=jitter,
        shade=shade,
        bg_base=(gray + tint).astype(np.float32),
        bg_amp=rng.uniform(0.0, 30.0, size=n).astype(np.float32),
        bg_dir=rng.integers(0, _N_DIRS, n),
        noise_idx=rng.integers(0, _N_NOISE, n),
    )


def _scene_mask_index(scene: _Scene) -> np.ndarray:
    """``[n, 2]`` mask-bank index per object, -1 where there is no object."""
    a = scene.attrs
    idx = _mask_index(
        np.maximum(a[..., 0], 0), np.maximum(a[..., 2], 0), np.maximum(a[..., 3], 0),
        scene.jitter[..., 0], scene.jitter[..., 1],
    )  # fmt: skip
    return np.where(a[..., 0] >= 0, idx, -1)


def _render(scene: _Scene, image_size: int) -> torch.Tensor:
    """``[n, 3, H, W]`` uint8 images of a scene, rendered in chunks (int16 arithmetic)."""
    n = scene.attrs.shape[0]
    bank = mask_bank(image_size)
    ramps, noise_bank = _backdrop_banks(image_size)
    midx = torch.from_numpy(_scene_mask_index(scene))
    colour = PALETTE[np.maximum(scene.attrs[..., 1], 0)] * scene.shade[..., None]  # [n, 2, 3]
    colour = torch.from_numpy(np.round(colour).astype(np.int16))
    base = torch.from_numpy(np.round(scene.bg_base).astype(np.int16))  # [n, 3]
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.uint8)
    chunk = max(64, _CHUNK_PIXELS // (image_size * image_size))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        amp = torch.from_numpy(scene.bg_amp[s:e])[:, None, None]
        ramp = (ramps[torch.from_numpy(scene.bg_dir[s:e])] * amp).round_().to(torch.int16)
        img = base[s:e, :, None, None] + ramp.unsqueeze(1)  # [m, 3, H, W] int16
        for k in (1, 0):  # second object first, primary on top
            mi = midx[s:e, k]
            mask = bank[mi.clamp(min=0)] & (mi >= 0)[:, None, None]  # [m, H, W]
            img = torch.where(mask.unsqueeze(1), colour[s:e, k, :, None, None], img)
        img += noise_bank[torch.from_numpy(scene.noise_idx[s:e])]
        out[s:e] = quantize_(img)
    return out


# ---------------------------------------------------------------- captions
@dataclass
class _CaptionSpec:
    """What each caption says and how (numpy, one row per example)."""

    attrs: np.ndarray  # [n, 2, 4] int64 described attributes, -1 = no object
    template: np.ndarray  # [n, 2] int64 object-phrase template
    prefix: np.ndarray  # [n] int64
    connector: np.ndarray  # [n] int64
    syn: np.ndarray  # [n, 2, len(_SLOTS)] int64 synonym draws

    def take(self, rows: np.ndarray, src: np.ndarray) -> None:
        """Copy the specs of ``src`` into ``rows``."""
        for name in ("attrs", "template", "prefix", "connector", "syn"):
            arr = getattr(self, name)
            arr[rows] = arr[src]

    def mentioned(self) -> np.ndarray:
        """``[n, 2, 4]`` bool: which attributes the caption states."""
        m = np.ones(self.attrs.shape, dtype=bool)
        m[..., 2] = _SIZE_MENTIONED[self.template]
        return m & (self.attrs[..., :1] >= 0)


def _sample_spec(attrs: np.ndarray, rng: np.random.Generator) -> _CaptionSpec:
    n = attrs.shape[0]
    template = rng.integers(0, len(_OBJ_TEMPLATES), size=(n, 2))
    prefix = rng.choice(len(_PREFIX), size=n, p=_PREFIX_P)
    # no "photo of" before a caption that opens with a position ("top left : ...")
    prefix[_STARTS_WITH_POSITION[template[:, 0]]] = 0
    return _CaptionSpec(
        attrs=attrs.copy(),
        template=template,
        prefix=prefix,
        connector=rng.integers(0, len(_CONNECTORS), n),
        syn=rng.integers(0, 1 << 16, size=(n, 2, len(_SLOTS))),
    )


def _near_miss(spec: _CaptionSpec, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Replace one mentioned attribute of one object of each row by a wrong value."""
    m = rows.shape[0]
    if m == 0:
        return
    has_two = spec.attrs[rows, 1, 0] >= 0
    obj = np.where(has_two, rng.integers(0, 2, m), 0)
    mentioned = spec.mentioned()[rows, obj]  # [m, 4]
    score = np.where(mentioned, rng.random((m, 4)), -1.0)
    attr = score.argmax(1)
    card = np.asarray(_CARD)[attr]
    old = spec.attrs[rows, obj, attr]
    spec.attrs[rows, obj, attr] = (old + 1 + (rng.integers(0, 1 << 30, m) % (card - 1))) % card


class _Grammar:
    """Phrase book, synonym tables and tokenizer of the shapes world (built once)."""

    def __init__(self) -> None:
        book = PhraseBook()
        self.book = book
        self.tables: dict[str, SynonymTable] = {
            "det": book.table(_DET),
            "det2": book.table(_DET2),
            "size": book.table(_SIZE_SYN),
            "colour": book.table(_COLOUR_SYN),
            "shape": book.table(_SHAPE_SYN),
            "pos_prep": book.table(_POS_PREP),
            "pos_bare": book.table(_POS_BARE),
        }
        self.prefix = np.array([book.add(p) for p in _PREFIX])
        self.connector = np.array([book.add(c) for c in _CONNECTORS])
        self.literal = {
            item: book.add(item) for t in _OBJ_TEMPLATES for item in t if item not in self.tables
        }
        self.boilerplate = Boilerplate(book)
        obj_max = max(
            sum(self.tables[i].max_len if i in self.tables else book.length(self.literal[i])
                for i in t)
            for t in _OBJ_TEMPLATES
        )  # fmt: skip

        def longest(ids):
            return max(book.length(int(p)) for p in ids)

        cap_max = longest(self.prefix) + 2 * obj_max + longest(self.connector)
        self.context_length = max(cap_max, self.boilerplate.max_len)
        # words of class names and prompts, so no zero-shot prompt has an <unk>
        for text in [*class_names(), *PROMPT_TEMPLATES]:
            book.add(text.replace("{}", ""))
        self.tokenizer = WordTokenizer(book.words(), self.context_length)
        self.token_table = book.token_table(self.tokenizer)
        self.width = 1 + 2 * _OBJ_WIDTH + 1

    def phrase_ids(self, spec: _CaptionSpec) -> np.ndarray:
        """``[n, width]`` phrase ids: prefix, object 1, connector, object 2."""
        n = spec.attrs.shape[0]
        out = np.zeros((n, self.width), dtype=np.int64)
        two = spec.attrs[:, 1, 0] >= 0
        out[:, 0] = self.prefix[spec.prefix]
        out[two, 1 + _OBJ_WIDTH] = self.connector[spec.connector[two]]
        for k, col0 in ((0, 1), (1, 2 + _OBJ_WIDTH)):
            present = spec.attrs[:, k, 0] >= 0
            for t, items in enumerate(_OBJ_TEMPLATES):
                rows = np.flatnonzero(present & (spec.template[:, k] == t))
                if rows.size == 0:
                    continue
                for j, item in enumerate(items):
                    if item in self.tables:
                        attr = _SLOT_ATTR.get(item)
                        values = spec.attrs[rows, k, attr] if attr is not None else 0
                        draws = spec.syn[rows, k, _SLOTS.index(item)]
                        out[rows, col0 + j] = self.tables[item].pick(
                            np.broadcast_to(values, rows.shape), draws
                        )
                    else:
                        out[rows, col0 + j] = self.literal[item]
        return out

    def tokens(self, phrase_ids: np.ndarray) -> torch.Tensor:
        return assemble_tokens(phrase_ids, self.token_table, self.context_length)


@lru_cache(maxsize=1)
def _grammar() -> _Grammar:
    return _Grammar()


def shapes_tokenizer() -> WordTokenizer:
    """The tokenizer of the shapes world (same for every config)."""
    return _grammar().tokenizer


# ---------------------------------------------------------------- pools
@dataclass
class ShapesPool:
    """A generated pool with the generator's structured ground truth.

    Attributes:
        dataset: the pairs.
        attributes: ``[N, 2, 4]`` int64 (shape, colour, size, position) of the objects
            in the image (see :data:`ATTRIBUTES`); row 1 is -1 when there is one object.
        caption_attributes: ``[N, 2, 4]`` int64 attributes the caption describes; all -1
            for boilerplate captions.
        mentioned: ``[N, 2, 4]`` bool, which caption attributes are stated in words.
        caption_source: ``[N]`` int64 position (in this pool) of the image the caption was
            written for: itself, another example for misaligned, -1 for boilerplate.
        mask_index: ``[N, 2]`` int64 index of each object's mask in
            ``mask_bank(image_size)``; -1 where there is no object.
    """

    dataset: PairDataset
    attributes: np.ndarray
    caption_attributes: np.ndarray
    mentioned: np.ndarray
    caption_source: np.ndarray
    mask_index: np.ndarray


def generate_shapes_pool(
    n: int,
    *,
    image_size: int,
    rng: np.random.Generator,
    id_offset: int = 0,
    class_p: np.ndarray | None = None,
    balanced: bool = False,
    p_two: float = _P_TWO,
    noise_fractions: dict[str, float] | None = None,
) -> ShapesPool:
    """Generate ``n`` shapes examples.

    Args:
        n: number of examples.
        image_size: 16 or 32 pixels.
        rng: the pool's own random stream.
        id_offset: first example id.
        class_p: ``[num_classes]`` probabilities of object concepts (``None`` = uniform).
        balanced: if true, primary classes are exactly balanced (counts differ by at most
            one) instead of drawn from ``class_p``.
        p_two: probability of a second object.
        noise_fractions: noise kind -> fraction (``DataConfig.noise_fractions()``);
            ``None`` = all clean.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if image_size not in (16, 32):
        raise ValueError(f"image_size must be 16 or 32, got {image_size}")
    g = _grammar()
    nc = num_classes()
    if balanced:
        primary = rng.permutation(np.arange(n, dtype=np.int64) % nc)
    elif class_p is not None:
        primary = rng.choice(nc, size=n, p=class_p)
    else:
        primary = rng.integers(0, nc, n)
    scene = _sample_scene(n, rng, primary, class_p, p_two)
    spec = _sample_spec(scene.attrs, rng)
    noise = (
        assign_noise(n, noise_fractions, rng) if noise_fractions else np.zeros(n, dtype=np.int64)
    )
    caption_source = np.arange(n, dtype=np.int64)
    mis = noise_rows(noise, "misaligned")
    src = misaligned_sources(mis, n, rng)
    spec.take(mis, src)
    caption_source[mis] = src
    _near_miss(spec, noise_rows(noise, "near_miss"), rng)
    phrase_ids = g.phrase_ids(spec)
    boiler = apply_boilerplate(phrase_ids, noise, g.boilerplate, rng)
    mentioned = spec.mentioned()
    spec.attrs[boiler] = -1
    mentioned[boiler] = False
    caption_source[boiler] = -1

    images = _render(scene, image_size)
    apply_degraded(images, noise, rng)
    dataset = PairDataset(
        images=images,
        tokens=g.tokens(phrase_ids),
        ids=torch.arange(n, dtype=torch.int64) + id_offset,
        noise=torch.from_numpy(noise.astype(np.int64)),
        labels=torch.from_numpy(primary.astype(np.int64)),
        tokenizer=g.tokenizer,
    )
    return ShapesPool(
        dataset=dataset,
        attributes=scene.attrs,
        caption_attributes=spec.attrs,
        mentioned=mentioned,
        caption_source=caption_source,
        mask_index=_scene_mask_index(scene),
    )


def build_shapes_pools(cfg: DataConfig) -> dict[str, ShapesPool]:
    """All pools of a shapes world with their structured ground truth.

    Keys: ``"raw"``, ``"curated"``, ``"classify"``, ``"probe"``, ``"retrieval"``.
    """
    nc = num_classes()
    class_p = zipf_probs(nc, cfg.zipf_exponent, _rng(cfg.seed, _STREAM_CLASS_ORDER))
    size = cfg.image_size
    return {
        "raw": generate_shapes_pool(
            cfg.raw_size, image_size=size, rng=_rng(cfg.seed, _STREAM_RAW),
            id_offset=POOL_ID_OFFSET["raw"], class_p=class_p,
            noise_fractions=cfg.noise_fractions(),
        ),
        "curated": generate_shapes_pool(
            cfg.curated_size, image_size=size, rng=_rng(cfg.seed, _STREAM_CURATED),
            id_offset=POOL_ID_OFFSET["curated"], balanced=True,
        ),
        "classify": generate_shapes_pool(
            cfg.eval_size, image_size=size, rng=_rng(cfg.seed, _STREAM_CLASSIFY),
            id_offset=POOL_ID_OFFSET["classify"], balanced=True, p_two=0.0,
        ),
        "probe": generate_shapes_pool(
            cfg.probe_shots * nc, image_size=size, rng=_rng(cfg.seed, _STREAM_PROBE),
            id_offset=POOL_ID_OFFSET["probe"], balanced=True, p_two=0.0,
        ),
        "retrieval": generate_shapes_pool(
            cfg.retrieval_size, image_size=size, rng=_rng(cfg.seed, _STREAM_RETRIEVAL),
            id_offset=POOL_ID_OFFSET["retrieval"],
        ),
    }  # fmt: skip


def build_shapes_world(cfg: DataConfig) -> World:
    """Build the shapes world described by ``cfg`` (validated first)."""
    cfg.validate()
    pools = build_shapes_pools(cfg)
    return world_from_pools(
        {name: pool.dataset for name, pool in pools.items()},
        tokenizer=shapes_tokenizer(),
        class_names=class_names(),
        prompt_templates=PROMPT_TEMPLATES,
    )
