"""Training a multimodal classifier with a gradient integrator (MMPareto and baselines).

``train_multimodal(cfg, out_dir)`` builds the data (coloured-and-gray digits or ``.npz``
arrays), a :class:`~curatorch.models.MultimodalClassifier` and the integrator named by
``cfg.pareto.method``; each step takes a seeded batch (:class:`EpochSampler`), computes the
multimodal loss and one unimodal loss per modality (cross-entropy, logged under their
names) and lets the integrator fill ``.grad``. It evaluates every ``eval_every`` steps into
``metrics.jsonl``, writes per-step gradient diagnostics (``cos(g_m, g_u)`` per modality,
...) every ``diag_every`` steps into ``diagnostics.jsonl``, checkpoints atomically and
resumes exactly. Same seed, same result on CPU.

The output-folder rules are :func:`curatorch.train.prepare_run_dir`'s. Config files are
TOML with the sections ``[data] [model] [optim] [train] [pareto] [compare]``; unknown keys
and wrong types are a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from curatorch.data import MultimodalDataset, MultimodalSplits, coloured_gray_digits
from curatorch.data import load_npz_dataset as _load_npz
from curatorch.models import ENCODER_KINDS, MultimodalClassifier, MultimodalClassifierConfig
from curatorch.pareto import INTEGRATORS, SCALES, GradientIntegrator, build_integrator
from curatorch.pareto import true_class_confidence as _confidence
from curatorch.train.checkpoint import (
    atomic_write_text,
    latest_checkpoint,
    restore_training_state,
    save_training_state,
)
from curatorch.train.config import (
    ConfigError,
    apply_overrides,
    read_toml,
    sections_from_dict,
    sections_to_dict,
)
from curatorch.train.loop import TrainingError, prepare_run_dir
from curatorch.train.records import append_jsonl, read_jsonl, truncate_jsonl
from curatorch.train.sampler import EpochSampler
from curatorch.train.schedule import lr_at

__all__ = [
    "DATASETS",
    "OPTIMIZERS",
    "CompareSection",
    "MultimodalDataSection",
    "MultimodalModelSection",
    "MultimodalOptimSection",
    "MultimodalTrainSection",
    "ParetoExperimentConfig",
    "ParetoSection",
    "build_multimodal_optimizer",
    "build_multimodal_splits",
    "evaluate_multimodal",
    "load_pareto_config",
    "pareto_config_from_dict",
    "pareto_config_to_dict",
    "train_multimodal",
]

DATASETS = ("coloured_gray_digits", "npz")


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MultimodalDataSection:
    """The data. ``coloured_gray_digits``: built from sklearn's digits (``seed``,
    ``test_fraction``, ``colour_variance`` 0.03 by the benchmark's definition). ``npz``:
    ``train_path`` and ``test_path`` files (one array per modality plus ``label_key``).
    ``modalities`` empty means all of the data's modalities."""

    dataset: str = "coloured_gray_digits"
    seed: int = 0
    test_fraction: float = 0.3
    colour_variance: float = 0.03
    train_path: str = ""
    test_path: str = ""
    label_key: str = "labels"
    modalities: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"data.dataset must be one of {list(DATASETS)}, got {self.dataset!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not (self.colour_variance >= 0 and math.isfinite(self.colour_variance)):
            raise ConfigError(
                f"data.colour_variance must be a finite number >= 0, got {self.colour_variance}"
            )
        if self.dataset == "npz" and not (self.train_path and self.test_path):
            raise ConfigError(
                "data.train_path and data.test_path are required for data.dataset = 'npz', "
                f"got {self.train_path!r} and {self.test_path!r}"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"data.modalities must be unique, got {list(self.modalities)}")


@dataclass(frozen=True)
class MultimodalModelSection:
    """The classifier: encoder kind (``mlp`` or ``conv``), hidden width, feature size."""

    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64

    def validate(self) -> None:
        if self.encoder not in ENCODER_KINDS:
            raise ConfigError(
                f"model.encoder must be one of {list(ENCODER_KINDS)}, got {self.encoder!r}"
            )
        for key in ("hidden", "embed_dim"):
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be >= 1, got {getattr(self, key)}")


