"""In-memory image–caption datasets and the world container."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from curatorch.data.images import float_images
from curatorch.data.tokenizer import WordTokenizer

__all__ = ["NOISE_KINDS", "EvalSets", "PairDataset", "World", "noise_code"]

# Noise codes: index in this tuple. 0 = clean.
NOISE_KINDS = ("clean", "misaligned", "near_miss", "boilerplate", "degraded")


def noise_code(kind: str) -> int:
    """Code of a noise kind name (``"clean"`` is 0)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    return NOISE_KINDS.index(kind)


@dataclass
class PairDataset:
    """Image–caption pairs held in memory.

    Attributes:
        images: ``[N, 3, H, W]`` uint8 RGB images.
        tokens: ``[N, context_length]`` int64 caption ids, right-padded with ``PAD_ID``.
        ids: ``[N]`` int64 example ids, unique within a world (raw, curated and eval
            ids are disjoint) and stable across runs with the same seed.
        noise: ``[N]`` int64 noise code, an index into :data:`NOISE_KINDS` (0 = clean).
        labels: ``[N]`` int64 class of the image's primary concept, in ``[0, num_classes)``.
        tokenizer: the tokenizer that produced ``tokens``.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    ids: torch.Tensor
    noise: torch.Tensor
    labels: torch.Tensor
    tokenizer: WordTokenizer

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must have shape [N, 3, H, W], got {tuple(self.images.shape)}")
        if self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {self.images.dtype}")
        n = self.images.shape[0]
        if self.tokens.dim() != 2 or self.tokens.shape[0] != n:
            raise ValueError(f"tokens must have shape [{n}, L], got {tuple(self.tokens.shape)}")
        for name in ("tokens", "ids", "noise", "labels"):
            t = getattr(self, name)
            if t.dtype != torch.int64:
                raise ValueError(f"{name} must be int64, got {t.dtype}")
            if name != "tokens" and tuple(t.shape) != (n,):
                raise ValueError(f"{name} must have shape [{n}], got {tuple(t.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        """Side of the images, in pixels."""
        return int(self.images.shape[-1])

    def subset(self, index: torch.Tensor) -> PairDataset:
        """The examples at ``index`` (``[n]`` int64 positions or an ``[N]`` bool mask)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            if tuple(index.shape) != (len(self),):
                raise ValueError(
                    f"a bool index must have shape [{len(self)}], got {tuple(index.shape)}"
                )
        elif index.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"index must be an integer or bool tensor, got {index.dtype}")
        return PairDataset(
            images=self.images[index],
            tokens=self.tokens[index],
            ids=self.ids[index],
            noise=self.noise[index],
            labels=self.labels[index],
            tokenizer=self.tokenizer,
        )

    def captions(self, index: torch.Tensor | None = None) -> list[str]:
        """Decoded captions of all examples, or of those at ``index``."""
        tokens = self.tokens if index is None else self.tokens[torch.as_tensor(index)]
        return self.tokenizer.decode(tokens.reshape(-1, self.tokens.shape[1]))

    def image_batch(self, index: torch.Tensor) -> torch.Tensor:
        """Images at ``index`` as float32 ``[n, 3, H, W]`` scaled from [0, 255] to [-1, 1]."""
        return float_images(self.images[torch.as_tensor(index)])

    def noise_counts(self) -> dict[str, int]:
        """Number of examples of each noise kind."""
        counts = torch.bincount(self.noise, minlength=len(NOISE_KINDS)).tolist()
        return dict(zip(NOISE_KINDS, counts, strict=False))


@dataclass
class EvalSets:
    """Clean evaluation sets of a world; they do not depend on the pool sizes.

    Attributes:
        classify: clean, class-balanced single-object images (zero-shot and few-shot
            test set); class counts differ by at most one.
        probe_train: clean single-object images, exactly ``probe_shots`` per class
            (few-shot probe train set).
        retrieval: clean held-out image–caption pairs with captions as rich as the raw
            pool's.
        class_names: name of each class (``"red circle"``), ``len == num_classes``.
        prompt_templates: zero-shot prompt ensemble, each with one ``{}`` for the class
            name; every word is in the tokenizer's vocabulary.
    """

    classify: PairDataset
    probe_train: PairDataset
    retrieval: PairDataset
    class_names: list[str]
    prompt_templates: list[str]

    def prompts(self) -> list[list[str]]:
        """``[num_classes][num_templates]`` formatted prompts."""
        return [[t.format(c) for t in self.prompt_templates] for c in self.class_names]


@dataclass
class World:
    """A built world: the two training pools, the eval sets and the shared tokenizer."""

    raw: PairDataset
    curated: PairDataset
    eval: EvalSets
    tokenizer: WordTokenizer
    num_classes: int

    def pool(self, name: str) -> PairDataset:
        """The training pool called ``name`` (``"raw"`` or ``"curated"``)."""
        if name == "raw":
            return self.raw
        if name == "curated":
            return self.curated
        raise ValueError(f"pool must be 'raw' or 'curated', got {name!r}")
