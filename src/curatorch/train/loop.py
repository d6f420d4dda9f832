"""The one training loop.

``train(cfg, out_dir)`` builds the world, the model and the optimizer from an
:class:`ExperimentConfig`, trains for ``cfg.train.steps`` steps, evaluates every
``eval_every`` steps into ``metrics.jsonl``, checkpoints atomically every
``checkpoint_every`` steps and returns a summary. Batch selection is a strategy
(``cfg.strategy``); the IID strategy takes each batch uniformly at random.
"""

from __future__ import annotations

import dataclasses
import json
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
from curatorch.losses import sigmoid_contrastive_loss
from curatorch.models import TwoTower, TwoTowerConfig, build_model, two_tower_forward_flops
from curatorch.train.checkpoint import (
    CheckpointError,
    atomic_write_text,
    latest_checkpoint,
    restore_training_state,
    save_training_state,
)
from curatorch.train.config import ExperimentConfig, OptimConfig, config_to_dict
from curatorch.train.model_config import model_config_for
from curatorch.train.records import append_jsonl, truncate_jsonl
from curatorch.train.reference import load_reference
from curatorch.train.sampler import EpochSampler
from curatorch.train.schedule import lr_at
from curatorch.train.strategy import Selector

__all__ = [
    "RUN_FILES",
    "OutputDirError",
    "TrainingError",
    "build_optimizer",
    "build_selector",
    "prepare_run_dir",
    "train",
]

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "checkpoints")

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


def prepare_run_dir(
    out_dir: str | os.PathLike[str], *, config: dict[str, Any], resume: bool, overwrite: bool
) -> bool:
    """Check and prepare the output folder; returns True when an earlier run is resumed.

    - A missing or empty folder starts a fresh run (also with ``resume``).
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
        probe = out / ".curatorch-write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise OutputDirError(f"output folder {out} is not writable: {exc}") from exc
    if not resuming:
        atomic_write_text(out / "config.json", json.dumps(config, indent=1) + "\n")
    return resuming


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW (or Adam) with weight decay only on matrices: biases, norms, positional
    embeddings and the temperature/bias scalars are not decayed."""
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
    kwargs = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, **kwargs)
    return torch.optim.Adam(groups, **kwargs)


