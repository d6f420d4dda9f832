"""The one training loop.

``train(cfg, out_dir)`` builds the world, the model and the optimizer from an
:class:`ExperimentConfig`, trains for ``cfg.train.steps`` steps, evaluates every
``eval_every`` steps into ``metrics.jsonl``, checkpoints atomically every
``checkpoint_every`` steps and returns a summary. Batch selection is a strategy
(``cfg.strategy``); the IID strategy takes each batch uniformly at random.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from curatorch.data import PairDataset, World, build_world
from curatorch.eval import evaluate
from curatorch.losses import sigmoid_contrastive_loss_sharded
from curatorch.models import TwoTower, TwoTowerConfig, build_model, two_tower_forward_flops
from curatorch.train.checkpoint import (
    CheckpointError,
    atomic_temp_glob,
    atomic_write_text,
    latest_checkpoint,
    restore_training_state,
    save_training_state,
)
from curatorch.train.config import ExperimentConfig, OptimConfig, config_to_dict
from curatorch.train.distributed import DistContext
from curatorch.train.model_config import model_config_for
from curatorch.train.records import append_jsonl, truncate_jsonl
from curatorch.train.reference import load_reference
from curatorch.train.sampler import EpochSampler
from curatorch.train.schedule import lr_at
from curatorch.train.strategy import Candidates, Selector

__all__ = [
    "RUN_FILES",
    "OutputDirError",
    "TrainingError",
    "build_optimizer",
    "build_selector",
    "prepare_run_dir",
    "train",
]

RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "summary.json",
    "checkpoints",
    "reference",
    "reference-cache",
)

# ``strategy.reference`` value that trains the reference inside the run folder
AUTO_REFERENCE = "curated"

# keys of the config that may differ between a run and its resumption
_RESUMABLE_DIFFERENCES = {
    ("train", "device"),
    ("train", "threads"),
    ("eval", "batch_size"),
    ("data", "num_workers"),
}


class OutputDirError(ValueError):
    """The output folder cannot be used for this run; the message names it."""


class TrainingError(RuntimeError):
    """Training cannot go on (for instance a non-finite loss); names the step."""


def _config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if (section, key) in _RESUMABLE_DIFFERENCES:
                continue
            if a.get(key) != b.get(key):
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs


_WRITE_PROBE = ".curatorch-write-test"


def _is_start_leftover(name: str) -> bool:
    """What a kill inside :func:`prepare_run_dir` can leave: the write probe or the
    temporary file of an unfinished ``config.json``."""
    return name == _WRITE_PROBE or fnmatch.fnmatchcase(name, atomic_temp_glob("config.json"))


def prepare_run_dir(
    out_dir: str | os.PathLike[str], *, config: dict[str, Any], resume: bool, overwrite: bool
) -> bool:
    """Check and prepare the output folder; returns True when an earlier run is resumed.

    - A missing or empty folder starts a fresh run (also with ``resume``); so does one
      that holds only what a start killed inside this function leaves (the write probe,
      a temporary ``config.json``), which is removed.
    - A folder holding a run is resumed with ``resume`` (its config must match, apart from
      device and thread settings), replaced with ``overwrite``, and refused otherwise.
    - A non-empty folder that holds no run is refused (nothing of it is touched).
    - An unwritable folder fails here, before any training.
    Raises :class:`OutputDirError` naming the folder.
    """
    out = Path(out_dir)
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite cannot be used together")
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output path {out} exists and is not a folder")
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    holds_run = (out / "config.json").is_file()
    if not holds_run and existing and all(_is_start_leftover(n) for n in existing):
        # a start killed while it probed the folder or wrote config.json: nothing to keep
        for name in existing:
            (out / name).unlink(missing_ok=True)
        existing = []
    resuming = False
    if existing:
        if not holds_run:
            raise OutputDirError(
                f"output folder {out} is not empty and holds no curatorch run "
                f"({', '.join(existing[:5])}); choose another --out"
            )
        if resume:
            try:
                old = json.loads((out / "config.json").read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise OutputDirError(f"{out / 'config.json'} is unreadable: {exc}") from exc
            diffs = _config_differences(old, config)
            if diffs:
                raise OutputDirError(
                    f"cannot resume {out}: its config differs ({'; '.join(diffs[:4])})"
                )
            resuming = True
        elif overwrite:
            for name in RUN_FILES:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        else:
            raise OutputDirError(
                f"output folder {out} already holds a run; pass --resume to continue it "
                f"or --overwrite to replace it"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / _WRITE_PROBE
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(f"output folder {out} is not writable: {exc}") from exc
    if not resuming:
        atomic_write_text(out / "config.json", json.dumps(config, indent=1) + "\n")
    return resuming


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, *, fused: bool = False
) -> torch.optim.Optimizer:
    """AdamW (or Adam) with weight decay only on matrices: biases, norms, positional
    embeddings and the temperature/bias scalars are not decayed. ``fused`` selects the
    fused CUDA implementation (parameters must be on a GPU)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "pos" in name.split(".")[-1]:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if fused:
        kwargs["fused"] = True
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    return torch.optim.Adam(groups, **kwargs)