OPTIMIZERS = ("sgd", "adamw", "adam")


@dataclass(frozen=True)
class MultimodalOptimSection:
    """Optimizer and schedule (linear warmup, cosine decay to ``min_lr_ratio * lr``).

    SGD with momentum is the MMPareto authors' default; note that Adam-type optimizers are
    nearly invariant to gradient scale, which cancels MMPareto's magnitude rule (gamma).
    """

    name: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0

    def validate(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optim.name must be one of {list(OPTIMIZERS)}, got {self.name!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optim.lr must be a positive finite number, got {self.lr}")
        for key in ("momentum", "beta1", "beta2"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"optim.{key} must be in [0, 1), got {getattr(self, key)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(
                f"optim.weight_decay must be a finite number >= 0, got {self.weight_decay}"
            )
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (self.grad_clip >= 0 and math.isfinite(self.grad_clip)):
            raise ConfigError(
                f"optim.grad_clip must be a finite number >= 0 (0 disables), got {self.grad_clip}"
            )


def build_multimodal_optimizer(
    model: torch.nn.Module, cfg: MultimodalOptimSection
) -> torch.optim.Optimizer:
    """SGD (momentum), AdamW or Adam; weight decay on matrices and kernels only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


@dataclass(frozen=True)
class MultimodalTrainSection:
    """Length, batch size and cadences; ``diag_every`` is the cadence of the gradient
    diagnostics (0 disables them for methods that do not need per-loss gradients)."""

    steps: int = 600
    batch_size: int = 64
    eval_every: int = 200
    checkpoint_every: int = 600
    keep_checkpoints: int = 1
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    diag_every: int = 5
    eval_batch_size: int = 1024

    def validate(self) -> None:
        for key in (
            "steps",
            "batch_size",
            "eval_every",
            "checkpoint_every",
            "keep_checkpoints",
            "eval_batch_size",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if self.threads < 0:
            raise ConfigError(f"train.threads must be >= 0 (0 = torch default), got {self.threads}")
        if self.diag_every < 0:
            raise ConfigError(f"train.diag_every must be >= 0, got {self.diag_every}")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(
                f"train.device must be 'cpu', 'cuda[:N]' or 'mps', got {self.device!r}"
            )


@dataclass(frozen=True)
class ParetoSection:
    """The gradient integrator: ``method`` (see :data:`curatorch.pareto.INTEGRATORS`),
    MMPareto's ``gamma`` and ``scale``, OGM-GE's ``ogm_alpha``."""

    method: str = "mmpareto"
    gamma: float = 1.5
    scale: str = "tensor"
    ogm_alpha: float = 0.5

    def validate(self) -> None:
        if self.method not in INTEGRATORS:
            raise ConfigError(
                f"pareto.method must be one of {sorted(INTEGRATORS)}, got {self.method!r}"
            )
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"pareto.gamma must be a positive number, got {self.gamma}")
        if self.scale not in SCALES:
            raise ConfigError(f"pareto.scale must be one of {list(SCALES)}, got {self.scale!r}")
        if not (math.isfinite(self.ogm_alpha) and self.ogm_alpha >= 0):
            raise ConfigError(f"pareto.ogm_alpha must be >= 0, got {self.ogm_alpha}")


@dataclass(frozen=True)
class CompareSection:
    """``curatorch pareto compare``: ``methods`` x ``seeds``, plus each modality in
    ``alone`` trained by itself (one encoder, one head) for every seed."""

    methods: tuple[str, ...] = ("uniform", "multimodal", "mgda", "pcgrad", "ogm_ge", "mmpareto")
    seeds: tuple[int, ...] = (0, 1, 2)
    alone: tuple[str, ...] = ("gray", "colour")

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in INTEGRATORS]
        if unknown or not self.methods:
            raise ConfigError(
                f"compare.methods must be non-empty names from {sorted(INTEGRATORS)}, "
                f"got {list(self.methods)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"compare.seeds must be non-empty and unique, got {list(self.seeds)}")


@dataclass(frozen=True)
class ParetoExperimentConfig:
    """A multimodal-classifier experiment: one section per concern."""

    data: MultimodalDataSection = field(default_factory=MultimodalDataSection)
    model: MultimodalModelSection = field(default_factory=MultimodalModelSection)
    optim: MultimodalOptimSection = field(default_factory=MultimodalOptimSection)
    train: MultimodalTrainSection = field(default_factory=MultimodalTrainSection)
    pareto: ParetoSection = field(default_factory=ParetoSection)
    compare: CompareSection = field(default_factory=CompareSection)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()


_SECTIONS: dict[str, type] = {
    f.name: f.default_factory for f in dataclasses.fields(ParetoExperimentConfig)
}  # type: ignore[misc]


def pareto_config_from_dict(raw: Mapping[str, Any]) -> ParetoExperimentConfig:
    """Build and validate a :class:`ParetoExperimentConfig` from nested dicts."""
    cfg = ParetoExperimentConfig(**sections_from_dict(_SECTIONS, raw))
    cfg.validate()
    return cfg


def pareto_config_to_dict(cfg: ParetoExperimentConfig) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (tuples become lists)."""
    return sections_to_dict(cfg, _SECTIONS)


def load_pareto_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> ParetoExperimentConfig:
    """Read a TOML config, apply ``--set section.key=value`` overrides and validate."""
    raw = read_toml(path)
    try:
        return pareto_config_from_dict(apply_overrides(raw, overrides, _SECTIONS))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------ data
def build_multimodal_splits(cfg: MultimodalDataSection) -> MultimodalSplits:
    """The train and test splits ``cfg`` describes (all modalities)."""
    cfg.validate()
    if cfg.dataset == "coloured_gray_digits":
        return coloured_gray_digits(
            seed=cfg.seed, test_fraction=cfg.test_fraction, colour_variance=cfg.colour_variance
        )
    train = _load_npz(cfg.train_path, label_key=cfg.label_key)
    test = _load_npz(cfg.test_path, label_key=cfg.label_key, modalities=train.modalities)
    n_cls = max(train.num_classes, test.num_classes)
    if train.input_shapes() != test.input_shapes():
        raise ConfigError(
            f"data.train_path and data.test_path have different modality shapes: "
            f"{train.input_shapes()} vs {test.input_shapes()}"
        )
    fix = lambda d: dataclasses.replace(d, num_classes=n_cls)  # noqa: E731
    return MultimodalSplits(train=fix(train), test=fix(test))


@torch.no_grad()
def evaluate_multimodal(
    model: MultimodalClassifier,
    dataset: MultimodalDataset,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy (fraction in [0, 1]) of the fused prediction (``acc``) and of each
    unimodal head (``acc/<modality>``) on ``dataset``."""
    was_training = model.training
    model.eval()
    correct: dict[str, int] = {}
    for start in range(0, len(dataset), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(dataset)))
        inputs, labels = dataset.batch(idx)
        inputs = {m: x.to(device) for m, x in inputs.items()}
        labels = labels.to(device)
        out = model(inputs)
        preds = {"acc": out["logits"], **{f"acc/{m}": v for m, v in out["unimodal_logits"].items()}}
        for key, logits in preds.items():
            correct[key] = correct.get(key, 0) + int((logits.argmax(1) == labels).sum())
    model.train(was_training)
    return {k: v / max(len(dataset), 1) for k, v in correct.items()}


# ----------------------------------------------------------------------------- train
def train_multimodal(
    cfg: ParetoExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    splits: MultimodalSplits | None = None,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a multimodal classifier with ``cfg.pareto.method``; returns the summary.

    Args:
        cfg: the validated config; ``cfg.data.modalities`` picks the modalities (one
            modality trains it alone: its encoder, the fusion head over it and its head).
        out_dir: the run folder (see :func:`curatorch.train.prepare_run_dir`).
        resume: continue from the folder's latest checkpoint.
        overwrite: replace the run the folder holds.
        progress: tqdm progress bar on stderr.
        splits: prebuilt data for ``cfg.data`` (saves rebuilding it).
        on_eval: called with every metrics record.

    Summary keys: ``test_acc`` (fused), ``test_acc/<modality>`` (unimodal heads),
    ``step_time_s`` (median seconds per training step on steps without extra
    diagnostics), ``conflict_rate/<m>`` and ``mean_cos/<m>`` over the diagnosed steps.
    """
    from tqdm.auto import tqdm

    cfg.validate()
    out = Path(out_dir)
    cfg_dict = pareto_config_to_dict(cfg)
    resuming = prepare_run_dir(out, config=cfg_dict, resume=resume, overwrite=overwrite)
    t_start = time.perf_counter()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = torch.device(cfg.train.device)
    if splits is None:
        splits = build_multimodal_splits(cfg.data)
    train_set, test_set = splits.train, splits.test
    if cfg.data.modalities:
        try:
            train_set = train_set.select(cfg.data.modalities)
            test_set = test_set.select(cfg.data.modalities)
        except ValueError as exc:
            raise ConfigError(f"data.modalities: {exc}") from exc
    mods = train_set.modalities
    shapes = train_set.input_shapes()
    model_cfg = MultimodalClassifierConfig(
        modalities=mods,
        input_shapes=tuple(shapes[m] for m in mods),
        num_classes=train_set.num_classes,
        encoder=cfg.model.encoder,
        hidden=cfg.model.hidden,
        embed_dim=cfg.model.embed_dim,
    )
    torch.manual_seed(cfg.train.seed)
    model = MultimodalClassifier(model_cfg).to(device)
    optimizer = build_multimodal_optimizer(model, cfg.optim)
    sampler = EpochSampler(len(train_set), seed=cfg.train.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.train.seed + 17)
    method = cfg.pareto.method
    options: dict[str, Any] = {}
    if method == "mmpareto":
        options = {"gamma": cfg.pareto.gamma, "scale": cfg.pareto.scale}
    elif method == "ogm_ge":
        options = {"alpha": cfg.pareto.ogm_alpha, "generator": noise_gen}
    try:
        integ: GradientIntegrator = build_integrator(
            method, encoders=model.encoder_parameters(), heads=model.head_parameters(), **options
        )
    except ValueError as exc:
        raise ConfigError(f"pareto.method {method!r}: {exc}") from exc

    metrics_path = out / "metrics.jsonl"
    diag_path = out / "diagnostics.jsonl"
    step = 0
    step_times: list[float] = []
    # training-loss sums of the evaluation window in progress: checkpointed, so that a
    # resumed run logs the same train_* means as an uninterrupted one
    loss_sums: dict[str, float] = {}
    loss_count = 0
    if resuming:
        restored = restore_training_state(
            out, model=model, optimizer=optimizer, sampler=sampler, generators={"noise": noise_gen}
        )
        if restored is None:
            metrics_path.unlink(missing_ok=True)
            diag_path.unlink(missing_ok=True)
        else:
            step = int(restored["step"])
            step_times = list(restored.get("step_times", []))
            loss_sums = {str(k): float(v) for k, v in restored.get("loss_sums", {}).items()}
            loss_count = int(restored.get("loss_count", 0))
            truncate_jsonl(metrics_path, step)
            truncate_jsonl(diag_path, step)

    def checkpoint() -> Path:
        return save_training_state(
            out,
            step=step,
            model=model,
            optimizer=optimizer,
            sampler=sampler,
            generators={"noise": noise_gen},
            state={
                "config": cfg_dict,
                "model_config": dataclasses.asdict(model_cfg),
                "step_times": step_times,
                "loss_sums": loss_sums,
                "loss_count": loss_count,
            },
            keep=cfg.train.keep_checkpoints,
        )

    def run_eval() -> dict[str, Any]:
        nonlocal loss_sums, loss_count
        scores = evaluate_multimodal(
            model, test_set, batch_size=cfg.train.eval_batch_size, device=device
        )
        record: dict[str, Any] = {"step": step, "examples_seen": step * cfg.train.batch_size}
        record.update({f"test_{k}": v for k, v in scores.items()})
        record.update(
            {f"train_{k}": v / loss_count for k, v in loss_sums.items()} if loss_count else {}
        )
        record["lr"] = optimizer.param_groups[0]["lr"]
        loss_sums, loss_count = {}, 0
        append_jsonl(metrics_path, record)
        if on_eval is not None:
            on_eval(record)
        return record

    model.train()
    bar = tqdm(
        total=cfg.train.steps,
        initial=step,
        desc=f"pareto {method}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    last_ckpt = latest_checkpoint(out)
    batch = cfg.train.batch_size
    while step < cfg.train.steps:
        lr = lr_at(
            step,
            base_lr=cfg.optim.lr,
            total_steps=cfg.train.steps,
            warmup_steps=cfg.optim.warmup_steps,
            min_lr_ratio=cfg.optim.min_lr_ratio,
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = sampler.draw(batch)  # [b]
        inputs, labels = train_set.batch(idx)
        inputs = {m: x.to(device) for m, x in inputs.items()}
        labels = labels.to(device)
        diagnose = cfg.train.diag_every > 0 and (step + 1) % cfg.train.diag_every == 0
        t0 = time.perf_counter()
        out_t = model(inputs)
        loss_mm = F.cross_entropy(out_t["logits"], labels)
        loss_u = {m: F.cross_entropy(out_t["unimodal_logits"][m], labels) for m in mods}
        total = float(loss_mm.detach()) + sum(float(v.detach()) for v in loss_u.values())
        if not math.isfinite(total):
            where = f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint yet"
            raise TrainingError(f"non-finite loss {total} at step {step + 1} ({where})")
        confidences = (
            {m: _confidence(out_t["unimodal_logits"][m], labels) for m in mods}
            if method == "ogm_ge"
            else None
        )
        optimizer.zero_grad(set_to_none=True)
        diag = integ.backward(
            multimodal_loss=loss_mm,
            unimodal_losses=loss_u,
            confidences=confidences,
            diagnose=diagnose,
        )
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - t0
        if integ.needs_per_loss or not diagnose:
            step_times.append(elapsed)
        step += 1
        loss_sums["loss_mm"] = loss_sums.get("loss_mm", 0.0) + float(loss_mm.detach())
        for m, v in loss_u.items():
            loss_sums[f"loss/{m}"] = loss_sums.get(f"loss/{m}", 0.0) + float(v.detach())
        loss_count += 1
        if diagnose:
            rec = diag.to_dict()
            if rec:
                append_jsonl(diag_path, {"step": step, **rec})
        bar.update(1)
        last = step == cfg.train.steps
        if step % cfg.train.eval_every == 0 or last:
            run_eval()
            model.train()
        if step % cfg.train.checkpoint_every == 0 or last:
            last_ckpt = checkpoint()
    bar.close()

    records = read_jsonl(metrics_path)
    final = records[-1] if records else run_eval()
    diags = read_jsonl(diag_path)
    summary: dict[str, Any] = {
        "run": str(out),
        "method": method,
        "seed": cfg.train.seed,
        "modalities": list(mods),
        **{k: v for k, v in final.items() if k.startswith("test_")},
        "step": final.get("step"),
        "step_time_s": statistics.median(step_times) if step_times else None,
    }
    for m in mods:
        cos = [d[f"cos/{m}"] for d in diags if d.get(f"cos/{m}") is not None]
        if cos:
            summary[f"mean_cos/{m}"] = sum(cos) / len(cos)
            summary[f"conflict_rate/{m}"] = sum(c <= 0 for c in cos) / len(cos)
    summary["wall_s"] = round(time.perf_counter() - t_start, 3)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
