"""Configuration of the built-in image–text worlds."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NOISE_FIELDS", "DataConfig"]

# DataConfig fields that are fractions of the raw pool, in noise-code order (codes 1..4).
NOISE_FIELDS = ("misaligned", "near_miss", "boilerplate", "degraded")


@dataclass(frozen=True)
class DataConfig:
    """Which world to build and how noisy its raw pool is.

    The four noise fractions are mutually exclusive fractions of the raw pool: exactly
    ``round(fraction * raw_size)`` raw examples get each kind, the rest are clean. The
    defaults (0.35 / 0.15 / 0.10 / 0.10) are fixed by the product spec; do not tune them.

    Attributes:
        world: registered world name (``"shapes"`` or ``"digits"`` built in).
        image_size: side of the square RGB images, in pixels (16 or 32 for the built-in
            worlds; any size >= 8 that the patch sizes divide for shards).
        raw_size: number of examples in the raw (noisy, web-like) pool.
        curated_fraction: curated pool size is ``max(1, round(curated_fraction * raw_size))``.
        pool: which pool training samples from, ``"raw"`` or ``"curated"``.
        misaligned: fraction whose caption describes another image of the pool.
        near_miss: fraction whose caption has one attribute wrong.
        boilerplate: fraction with an uninformative caption ("IMG_2041.jpg").
        degraded: fraction whose image is mostly noise (caption correct).
        zipf_exponent: exponent ``s`` of the Zipf law ``p(rank k) ∝ (k + 1) ** -s`` of
            concept frequencies in the raw pool (0 = uniform).
        eval_size: clean single-object classification test images.
        retrieval_size: clean held-out image–caption pairs for retrieval.
        probe_shots: clean labelled examples per class for the few-shot probe.
        seed: seed of every random stream of the world.
        shards: WebDataset tar shards to train on instead of the world's pool, as a
            brace pattern (``"data/{000000..000009}.tar"``); empty = the built-in pool.
            The world is still built for its evaluation sets and tokenizer.
        max_corrupt_ratio: fraction of skipped (corrupt, missing, duplicate) shard samples
            above which a run stops with a message naming the shard.
        num_workers: dataloader worker processes decoding shards (0 = in the main process).
        tokenizer: ``"builtin"`` (the world's own word tokenizer: built-in worlds only), or
            the path of a Hugging Face ``tokenizer.json`` or of a local model folder that
            holds one (``curatorch data tokenizer`` trains one on shards); a file needs
            ``shards``, since the world's pools are tokenized by the world.
        context_length: tokens per caption row for a tokenizer file (0 = the file's own,
            else 32); must be 0 with ``"builtin"``.
        max_unk_ratio: training (and ``curatorch embed``) on shards stops before it starts
            when more than this fraction of the caption tokens of the first shard samples
            are the tokenizer's unknown token.
    """

    world: str = "shapes"
    image_size: int = 16
    raw_size: int = 50_000
    curated_fraction: float = 0.05
    pool: str = "raw"
    misaligned: float = 0.35
    near_miss: float = 0.15
    boilerplate: float = 0.10
    degraded: float = 0.10
    zipf_exponent: float = 1.0
    eval_size: int = 2000
    retrieval_size: int = 1000
    probe_shots: int = 10
    seed: int = 0
    shards: str = ""
    max_corrupt_ratio: float = 0.1
    num_workers: int = 0
    tokenizer: str = "builtin"
    context_length: int = 0
    max_unk_ratio: float = 0.05

    @property
    def curated_size(self) -> int:
        """Number of examples in the curated pool."""
        return max(1, round(self.curated_fraction * self.raw_size))

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the first bad field and its value."""
        from curatorch.data.registry import available_worlds

        def _int(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"data.{name} must be an int, got {v!r}")
            if v < lo:
                raise ValueError(f"data.{name} must be >= {lo}, got {v}")

        def _real(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"data.{name} must be a finite number, got {v!r}")
            return float(v)

        if not isinstance(self.world, str) or self.world not in available_worlds():
            raise ValueError(f"data.world must be one of {available_worlds()}, got {self.world!r}")
        if not isinstance(self.shards, str):
            raise ValueError(f"data.shards must be a string pattern, got {self.shards!r}")
        size = self.image_size
        if self.shards:  # any square size the model's patches divide (checked there)
            if isinstance(size, bool) or not isinstance(size, int) or size < 8:
                raise ValueError(f"data.image_size must be an int >= 8, got {size!r}")
        elif isinstance(size, bool) or size not in (16, 32):
            raise ValueError(
                f"data.image_size must be 16 or 32 for the built-in worlds, got {size!r}"
            )
        _int("raw_size", 1)
        cf = _real("curated_fraction")
        if not 0.0 < cf <= 1.0:
            raise ValueError(f"data.curated_fraction must be in (0, 1], got {cf}")
        if self.pool not in ("raw", "curated"):
            raise ValueError(f"data.pool must be 'raw' or 'curated', got {self.pool!r}")
        total = 0.0
        for name in NOISE_FIELDS:
            v = _real(name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1], got {v}")
            total += v
        if total > 1.0 + 1e-9:
            parts = ", ".join(f"{n}={getattr(self, n)}" for n in NOISE_FIELDS)
            raise ValueError(f"data noise fractions ({parts}) must sum to <= 1, got {total:.6g}")
        z = _real("zipf_exponent")
        if z < 0:
            raise ValueError(f"data.zipf_exponent must be >= 0, got {z}")
        _int("eval_size", 1)
        _int("retrieval_size", 1)
        _int("probe_shots", 1)
        _int("seed", 0)
        mcr = _real("max_corrupt_ratio")
        if not 0.0 <= mcr <= 1.0:
            raise ValueError(f"data.max_corrupt_ratio must be in [0, 1], got {mcr}")
        _int("num_workers", 0)
        self._validate_tokenizer(_real("max_unk_ratio"))

    def _validate_tokenizer(self, max_unk: float) -> None:
        if not isinstance(self.tokenizer, str) or not self.tokenizer.strip():
            raise ValueError(
                f"data.tokenizer must be 'builtin' or the path of a tokenizer.json or model "
                f"folder, got {self.tokenizer!r}"
            )
        c = self.context_length
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ValueError(f"data.context_length must be an int >= 0, got {c!r}")
        if self.tokenizer == "builtin" and c:
            raise ValueError(
                f"data.context_length={c} applies to a tokenizer file; the built-in tokenizer "
                f"has its own (set data.context_length = 0)"
            )
        if self.tokenizer != "builtin" and not self.shards:
            raise ValueError(
                f"data.tokenizer = {self.tokenizer!r} needs data.shards: the built-in world's "
                f"pools (also the curated pool a reference is trained on) are tokenized by "
                f"the world's own tokenizer"
            )
        if not 0.0 <= max_unk <= 1.0:
            raise ValueError(f"data.max_unk_ratio must be in [0, 1], got {max_unk}")

    def noise_fractions(self) -> dict[str, float]:
        """The four noise fractions by kind name, in noise-code order."""
        return {name: float(getattr(self, name)) for name in NOISE_FIELDS}