def build_selector(
    cfg: ExperimentConfig,
    model_cfg: TwoTowerConfig,
    *,
    pool: PairDataset,
    device: torch.device,
    dist: DistContext | None = None,
) -> Selector:
    """The :class:`Selector` that ``cfg.strategy`` describes (loads the reference)."""
    st = cfg.strategy
    patches = model_cfg.image.patch_sizes
    train_patch = cfg.model.train_patch_size or min(patches)
    default_score_patch = max(patches) if st.name == "flexi-jest" else train_patch
    score_patch = st.score_patch_size or default_score_patch
    if score_patch not in patches:
        raise ValueError(
            f"strategy.score_patch_size must be one of the model's patch sizes {list(patches)}, "
            f"got {score_patch}"
        )
    reference = None
    if st.needs_reference:
        reference = load_reference(
            st.reference, data=cfg.data, pool_name=cfg.data.pool, pool=pool, device=device
        )
    return Selector(
        name=st.name,
        score=st.score,
        batch_size=cfg.train.batch_size,
        super_batch=cfg.super_batch_size,
        chunks=st.chunks,
        mode=st.mode,
        score_patch_size=score_patch,
        learner_forward_flops=two_tower_forward_flops(model_cfg, score_patch),
        reference=reference,
        dist=dist,
    )


def _build_shard_selector(
    cfg: ExperimentConfig,
    model_cfg: TwoTowerConfig,
    *,
    shards: list[str],
    device: torch.device,
    dist: DistContext,
) -> Selector:
    """The :class:`Selector` for shard data: the reference is a per-shard cache."""
    st = cfg.strategy
    reference = None
    if st.needs_reference:
        from curatorch.train.shard_reference import load_shard_reference

        reference = load_shard_reference(st.reference, urls=shards)
    patches = model_cfg.image.patch_sizes
    train_patch = cfg.model.train_patch_size or min(patches)
    score_patch = st.score_patch_size or (max(patches) if st.name == "flexi-jest" else train_patch)
    if score_patch not in patches:
        raise ValueError(
            f"strategy.score_patch_size must be one of the model's patch sizes {list(patches)}, "
            f"got {score_patch}"
        )
    return Selector(
        name=st.name,
        score=st.score,
        batch_size=cfg.train.batch_size,
        super_batch=cfg.super_batch_size,
        chunks=st.chunks,
        mode=st.mode,
        score_patch_size=score_patch,
        learner_forward_flops=two_tower_forward_flops(model_cfg, score_patch),
        reference=reference,
        dist=dist,
    )


@dataclass
class _Progress:
    """Counters that a checkpoint carries."""

    step: int = 0
    examples_seen: int = 0
    flops_train: int = 0
    flops_learner_scoring: int = 0
    flops_reference_scoring: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    skipped_steps: int = 0


class _PoolSource:
    """Super-batches drawn from an in-memory pool; rank ``r`` keeps the ``r``-th slice.

    Every rank runs the same global sampler (same seed), so the global super-batch is the
    same everywhere and only this rank's ``B / W`` examples are materialised.
    """

    def __init__(self, pool: PairDataset, *, seed: int, dist: DistContext) -> None:
        self.pool = pool
        self.sampler = EpochSampler(len(pool), seed=seed)
        self.dist = dist
        self.per_rank_state = False  # the sampler is identical on every rank

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