def build_selector(
    cfg: ExperimentConfig,
    model_cfg: TwoTowerConfig,
    *,
    pool: PairDataset,
    device: torch.device,
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
    """
    from tqdm.auto import tqdm

    cfg.validate()
    out = Path(out_dir)
    cfg_dict = config_to_dict(cfg)
    resuming = prepare_run_dir(out, config=cfg_dict, resume=resume, overwrite=overwrite)
    t_start = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(cfg.train.device)

    if world is None:
        world = build_world(cfg.data)
    if pool is None:
        pool = world.curated if cfg.data.pool == "curated" else world.raw
    model_cfg: TwoTowerConfig = model_config_for(cfg, world)
    torch.manual_seed(cfg.train.seed)
    model: TwoTower = build_model(model_cfg).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    sampler = EpochSampler(len(pool), seed=cfg.train.seed)
    gen = torch.Generator().manual_seed(cfg.train.seed + 1)  # strategies' randomness
    patches = model_cfg.image.patch_sizes
    train_patch = cfg.model.train_patch_size or min(patches)
    eval_patch = cfg.eval.patch_size or train_patch
    flexi = cfg.strategy.name == "flexi-jest"
    batch = cfg.train.batch_size
    if flexi:  # half the batch at the finest, half at the coarsest patch size
        fine, coarse = min(patches), max(patches)
        half = batch // 2
        step_flops = 3 * (
            two_tower_forward_flops(model_cfg, fine) * half
            + two_tower_forward_flops(model_cfg, coarse) * (batch - half)
        )
    else:
        step_flops = 3 * two_tower_forward_flops(model_cfg, train_patch) * batch  # bwd = 2 fwd
    selector = build_selector(cfg, model_cfg, pool=pool, device=device)
    super_batch = selector.super_batch
    prog = _Progress(flops_reference_scoring=selector.setup_flops)
    metrics_path = out / "metrics.jsonl"

    if resuming:
        restored = restore_training_state(
            out, model=model, optimizer=optimizer, sampler=sampler, generators={"strategy": gen}
        )
        if restored is None:
            metrics_path.unlink(missing_ok=True)  # nothing to continue: a fresh start
        else:
            try:
                prog = _Progress(**restored["progress"])
            except (KeyError, TypeError) as exc:
                raise CheckpointError(f"checkpoint in {out} has no valid progress: {exc}") from exc
            truncate_jsonl(metrics_path, prog.step)

    autocast = (
        torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        if cfg.train.precision == "bf16"
        else nullcontext()
    )

    def checkpoint() -> Path:
        return save_training_state(
            out,
            step=prog.step,
            model=model,
            optimizer=optimizer,
            sampler=sampler,
            generators={"strategy": gen},
            state={
                "config": cfg_dict,
                "model_config": dataclasses.asdict(model_cfg),
                "progress": prog.__dict__,
            },
            keep=cfg.train.keep_checkpoints,
        )

    last_record: dict[str, Any] = {}

    def run_eval() -> dict[str, Any]:
        nonlocal last_record
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
        prog.loss_sum, prog.loss_count = 0.0, 0
        append_jsonl(metrics_path, record)
        if on_eval is not None:
            on_eval(record)
        last_record = record
        return record

    if prog.step == 0 and cfg.train.eval_at_start and not metrics_path.exists():
        run_eval()

    model.train()
    bar = tqdm(
        total=cfg.train.steps,
        initial=prog.step,
        desc=f"train {cfg.strategy.name}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    last_ckpt = latest_checkpoint(out)
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
        super_idx = sampler.draw(super_batch)  # [B] a uniform draw from the pool
        with autocast:
            chosen = selector.select(
                model=model, pool=pool, super_index=super_idx, generator=gen, device=device
            )
        idx = super_idx[chosen.index]  # [b]
        if flexi:  # a random half at each patch size
            idx = idx[torch.randperm(batch, generator=gen)]
        images = pool.image_batch(idx).to(device, non_blocking=True)
        tokens = pool.tokens[idx].to(device, non_blocking=True)
        with autocast:
            if flexi:
                image_emb = torch.cat(
                    [
                        model.encode_image(images[:half], patch_size=fine),
                        model.encode_image(images[half:], patch_size=coarse),
                    ]
                )
                text_emb = model.encode_text(tokens)
                scale, bias = model.logit_scale, model.logit_bias
            else:
                out_t = model(images, tokens, patch_size=train_patch)
                image_emb, text_emb = out_t["image_emb"], out_t["text_emb"]
                scale, bias = out_t["logit_scale"], out_t["logit_bias"]
            loss = sigmoid_contrastive_loss(
                image_emb.float(), text_emb.float(), logit_scale=scale, logit_bias=bias
            )
        if not torch.isfinite(loss):
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint yet"
            raise TrainingError(f"non-finite loss {float(loss)} at step {prog.step + 1} ({where})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()

        prog.step += 1
        prog.examples_seen += batch
        prog.flops_train += step_flops
        prog.flops_learner_scoring += chosen.learner_flops
        prog.flops_reference_scoring += chosen.reference_flops
        prog.loss_sum += float(loss.detach())
        prog.loss_count += 1
        steps_this_session += 1
        bar.update(1)
        if prog.step % 10 == 0 or prog.step == cfg.train.steps:
            elapsed = time.perf_counter() - t_loop
            bar.set_postfix(
                loss=f"{float(loss.detach()):.3f}",
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

    if not last_record:  # resumed a finished run: report its last record
        lines = (
            metrics_path.read_text(encoding="utf-8").splitlines() if metrics_path.exists() else []
        )
        last_record = json.loads(lines[-1]) if lines else run_eval()
    summary = {
        "run": str(out),
        "strategy": cfg.strategy.name,
        **{k: v for k, v in last_record.items() if k not in ("lr",)},
        "wall_s": round(time.perf_counter() - t_start, 3),
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
