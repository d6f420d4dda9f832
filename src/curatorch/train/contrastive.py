"""Contrastive two-tower training as a task of the one loop (IID, JEST, Flexi-JEST ...).

:class:`ContrastiveTask` owns the data source (an in-memory pool or WebDataset shards),
the selector (with its reference), the Flexi-JEST multi-resolution split, the SigLIP loss
(sharded over ranks), the FLOP accounting and the evaluation on the world's held-out sets.
``train(cfg, out_dir)`` builds the task and runs :func:`curatorch.train.train_task`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from curatorch.data import (
    BUILTIN_TOKENIZER,
    PairDataset,
    World,
    build_tokenizer,
    build_world,
    check_shard_captions,
)
from curatorch.eval import build_shard_evaluator, evaluate
from curatorch.losses import sigmoid_contrastive_loss_sharded
from curatorch.models import ImageTextModel, TwoTowerAdapter, TwoTowerConfig, build_model
from curatorch.train.config import ExperimentConfig, config_to_dict
from curatorch.train.distributed import DistContext
from curatorch.train.loop import train_task
from curatorch.train.model_config import model_config_for, train_patch_size
from curatorch.train.sampler import EpochSampler
from curatorch.train.strategy import Candidates, ReferenceProvider, Selection, Selector
from curatorch.train.task import BaseTask, RunContext, TaskState

__all__ = [
    "AUTO_REFERENCE",
    "ContrastiveTask",
    "build_selector",
    "hf_learner",
    "needs_world",
    "open_reference",
    "patch_sizes_for",
    "prepare_reference",
    "train",
]

# ``strategy.reference`` value that trains the reference inside the run folder
AUTO_REFERENCE = "curated"


def needs_world(cfg: ExperimentConfig) -> bool:
    """Whether a run of ``cfg`` builds the built-in world: for its pools (no
    ``data.shards``), its tokenizer (``data.tokenizer = "builtin"``), its evaluation sets
    (evaluation not on held-out shards) or its curated pool (``strategy.reference =
    "curated"``). Training on shards with a tokenizer file, held-out evaluation shards
    and a reference of its own builds nothing of a world."""
    st = cfg.strategy
    return (
        not cfg.data.shards
        or cfg.data.tokenizer == BUILTIN_TOKENIZER
        or not cfg.eval.on_shards()
        or (st.needs_reference and st.reference == AUTO_REFERENCE)
    )


# the images' normalisation: curatorch's two-tower reads x / 127.5 - 1 (mean = std = 0.5)
_MEAN = _STD = (0.5, 0.5, 0.5)


def patch_sizes_for(cfg: ExperimentConfig, learner: ImageTextModel) -> tuple[int, int]:
    """``(train_patch, score_patch)`` of the learner (an
    :class:`~curatorch.models.ImageTextModel`): training at ``model.train_patch_size`` or
    the smallest of its patch sizes; scoring at ``strategy.score_patch_size``, or the
    largest for Flexi-JEST, or the training patch size. Raises ``ValueError`` naming
    ``strategy.score_patch_size`` when it is not one of the model's, and Flexi-JEST with a
    learner of one patch size."""
    patches = tuple(learner.patch_sizes)
    if cfg.strategy.name == "flexi-jest" and not learner.flexible_patch:
        raise ValueError(
            f"strategy.name = 'flexi-jest' needs a FlexiViT learner (model.source = "
            f"'curatorch'); the {learner.kind} model has the one patch size {patches[0]}"
        )
    train_patch = train_patch_size(cfg.model, patches)
    default = max(patches) if cfg.strategy.name == "flexi-jest" else train_patch
    score_patch = cfg.strategy.score_patch_size or default
    if score_patch not in patches:
        raise ValueError(
            f"strategy.score_patch_size must be one of the model's patch sizes {list(patches)}, "
            f"got {score_patch}"
        )
    return train_patch, score_patch


def hf_learner(cfg: ExperimentConfig, tokenizer: Any) -> ImageTextModel:
    """The Hugging Face learner ``model.path`` (a ``save_pretrained`` folder) or
    ``model.hf_config`` (a ``config.json`` to train from scratch) names, padded with the
    tokenizer's pad id and read with ``model.hf_text_padding`` (SigLIP only), checked
    against the tokenizer's vocabulary and ``data.image_size`` (one line naming both
    sizes)."""
    from curatorch.models.adapters import (
        check_image_size,
        check_tokenizer_vocab,
        hf_adapter_from_config,
        load_model_adapter,
    )

    m = cfg.model
    pad_id = getattr(tokenizer, "pad_id", 0)
    padding = m.hf_text_padding or None
    if m.path:
        if padding is not None and _hf_folder_type(m.path) not in ("siglip", None):
            raise ValueError(_padding_refusal(m.path))
        learner = load_model_adapter("hf", m.path, pad_id=pad_id, text_padding=padding)
        learner.module.train()
    else:
        try:
            config = json.loads(Path(m.hf_config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"model.hf_config {m.hf_config} cannot be read: {exc}") from exc
        extra = {}
        if padding is not None:
            if not isinstance(config, dict) or config.get("model_type") != "siglip":
                raise ValueError(_padding_refusal(m.hf_config))
            extra["text_padding"] = padding
        learner = hf_adapter_from_config(config, pad_id=pad_id, **extra)
    name = f"data.tokenizer {cfg.data.tokenizer!r}"
    check_tokenizer_vocab(learner, vocab_size=tokenizer.vocab_size, tokenizer=name)
    if tokenizer.context_length > learner.context_length:
        raise ValueError(
            f"{name} makes rows of {tokenizer.context_length} tokens but the model reads at "
            f"most {learner.context_length}; set data.context_length <= {learner.context_length}"
        )
    check_image_size(learner, image_size=cfg.data.image_size)
    return learner


def _hf_folder_type(folder: str) -> str | None:
    """``model_type`` in ``folder/config.json``; ``None`` when it cannot be read (the
    loader then says what the folder holds)."""
    try:
        return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get(
            "model_type"
        )
    except (OSError, ValueError, AttributeError):
        return None


def _padding_refusal(source: str) -> str:
    return (
        f"model.hf_text_padding applies to SigLIP models; {source} is not one (CLIP's "
        f"adapter already masks pads and pools the last caption token): leave it empty"
    )


def open_reference(
    cfg: ExperimentConfig,
    *,
    pool: PairDataset | None,
    shards: list[str],
    device: torch.device,
) -> ReferenceProvider | None:
    """The reference that ``strategy.reference`` names (an embedding cache or a
    checkpoint), checked against the data: a pool cache for a pool, a per-shard cache for
    shards; ``None`` when the strategy needs none."""
    st = cfg.strategy
    if not st.needs_reference:
        return None
    if shards:
        from curatorch.train.shard_reference import load_shard_reference

        return load_shard_reference(st.reference, urls=shards)
    from curatorch.train.reference import load_reference

    if pool is None:
        raise ValueError("open_reference needs a pool or shards")
    return load_reference(
        st.reference, data=cfg.data, pool_name=cfg.data.pool, pool=pool, device=device
    )


def build_selector(
    cfg: ExperimentConfig,
    learner: ImageTextModel,
    *,
    reference: ReferenceProvider | None,
    dist: DistContext | None = None,
) -> Selector:
    """The :class:`Selector` that ``cfg.strategy`` describes for this learner (an
    :class:`~curatorch.models.ImageTextModel`), for pools and shards alike
    (``reference`` from :func:`open_reference`)."""
    st = cfg.strategy
    _, score_patch = patch_sizes_for(cfg, learner)
    return Selector(
        name=st.name,
        score=st.score,
        batch_size=cfg.train.batch_size,
        super_batch=cfg.super_batch_size,
        chunks=st.chunks,
        mode=st.mode,
        score_patch_size=score_patch,
        learner_forward_flops=learner.forward_flops(score_patch),
        reference=reference,
        dist=dist,
    )


def prepare_reference(
    cfg: ExperimentConfig,
    out: Path,
    *,
    world: World | None,
    shards: list[str],
    dist: DistContext,
    progress: bool,
) -> ExperimentConfig:
    """``cfg`` with a usable ``strategy.reference``. For ``"curated"``: the reference of
    :func:`~curatorch.train.reference.curated_reference_config` (the run's settings,
    ``strategy.reference_steps`` steps) trained on the world's curated pool into
    ``out/reference``, its embeddings of the training data cached in
    ``out/reference-cache`` (:func:`~curatorch.train.reference.obtain_reference`: rank 0,
    both reused when current, the global torch RNG left as it was). Other values are
    returned unchanged (checked when opened; a checkpoint is scored online)."""
    st = cfg.strategy
    if not (st.needs_reference and st.reference == AUTO_REFERENCE):
        return cfg
    from curatorch.train.reference import curated_reference_config, obtain_reference

    if world is None:
        raise ValueError("strategy.reference = 'curated' trains on the built-in world's pool")
    ref = obtain_reference(
        out,
        data=cfg.data,
        world=world,
        recipe=curated_reference_config(cfg),
        shards=shards,
        device=cfg.train.device,
        dist=dist,
        progress=progress,
    )
    return dataclasses.replace(cfg, strategy=dataclasses.replace(st, reference=str(ref.cache)))


class _PoolSource:
    """Super-batches drawn from an in-memory pool; rank ``r`` keeps the ``r``-th slice.

    Every rank runs the same global sampler (same seed), so the global super-batch is the
    same everywhere and only this rank's ``B / W`` examples are materialised.
    """

    per_rank_state = False  # the sampler is identical on every rank

    def __init__(self, pool: PairDataset, *, seed: int, dist: DistContext) -> None:
        self.pool = pool
        self.sampler = EpochSampler(len(pool), seed=seed)
        self.dist = dist

    def next(self, global_size: int) -> Candidates:
        idx = self.sampler.draw(global_size)  # [B] a uniform draw from the pool
        n = global_size // self.dist.world_size
        idx = idx[self.dist.rank * n : (self.dist.rank + 1) * n]
        return Candidates(self.pool.images[idx], self.pool.tokens[idx], ids=self.pool.ids[idx])

    def counts(self) -> dict[str, int]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)

    def close(self) -> None:
        return None


class _ShardSource:
    """Super-batches streamed from WebDataset shards; each rank reads its own shards."""

    per_rank_state = True

    def __init__(self, stream: Any, *, dist: DistContext) -> None:
        self.stream = stream
        self.dist = dist

    def next(self, global_size: int) -> Candidates:
        """This rank's ``B / W`` candidates (collective: a rank whose stream stops, for
        too many faults, stops every rank at the same step with its message)."""
        from curatorch.data.shards import DataFaultError

        error: DataFaultError | None = None
        try:
            b = self.stream.next_batch(global_size // self.dist.world_size)
        except DataFaultError as exc:
            error = exc
        failed = self.dist.first_failure(None if error is None else str(error))
        if failed is not None:
            rank, message = failed
            where = f"rank {rank} of {self.dist.world_size}: " if self.dist.enabled else ""
            raise DataFaultError(
                where + message,
                shard=error.shard if error is not None else "",
                ratio=error.ratio if error is not None else 0.0,
                counts=error.counts if error is not None else self.stream.counts(),
            ) from error
        return Candidates(b.images, b.tokens, keys=list(b.keys), shards=list(b.shards))

    def counts(self) -> dict[str, int]:
        return dict(self.stream.counts())

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)

    def close(self) -> None:
        self.stream.close()


class _CheckpointedState:
    """The data source's position as a checkpoint stores it: one state, or (sources that
    differ per rank) ``{"ranks": [state of rank 0, 1, ...]}``."""

    def __init__(self, source: _PoolSource | _ShardSource, dist: DistContext) -> None:
        self.source, self.dist = source, dist
        self.gathered: list[dict[str, Any]] = []

    def gather(self) -> None:  # collective
        self.gathered = self.dist.all_gather_object(self.source.state_dict())

    def state_dict(self) -> dict[str, Any]:
        if self.source.per_rank_state and self.dist.enabled:
            return {"ranks": self.gathered}
        return self.gathered[0]

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.source.per_rank_state and self.dist.enabled:
            ranks = state.get("ranks") if isinstance(state, dict) else None
            if not isinstance(ranks, list) or len(ranks) != self.dist.world_size:
                raise ValueError(
                    f"the checkpoint's data position is not for {self.dist.world_size} processes"
                )
            state = ranks[self.dist.rank]
        self.source.load_state_dict(state)


class _TrainForward(torch.nn.Module):
    """The training forward pass as one module, so that ``DistributedDataParallel`` (and
    ``torch.compile``) can wrap it: one patch size, or (Flexi-JEST) the first ``half``
    images at the finest and the rest at the coarsest patch size."""

    def __init__(
        self, model: torch.nn.Module, *, patch_size: int, flexi: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self.model = model
        self.patch_size = patch_size
        self.flexi = flexi

    def forward(
        self, images: torch.Tensor, tokens: torch.Tensor, half: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        model = self.model
        if self.flexi is not None:
            fine, coarse = self.flexi
            image_emb = torch.cat(
                [
                    model.encode_image(images[:half], patch_size=fine),
                    model.encode_image(images[half:], patch_size=coarse),
                ]
            )
            return image_emb, model.encode_text(tokens), model.logit_scale, model.logit_bias
        # any learner module (TwoTower, an HF adapter): what TwoTower.forward does
        image_emb = model.encode_image(images, patch_size=self.patch_size)
        return image_emb, model.encode_text(tokens), model.logit_scale, model.logit_bias


@dataclass
class _Batch:
    images: torch.Tensor  # [b / W, 3, H, W] float on the device
    tokens: torch.Tensor  # [b / W, L]
    chosen: Selection


class ContrastiveTask(BaseTask):
    """Two-tower image–text training with a batch-selection strategy.

    Args:
        cfg: the validated experiment config.
        world: a prebuilt world for ``cfg.data`` (saves regenerating it), else built.
        pool: train on this dataset instead of the world's ``cfg.data.pool`` (sub-pools,
            e.g. quality buckets); evaluation still uses the world's held-out sets.
    """

    kind = "contrastive"
    flop_counters = ("train", "learner_scoring", "reference_scoring")
    headline_metric = "mean_score"

    def __init__(
        self, cfg: ExperimentConfig, *, world: World | None = None, pool: PairDataset | None = None
    ) -> None:
        cfg.validate()
        cfg.eval.check_has_eval_data(cfg.data.shards)  # training evaluates; embed does not
        if cfg.data.shards and pool is not None:
            raise ValueError("train(pool=...) and data.shards cannot be used together")
        self.cfg = cfg
        self.method = cfg.strategy.name
        self.train_cfg, self.optim_cfg = cfg.train, cfg.optim
        self.world, self.pool = world, pool
        self.shards: list[str] = []

    def config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.cfg)

    def prepare_data(self, run: RunContext) -> None:
        cfg, dist = self.cfg, run.dist
        self.run = run
        if self.world is None and needs_world(cfg):
            self.world = build_world(cfg.data)
        self.shard_eval = None
        if cfg.data.shards:
            from curatorch.data.shards import ShardStream, expand_shards

            self.shards = expand_shards(cfg.data.shards)
            tokenizer = build_tokenizer(cfg.data, self.world)
            check_shard_captions(cfg.data, tokenizer, self.shards)  # before any step
            self.tokenizer = tokenizer
            stream = ShardStream(
                self.shards,
                image_size=cfg.data.image_size,
                tokenizer=tokenizer,
                rank=dist.rank,
                world_size=dist.world_size,
                num_workers=cfg.data.num_workers,
                seed=cfg.train.seed,
                max_corrupt_ratio=cfg.data.max_corrupt_ratio,
            )
            self.source: _PoolSource | _ShardSource = _ShardSource(stream, dist=dist)
        else:
            if self.pool is None:
                w = self.world
                self.pool = w.curated if cfg.data.pool == "curated" else w.raw
            self.source = _PoolSource(self.pool, seed=cfg.train.seed, dist=dist)
            self.tokenizer = build_tokenizer(cfg.data, self.world)
        self.hf = cfg.model.source == "hf"
        self.model_cfg: TwoTowerConfig | None = (
            None if self.hf else model_config_for(cfg, self.world)
        )

    def build_model(self) -> torch.nn.Module:
        """curatorch's ``TwoTower`` (the registry's ``model.size``), or the Hugging Face
        model ``model.path`` / ``model.hf_config`` names; :attr:`learner` is it as an
        :class:`~curatorch.models.ImageTextModel`."""
        if self.hf:
            self.learner = hf_learner(self.cfg, self.tokenizer)
            self.model = self.learner.module
        else:
            assert self.model_cfg is not None
            self.model = build_model(self.model_cfg)
            self.learner = TwoTowerAdapter(self.model)
        return self.model

    def model_config_dict(self) -> dict[str, Any]:
        if self.model_cfg is None:  # the HF model's own config, as save_pretrained writes it
            return {"source": "hf", "hf": self.learner.hf.config.to_dict()}
        return dataclasses.asdict(self.model_cfg)

    def prepare_training(self, run: RunContext, model: torch.nn.Module) -> None:
        cfg, dist = self.cfg, run.dist
        # the strategies' randomness; rank 0 keeps the single-process stream
        self.gen = torch.Generator().manual_seed(cfg.train.seed + 1 + 1_000_003 * dist.rank)
        if cfg.eval.on_shards() and dist.is_main:  # read once, before any step
            pre = self.learner.preprocessing
            self.shard_eval = build_shard_evaluator(
                cfg.eval,
                image_size=cfg.data.image_size,
                mean=pre.mean,
                std=pre.std,
                tokenizer=self.tokenizer,
                device=run.device,
            )
        sel_cfg = prepare_reference(
            cfg, run.out, world=self.world, shards=self.shards, dist=dist, progress=run.progress
        )
        reference = open_reference(sel_cfg, pool=self.pool, shards=self.shards, device=run.device)
        self.selector = build_selector(sel_cfg, self.learner, reference=reference, dist=dist)
        self.position = _CheckpointedState(self.source, dist)
        self._flops_per_step(dist.world_size)
        train_patch, _ = patch_sizes_for(cfg, self.learner)
        patches = self.learner.patch_sizes
        self.flexi = cfg.strategy.name == "flexi-jest"
        flexi = (min(patches), max(patches)) if self.flexi else None
        self.forward: torch.nn.Module = _TrainForward(
            self.model, patch_size=train_patch, flexi=flexi
        )

    def _flops_per_step(self, w: int) -> None:
        """FLOPs of one global training step (backward = 2 forwards)."""
        patches = self.learner.patch_sizes
        train_patch, _ = patch_sizes_for(self.cfg, self.learner)
        batch = self.cfg.train.batch_size
        self.local_batch = batch // w
        self.half = self.local_batch // 2
        fwd = self.learner.forward_flops
        if self.cfg.strategy.name == "flexi-jest":  # half finest, half coarsest
            fine, coarse = fwd(min(patches)), fwd(max(patches))
            self.step_flops = 3 * w * (fine * self.half + coarse * (self.local_batch - self.half))
        else:
            self.step_flops = 3 * fwd(train_patch) * batch

    def setup_counters(self) -> dict[str, int]:
        return {"reference_scoring": self.selector.setup_flops}

    def state(self) -> TaskState:
        return TaskState(self.position, {self._gen_name(self.run.dist.rank): self.gen})

    @staticmethod
    def _gen_name(rank: int) -> str:
        return "strategy" if rank == 0 else f"strategy.rank{rank}"

    def checkpoint_state(self) -> TaskState:
        dist = self.run.dist
        self.position.gather()
        states = dist.all_gather_tensor(self.gen.get_state()[None])  # [W, S] uint8
        gens: dict[str, torch.Generator] = {}
        for r in range(dist.world_size):
            g = torch.Generator()
            g.set_state(states[r].clone())
            gens[self._gen_name(r)] = g
        return TaskState(self.position, gens)

    def forward_module(self) -> torch.nn.Module:
        return self.forward

    def next_batch(self, step: int) -> _Batch:
        candidates = self.source.next(self.selector.super_batch)  # this rank's [B / W]
        with self.run.autocast():
            chosen = self.selector.select(
                model=self.model, candidates=candidates, generator=self.gen, device=self.run.device
            )
        index = chosen.index  # [b / W]
        if self.flexi:  # a random half at each patch size
            index = index[torch.randperm(self.local_batch, generator=self.gen)]
        pre = self.learner.preprocessing if self.hf else None  # None: curatorch's own
        images, tokens = candidates.take(index).to_device(self.run.device, pre)
        return _Batch(images, tokens, chosen)

    def losses(self, batch: _Batch) -> dict[str, torch.Tensor]:
        image_emb, text_emb, scale, bias = self.forward(batch.images, batch.tokens, self.half)
        share = sigmoid_contrastive_loss_sharded(
            image_emb.float(),
            text_emb.float(),
            logit_scale=scale,
            logit_bias=bias,
            rank=self.run.dist.rank,
            world_size=self.run.dist.world_size,
        )
        return {"sigmoid": share}

    def backward(
        self, terms: Mapping[str, torch.Tensor], *, grad_scale: float, diagnose: bool
    ) -> dict[str, Any]:
        loss = terms["sigmoid"]
        (loss * grad_scale if grad_scale != 1.0 else loss).backward()
        return {}

    def step_counters(self, batch: _Batch) -> dict[str, int]:
        w = self.run.dist.world_size
        return {
            "train": self.step_flops,
            "learner_scoring": batch.chosen.learner_flops * w,
            "reference_scoring": batch.chosen.reference_flops * w,
        }

    def data_counts(self) -> dict[str, int]:
        return self.source.counts()

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        cfg = self.cfg
        train_patch, _ = patch_sizes_for(cfg, self.learner)
        if self.shard_eval is not None:
            return self.shard_eval.evaluate(
                self.learner, patch_size=cfg.eval.patch_size or train_patch
            )
        if self.world is None:
            raise ValueError("evaluation on the built-in world needs the world (eval.source)")
        return evaluate(
            self.model,
            self.world.eval,
            patch_size=cfg.eval.patch_size or train_patch,
            batch_size=cfg.eval.batch_size,
            fewshot_l2=cfg.eval.fewshot_l2,
            device=self.run.device,
        )

    def record_extras(self, model: torch.nn.Module) -> dict[str, Any]:
        return {
            "logit_scale": float(self.learner.logit_scale.detach()),
            "logit_bias": float(self.learner.logit_bias.detach()),
        }

    def summary_extras(self, out: Path) -> dict[str, Any]:
        """An HF learner is also saved as a folder that ``from_pretrained`` loads."""
        if not self.hf:
            return {}
        folder = self.learner.save(out / "model")
        return {"model_folder": str(folder)}

    def close(self) -> None:
        source = getattr(self, "source", None)
        if source is not None:
            source.close()


def train(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    world: World | None = None,
    pool: PairDataset | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train a two-tower model as ``cfg`` says: :class:`ContrastiveTask` (``world``,
    ``pool``) in the one loop; returns the summary.

    ``options`` are :func:`curatorch.train.train_task`'s: ``resume``, ``overwrite``,
    ``progress``, ``on_eval``, ``dist`` (under torchrun every rank trains on ``b / W``
    examples per step under ``DistributedDataParallel``).
    """
    return train_task(ContrastiveTask(cfg, world=world, pool=pool), out_dir, **options)
