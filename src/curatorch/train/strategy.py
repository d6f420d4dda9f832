"""Batch-selection strategies for the training loop.

A strategy turns a super-batch of ``B`` pool indices into the ``b`` the learner trains
on, and says what the choice cost in FLOPs. ``iid`` keeps the super-batch as it is
(``B = b``); the others score it with :mod:`curatorch.selection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from curatorch.data import PairDataset
from curatorch.models import TwoTower
from curatorch.selection import ModelEmbeddings, PairScorer, independent_select, joint_select
from curatorch.train.reference import CachedReference, OnlineReference

__all__ = ["Selection", "Selector"]


@dataclass
class Selection:
    """The outcome of one selection step.

    Attributes:
        index: ``[b]`` positions into the super-batch.
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
        batch_size: ``b``. super_batch: ``B``.
        chunks: ``N`` for the joint sampler.
        mode: ``sample`` or ``topk``.
        score_patch_size: the patch size of the learner's scoring forward pass.
        learner_forward_flops: FLOPs per example of that forward pass.
        reference: where reference embeddings come from (``None`` for ``hard-learner``).
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
        reference: CachedReference | OnlineReference | None,
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
        self.needs_learner = score in ("learnability", "hard-learner")

    @property
    def setup_flops(self) -> int:
        """One-time reference cost (embedding the pool into a cache)."""
        return self.reference.setup_flops if self.reference is not None else 0

    def select(
        self,
        *,
        model: TwoTower,
        pool: PairDataset,
        super_index: torch.Tensor,
        generator: torch.Generator,
        device: torch.device,
    ) -> Selection:
        """Choose ``b`` of the super-batch ``super_index`` ``[B]`` (pool indices)."""
        if self.name == "iid":
            return Selection(torch.arange(super_index.numel()))
        learner = reference = None
        learner_flops = reference_flops = 0
        count = super_index.numel()
        if self.needs_learner:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                images = pool.image_batch(super_index).to(device, non_blocking=True)
                tokens = pool.tokens[super_index].to(device, non_blocking=True)
                img = model.encode_image(images, patch_size=self.score_patch_size).float()
                txt = model.encode_text(tokens).float()
            model.train(was_training)
            learner = ModelEmbeddings(
                img, txt, float(model.logit_scale.detach()), float(model.logit_bias.detach())
            )
            learner_flops = self.learner_forward_flops * count
        if self.reference is not None and self.score != "hard-learner":
            reference = self.reference.embeddings(pool, super_index, device)
            reference_flops = self.reference.flops(count)
        scorer = PairScorer(learner=learner, reference=reference, score=self.score)
        if self.name == "independent":
            index = independent_select(
                scorer, batch_size=self.batch_size, mode=self.mode, generator=generator
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