class _ShardSource:
    """Super-batches streamed from WebDataset shards; each rank reads its own shards."""

    def __init__(self, stream: Any, *, dist: DistContext) -> None:
        self.stream = stream
        self.dist = dist
        self.per_rank_state = True

    def next(self, global_size: int) -> Candidates:
        b = self.stream.next_batch(global_size // self.dist.world_size)
        return Candidates(b.images, b.tokens, keys=list(b.keys), shards=list(b.shards))

    def counts(self) -> dict[str, int]:
        return dict(self.stream.counts())

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


class _CheckpointedState:
    """The data source's position as :func:`save_training_state` stores it: one state, or
    (sources that differ per rank) ``{"ranks": [state of rank 0, 1, ...]}``."""

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

    def __init__(self, model: TwoTower, *, patch_size: int, flexi: tuple[int, int] | None):
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
        out = model(images, tokens, patch_size=self.patch_size)
        return out["image_emb"], out["text_emb"], out["logit_scale"], out["logit_bias"]


def _grads_finite(model: torch.nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _auto_reference(
    cfg: ExperimentConfig,
    out: Path,
    *,
    world: World,
    shards: list[str],
    dist: DistContext,
    progress: bool,
) -> Path:
    """``strategy.reference = "curated"``: train a reference on the world's curated pool
    into ``out/reference`` and cache its embeddings of the training data in
    ``out/reference-cache`` (rank 0; reused when present); returns the cache folder."""
    from curatorch.data.embedding_cache import is_embedding_cache
    from curatorch.train.config import StrategyConfig
    from curatorch.train.reference import embed_pool

    cache = out / "reference-cache"
    if dist.is_main and not (cache / "meta.json").is_file():
        ckpt = out / "reference"
        ref_cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, pool="curated", shards=""),
            train=dataclasses.replace(
                cfg.train, steps=cfg.strategy.reference_steps or cfg.train.steps
            ),
            strategy=StrategyConfig(),
        )
        train(ref_cfg, ckpt, resume=True, progress=progress, world=world)
        if shards:
            from curatorch.train.shard_reference import embed_shards

            embed_shards(
                ckpt,
                urls=shards,
                tokenizer=world.tokenizer,
                image_size=cfg.data.image_size,
                out=cache,
                device=cfg.train.device,
                progress=progress,
            )
        else:
            embed_pool(
                ckpt,
                world=world,
                data=cfg.data,
                pool_name=cfg.data.pool,
                out=cache,
                device=cfg.train.device,
                progress=progress,
            )
        if not shards and not is_embedding_cache(cache):
            raise TrainingError(f"the reference cache {cache} was not written")
    dist.barrier()
    return cache


def _prepare_shared(
    out: Path, *, config: dict[str, Any], resume: bool, overwrite: bool, dist: DistContext
) -> bool:
    """:func:`prepare_run_dir` on rank 0; its outcome (or its error) on every rank."""
    outcome: tuple[str, Any]
    if dist.is_main:
        try:
            outcome = (
                "ok",
                prepare_run_dir(out, config=config, resume=resume, overwrite=overwrite),
            )
        except OutputDirError as exc:
            outcome = ("error", str(exc))
        outcome = dist.broadcast_object(outcome)
    else:
        outcome = dist.broadcast_object(None)
    if outcome[0] == "error":
        raise OutputDirError(outcome[1])
    return bool(outcome[1])


