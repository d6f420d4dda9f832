"""Batch-selection strategies for the training loop.

A strategy turns a super-batch of ``B`` candidates into the ``b`` the learner trains
on, and says what the choice cost in FLOPs. ``iid`` keeps the super-batch as it is
(``B = b``); the others score it with :mod:`curatorch.selection`. Under data parallelism
every rank holds ``B / W`` candidates and keeps ``b / W`` (JEST conditions on the globally
chosen set: :func:`curatorch.selection.distributed_joint_select`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch

from curatorch.data.images import float_images
from curatorch.models import ImagePreprocessing, TwoTower
from curatorch.selection import (
    ModelEmbeddings,
    PairScorer,
    distributed_joint_select,
    independent_select,
    joint_select,
)
from curatorch.train.distributed import DistContext

__all__ = ["Candidates", "Selection", "Selector", "float_images"]


@dataclass
class Candidates:
    """A (super-)batch of image–caption pairs on this rank.

    Attributes:
        images: ``[n, 3, H, W]`` uint8.
        tokens: ``[n, L]`` int64 caption ids.
        ids: ``[n]`` int64 example ids (built-in pools), else ``None``.
        keys: ``__key__`` of each sample (WebDataset shards), else ``None``.
        shards: shard name of each sample (WebDataset shards), else ``None``.
    """

    images: torch.Tensor
    tokens: torch.Tensor
    ids: torch.Tensor | None = None
    keys: list[str] | None = None
    shards: list[str] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def take(self, index: torch.Tensor) -> Candidates:
        """The candidates at ``index`` ``[k]``, in that order."""
        idx = index.tolist()
        return Candidates(
            images=self.images[index],
            tokens=self.tokens[index],
            ids=None if self.ids is None else self.ids[index],
            keys=None if self.keys is None else [self.keys[i] for i in idx],
            shards=None if self.shards is None else [self.shards[i] for i in idx],
        )

    def to_device(
        self, device: torch.device, preprocessing: ImagePreprocessing | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, tokens)`` on ``device`` (pinned and copied without blocking on CUDA).

        Images are float32 ``[n, 3, S, S]`` in the model's normalisation: ``preprocessing``
        (an :class:`~curatorch.models.ImageTextModel`'s), or curatorch's own
        :func:`float_images` (``x / 127.5 - 1``) when ``None``."""
        images = float_images(self.images) if preprocessing is None else preprocessing(self.images)
        tokens = self.tokens
        if device.type == "cuda":
            images, tokens = images.pin_memory(), tokens.pin_memory()
        return images.to(device, non_blocking=True), tokens.to(device, non_blocking=True)


class ReferenceProvider(Protocol):
    """Reference embeddings of a batch of candidates, and what they cost."""

    setup_flops: int

    def embeddings_for(self, batch: Candidates, device: torch.device) -> ModelEmbeddings: ...

    def flops(self, count: int) -> int: ...


@dataclass
class Selection:
    """The outcome of one selection step.

    Attributes:
        index: ``[b]`` positions into the super-batch (``[b / W]`` into this rank's part).
        learner_flops: FLOPs of the learner's scoring forward pass.
        reference_flops: FLOPs of the reference's scoring forward pass (0 from a cache).
        stats: scalars worth logging (e.g. the mean selected score).
    """

    index: torch.Tensor
    learner_flops: int = 0
    reference_flops: int = 0
    stats: dict[str, float] = field(default_factory=dict)


class Selector:
    """Chooses ``batch_size`` of ``super_batch`` examples as a strategy prescribes.

    Args:
        name: ``iid``, ``independent``, ``jest`` or ``flexi-jest``.
        score: ``learnability``, ``easy-reference`` or ``hard-learner``.
        batch_size: the global ``b``. super_batch: the global ``B``.
        chunks: ``N`` for the joint sampler.
        mode: ``sample`` or ``topk``.
        score_patch_size: the patch size of the learner's scoring forward pass.
        learner_forward_flops: FLOPs per example of that forward pass.
        reference: where reference embeddings come from (``None`` for ``hard-learner``).
        dist: this process's place in a data-parallel job (default: one process).
    """

    def __init__(
        self,
        *,
        name: str,
        score: str,
        batch_size: int,
        super_batch: int,
        chunks: int,
        mode: str,
        score_patch_size: int,
        learner_forward_flops: int,
        reference: ReferenceProvider | None,
        dist: DistContext | None = None,
    ) -> None:
        if super_batch < batch_size:
            raise ValueError(f"super_batch={super_batch} must be >= batch_size={batch_size}")
        self.name = name
        self.score = score
        self.batch_size = batch_size
        self.super_batch = super_batch
        self.chunks = chunks
        self.mode = mode
        self.score_patch_size = score_patch_size
        self.learner_forward_flops = learner_forward_flops
        self.reference = reference
        self.dist = dist or DistContext()
        w = self.dist.world_size
        if super_batch % w or batch_size % w:
            raise ValueError(
                f"super-batch {super_batch} and batch {batch_size} must be divisible by the "
                f"number of processes {w}"
            )
        self.needs_learner = score in ("learnability", "hard-learner")

    @property
    def setup_flops(self) -> int:
        """One-time reference cost (embedding the pool into a cache)."""
        return self.reference.setup_flops if self.reference is not None else 0

    def select(
        self,
        *,
        model: TwoTower,
        candidates: Candidates,
        generator: torch.Generator,
        device: torch.device,
    ) -> Selection:
        """Choose this rank's ``b / W`` of its ``B / W`` ``candidates``.

        FLOPs in the returned :class:`Selection` are this rank's.
        """
        if self.name == "iid":
            return Selection(torch.arange(len(candidates)))
        learner = reference = None
        learner_flops = reference_flops = 0
        count = len(candidates)
        if self.needs_learner:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                # an adapter's own normalisation; a bare TwoTower's is float_images
                pre = getattr(model, "preprocessing", None)
                images, tokens = candidates.to_device(device, pre)
                img = model.encode_image(images, patch_size=self.score_patch_size).float()
                txt = model.encode_text(tokens).float()
            model.train(was_training)
            learner = ModelEmbeddings(
                img, txt, float(model.logit_scale.detach()), float(model.logit_bias.detach())
            )
            learner_flops = self.learner_forward_flops * count
        if self.reference is not None and self.score != "hard-learner":
            reference = self.reference.embeddings_for(candidates, device)
            reference_flops = self.reference.flops(count)
        scorer = PairScorer(learner=learner, reference=reference, score=self.score)
        w = self.dist.world_size
        if self.name == "independent":
            index = independent_select(
                scorer, batch_size=self.batch_size // w, mode=self.mode, generator=generator
            )
        elif w > 1:
            index = distributed_joint_select(
                scorer,
                batch_size=self.batch_size,
                chunks=self.chunks,
                mode=self.mode,
                generator=generator,
                rank=self.dist.rank,
                world_size=w,
            )
        else:
            index = joint_select(
                scorer,
                batch_size=self.batch_size,
                chunks=self.chunks,
                mode=self.mode,
                generator=generator,
            )
        index = index.cpu()
        return Selection(index, learner_flops, reference_flops)