def train(
    cfg: ExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
    pool: PairDataset | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train a two-tower model as configured; returns the final summary record.

    Args:
        cfg: the validated experiment config.
        out_dir: the run folder (see :func:`prepare_run_dir`).
        resume: continue from the folder's latest checkpoint (a fresh run if it has none).
        overwrite: replace the run the folder holds.
        progress: show a tqdm progress bar on stderr.
        world: a prebuilt world for ``cfg.data`` (saves regenerating it), else built here.
        pool: train on this dataset instead of the world's ``cfg.data.pool`` (for
            experiments on sub-pools, e.g. quality buckets); evaluation still uses the
            world's held-out sets.
        on_eval: called with every metrics record as it is written.
        dist: this process's place in a data-parallel job (``torchrun``; the default
            process group must be initialised). Every rank trains on ``b / W`` examples
            per step under ``DistributedDataParallel``; only rank 0 evaluates and writes
            metrics, checkpoints and the progress bar.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    dist = dist or DistContext()
    main = dist.is_main
    w = dist.world_size
    out = Path(out_dir)
    cfg_dict = config_to_dict(cfg)
    resuming = _prepare_shared(out, config=cfg_dict, resume=resume, overwrite=overwrite, dist=dist)
    t_start = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)

    if world is None:
        world = build_world(cfg.data)
    shards: list[str] = []
    if cfg.data.shards:
        if pool is not None:
            raise ValueError("train(pool=...) and data.shards cannot be used together")
        from curatorch.data.shards import ShardStream, expand_shards

        shards = expand_shards(cfg.data.shards)
        stream = ShardStream(
            shards,
            image_size=cfg.data.image_size,
            tokenizer=world.tokenizer,
            rank=dist.rank,
            world_size=w,
            num_workers=cfg.data.num_workers,
            seed=cfg.train.seed,
            max_corrupt_ratio=cfg.data.max_corrupt_ratio,
        )
        source: _PoolSource | _ShardSource = _ShardSource(stream, dist=dist)
    else:
        if pool is None:
            pool = world.curated if cfg.data.pool == "curated" else world.raw
        source = _PoolSource(pool, seed=cfg.train.seed, dist=dist)
    model_cfg: TwoTowerConfig = model_config_for(cfg, world)
    torch.manual_seed(cfg.train.seed)
    model: TwoTower = build_model(model_cfg).to(device)
    optimizer = build_optimizer(model, cfg.optim, fused=device.type == "cuda")
    # the strategies' randomness; rank 0 keeps the single-process stream
    gen = torch.Generator().manual_seed(cfg.train.seed + 1 + 1_000_003 * dist.rank)
    gen_name = "strategy" if dist.rank == 0 else f"strategy.rank{dist.rank}"
    patches = model_cfg.image.patch_sizes
    train_patch = cfg.model.train_patch_size or min(patches)
    eval_patch = cfg.eval.patch_size or train_patch
    flexi = cfg.strategy.name == "flexi-jest"
    batch = cfg.train.batch_size
    if batch % w:
        raise ValueError(f"train.batch_size={batch} must be divisible by the {w} processes")
    local_batch = batch // w
    fine, coarse = min(patches), max(patches)
    half = local_batch // 2
    if flexi:  # half the batch at the finest, half at the coarsest patch size
        step_flops = (
            3
            * w
            * (
                two_tower_forward_flops(model_cfg, fine) * half
                + two_tower_forward_flops(model_cfg, coarse) * (local_batch - half)
            )
        )
    else:
        step_flops = 3 * two_tower_forward_flops(model_cfg, train_patch) * batch  # bwd = 2 fwd
    sel_cfg = cfg
    if cfg.strategy.needs_reference and cfg.strategy.reference == AUTO_REFERENCE:
        rng = torch.get_rng_state()  # the reference's training must not shift this run
        cache = _auto_reference(
            cfg, out, world=world, shards=shards, dist=dist, progress=progress and main
        )
        torch.set_rng_state(rng)
        sel_cfg = dataclasses.replace(
            cfg, strategy=dataclasses.replace(cfg.strategy, reference=str(cache))
        )
    if shards:
        selector = _build_shard_selector(
            sel_cfg, model_cfg, shards=shards, device=device, dist=dist
        )
    else:
        assert pool is not None
        selector = build_selector(sel_cfg, model_cfg, pool=pool, device=device, dist=dist)
    super_batch = selector.super_batch
    prog = _Progress(flops_reference_scoring=selector.setup_flops)
    metrics_path = out / "metrics.jsonl"
    position = _CheckpointedState(source, dist)

    if resuming:
        folder = latest_checkpoint(out)
        if folder is not None:
            saved_w = json.loads((folder / "state.json").read_text(encoding="utf-8")).get(
                "world_size", 1
            )
            if saved_w != w:
                raise CheckpointError(
                    f"checkpoint {folder} was written by {saved_w} process(es); resume it "
                    f"with --nproc_per_node={saved_w} (this run has {w})"
                )
        restored = restore_training_state(
            out, model=model, optimizer=optimizer, sampler=position, generators={gen_name: gen}
        )
        if restored is None:
            if main:
                metrics_path.unlink(missing_ok=True)  # nothing to continue: a fresh start
        else:
            try:
                prog = _Progress(**restored["progress"])
            except (KeyError, TypeError) as exc:
                raise CheckpointError(f"checkpoint in {out} has no valid progress: {exc}") from exc
            if main:
                truncate_jsonl(metrics_path, prog.step)
    dist.barrier()

    forward: torch.nn.Module = _TrainForward(
        model, patch_size=train_patch, flexi=(fine, coarse) if flexi else None
    )
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(
            forward,
            device_ids=[device.index] if device.type == "cuda" else None,
        )
    if cfg.train.compile:
        forward = torch.compile(forward)  # type: ignore[assignment]

    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.train.precision == "bf16"
        else nullcontext()
    )

    def checkpoint() -> Path | None:  # collective: every rank calls it
        position.gather()
        states = dist.all_gather_tensor(gen.get_state()[None])  # [W, S] uint8
        if not main:
            return None
        for p in model.parameters():
            if not torch.isfinite(p).all():  # never let a NaN reach a checkpoint
                raise TrainingError(f"non-finite weights at step {prog.step}; not checkpointed")
        gens: dict[str, torch.Generator] = {}
        for r in range(w):
            g = torch.Generator()
            g.set_state(states[r].clone())
            gens["strategy" if r == 0 else f"strategy.rank{r}"] = g
        return save_training_state(
            out,
            step=prog.step,
            model=model,
            optimizer=optimizer,
            sampler=position,
            generators=gens,
            state={
                "config": cfg_dict,
                "model_config": dataclasses.asdict(model_cfg),
                "progress": prog.__dict__,
                "world_size": w,
            },
            keep=cfg.train.keep_checkpoints,
        )

    last_record: dict[str, Any] = {}

    def run_eval() -> dict[str, Any]:  # collective: every rank calls it
        nonlocal last_record
        counts: dict[str, int] = {}
        for c in dist.all_gather_object(source.counts()):
            for k, v in c.items():
                counts[f"data_{k}"] = counts.get(f"data_{k}", 0) + int(v)
        if not main:
            prog.loss_sum, prog.loss_count = 0.0, 0
            return {}
        with autocast:
            scores = evaluate(
                model,
                world.eval,
                patch_size=eval_patch,
                batch_size=cfg.eval.batch_size,
                fewshot_l2=cfg.eval.fewshot_l2,
                device=device,
            )
        record = {
            "step": prog.step,
            "examples_seen": prog.examples_seen,
            "flops": prog.flops_train,
            "flops_train": prog.flops_train,
            "flops_learner_scoring": prog.flops_learner_scoring,
            "flops_reference_scoring": prog.flops_reference_scoring,
            "flops_total": prog.flops_train
            + prog.flops_learner_scoring
            + prog.flops_reference_scoring,
            **scores,
            "train_loss": prog.loss_sum / prog.loss_count if prog.loss_count else None,
            "lr": optimizer.param_groups[0]["lr"],
            "logit_scale": float(model.logit_scale.detach()),
            "logit_bias": float(model.logit_bias.detach()),
        }
        if prog.skipped_steps:
            record["skipped_steps"] = prog.skipped_steps
        record.update(counts)
        prog.loss_sum, prog.loss_count = 0.0, 0
        append_jsonl(metrics_path, record)
        if on_eval is not None:
            on_eval(record)
        last_record = record
        return record

    fresh_metrics = not metrics_path.exists() if main else True
    if prog.step == 0 and cfg.train.eval_at_start and dist.broadcast_object(fresh_metrics):
        run_eval()

    model.train()
    bar = tqdm(
        total=cfg.train.steps,
        initial=prog.step,
        desc=f"train {cfg.strategy.name}" + (f" x{w}" if w > 1 else ""),
        unit="step",
        disable=not (progress and main),
        dynamic_ncols=True,
        mininterval=0.5,
    )
    last_ckpt = latest_checkpoint(out) if main else None
    t_loop = time.perf_counter()
    steps_this_session = 0
    while prog.step < cfg.train.steps:
        lr = lr_at(
            prog.step,
            base_lr=cfg.optim.lr,
            total_steps=cfg.train.steps,
            warmup_steps=cfg.optim.warmup_steps,
            min_lr_ratio=cfg.optim.min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        try:
            candidates = source.next(super_batch)  # this rank's [B / W]
        except RuntimeError as exc:  # DataFaultError: too many corrupt samples
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint yet"
            raise TrainingError(f"step {prog.step + 1}: {exc} ({where})") from exc
        with autocast:
            chosen = selector.select(
                model=model, candidates=candidates, generator=gen, device=device
            )
        index = chosen.index  # [b / W]
        if flexi:  # a random half at each patch size
            index = index[torch.randperm(local_batch, generator=gen)]
        images, tokens = candidates.take(index).to_device(device)
        with autocast:
            image_emb, text_emb, scale, bias = forward(images, tokens, half)
            share = sigmoid_contrastive_loss_sharded(
                image_emb.float(),
                text_emb.float(),
                logit_scale=scale,
                logit_bias=bias,
                rank=dist.rank,
                world_size=w,
            )
        loss_value = dist.all_reduce_sum(float(share.detach()))  # the global batch loss
        optimizer.zero_grad(set_to_none=True)
        finite = math.isfinite(loss_value)
        if finite:
            (share * w if w > 1 else share).backward()  # DDP averages over ranks
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
            finite = _grads_finite(model)
        if not finite:
            what = "loss" if not math.isfinite(loss_value) else "gradient"
            if cfg.train.on_nonfinite == "stop":
                where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint yet"
                raise TrainingError(
                    f"non-finite {what} (loss {loss_value}) at step {prog.step + 1} ({where}); "
                    f'set train.on_nonfinite = "skip" to skip such steps'
                )
            optimizer.zero_grad(set_to_none=True)
            prog.skipped_steps += 1
            bar.write(f"step {prog.step + 1}: non-finite {what}, update skipped")
        else:
            optimizer.step()
            prog.loss_sum += loss_value
            prog.loss_count += 1

        prog.step += 1
        prog.examples_seen += batch
        prog.flops_train += step_flops
        prog.flops_learner_scoring += chosen.learner_flops * w
        prog.flops_reference_scoring += chosen.reference_flops * w
        steps_this_session += 1
        bar.update(1)
        if main and (prog.step % 10 == 0 or prog.step == cfg.train.steps):
            elapsed = time.perf_counter() - t_loop
            bar.set_postfix(
                loss=f"{loss_value:.3f}",
                img_s=f"{steps_this_session * batch / max(elapsed, 1e-9):.0f}",
                score=f"{last_record.get('mean_score', float('nan')):.3f}",
            )
        last = prog.step == cfg.train.steps
        if prog.step % cfg.train.eval_every == 0 or last:
            run_eval()
            model.train()
        if prog.step % cfg.train.checkpoint_every == 0 or last:
            last_ckpt = checkpoint()
    bar.close()
    if isinstance(source, _ShardSource):
        source.stream.close()

    del forward  # DDP's reducer holds the process group: release it before teardown
    if main and not last_record:  # resumed a finished run: report its last record
        lines = (
            metrics_path.read_text(encoding="utf-8").splitlines() if metrics_path.exists() else []
        )
        last_record = json.loads(lines[-1]) if lines else {}
    if dist.broadcast_object(main and not last_record):  # no record at all: evaluate now
        run_eval()  # collective
    if not main:
        dist.barrier()  # pairs with rank 0's below: no rank leaves while rank 0 writes
        return {"run": str(out), "strategy": cfg.strategy.name, "rank": dist.rank}
    summary = {
        "run": str(out),
        "strategy": cfg.strategy.name,
        **{k: v for k, v in last_record.items() if k not in ("lr",)},
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    if w > 1:
        summary["world_size"] = w
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    dist.barrier()
    return summary
