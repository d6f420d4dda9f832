"""Multi-task classification with a group gradient integrator (MMPareto and baselines), as
a task of the one loop.

:class:`MultiTaskTask` builds the noisy digit tasks (:func:`curatorch.data.noisy_digit_tasks`:
``digit``, ``parity`` and ``ink``, of unequal difficulty), a
:class:`~curatorch.models.MultiTaskClassifier` (one shared encoder, a linear head per task)
and the group integrator named by ``cfg.pareto.method``
(:func:`curatorch.pareto.build_group_integrator`, one group ``shared`` whose objectives are
the tasks). Each step takes a seeded batch (:class:`EpochSampler`) and computes one
cross-entropy per task (the named terms ``<task>``); the shared encoder receives the
method's combination of the tasks' gradients, each head the gradient of its own loss.
Gradient diagnostics (the tasks' pairwise cosines on the shared encoder, weights, norms) go
to ``diagnostics.jsonl`` every ``train.diag_every`` steps. Everything else is the loop's
(:func:`curatorch.train.train_task`). Same seed, same result on CPU; PCGrad's random order
comes from a generator seeded by ``train.seed`` and stored in the checkpoints, so a resumed
run is the uninterrupted one.

Config files are TOML with the sections ``[data] [model] [optim] [train] [pareto]
[compare]``; ``[optim]`` and ``[train]`` are the multimodal task's (SGD with momentum, no
clipping: :data:`~curatorch.train.multimodal.PARETO_OPTIM`,
:data:`~curatorch.train.multimodal.PARETO_TRAIN`); unknown keys and wrong types are a
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from curatorch.data import DIGIT_TASKS, PIXEL_NOISE, MultiTaskDataset, MultiTaskSplits
from curatorch.data import noisy_digit_tasks as _noisy_digit_tasks
from curatorch.models import ENCODER_KINDS, MultiTaskClassifier, MultiTaskClassifierConfig
from curatorch.pareto import (
    DEFAULT_GAMMA,
    GROUP_INTEGRATORS,
    SCALES,
    SOLVERS,
    GroupIntegrator,
    build_group_integrator,
)
from curatorch.train.config import (
    ConfigError,
    ConfigSchema,
    OptimConfig,
)
from curatorch.train.loop import train_task
from curatorch.train.multimodal import PARETO_OPTIM, PARETO_TRAIN, ParetoTrainConfig
from curatorch.train.records import read_jsonl
from curatorch.train.sampler import EpochSampler
from curatorch.train.task import BaseTask, RunContext, TaskState

__all__ = [
    "MULTITASK_DATASETS",
    "MULTITASK_SCHEMA",
    "SHARED_GROUP",
    "MultiTaskCompareSection",
    "MultiTaskDataSection",
    "MultiTaskExperimentConfig",
    "MultiTaskModelSection",
    "MultiTaskParetoSection",
    "MultiTaskTask",
    "build_multitask_splits",
    "evaluate_multitask",
    "load_multitask_config",
    "multitask_config_from_dict",
    "multitask_config_to_dict",
    "pair_cosines",
    "task_pairs",
    "train_multitask",
]

MULTITASK_DATASETS = ("noisy_digit_tasks",)
SHARED_GROUP = "shared"
"""The integrator's group name for the shared encoder (diagnostics ``cos/shared`` ...)."""


# ---------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MultiTaskDataSection:
    """The data: ``noisy_digit_tasks`` (``seed``, ``test_fraction``, ``pixel_noise`` 0.5:
    the dataset's documented default, not tuned). ``tasks`` empty means all of them
    (``digit``, ``parity``, ``ink``); one task trains it alone."""

    dataset: str = "noisy_digit_tasks"
    seed: int = 0
    test_fraction: float = 0.3
    pixel_noise: float = PIXEL_NOISE
    tasks: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.dataset not in MULTITASK_DATASETS:
            raise ConfigError(
                f"data.dataset must be one of {list(MULTITASK_DATASETS)}, got {self.dataset!r}"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if not (math.isfinite(self.pixel_noise) and self.pixel_noise >= 0):
            raise ConfigError(
                f"data.pixel_noise must be a finite number >= 0, got {self.pixel_noise}"
            )
        unknown = [t for t in self.tasks if t not in DIGIT_TASKS]
        if unknown or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(
                f"data.tasks must be unique names from {list(DIGIT_TASKS)}, got {list(self.tasks)}"
            )

    @property
    def task_names(self) -> tuple[str, ...]:
        """The tasks trained: ``tasks``, or every task of the dataset."""
        return self.tasks or DIGIT_TASKS


@dataclass(frozen=True)
class MultiTaskModelSection:
    """The shared encoder (``mlp`` or ``conv``), its hidden width and feature size."""

    encoder: str = "mlp"
    hidden: int = 128
    embed_dim: int = 64

    def validate(self) -> None:
        if self.encoder not in ENCODER_KINDS:
            raise ConfigError(
                f"model.encoder must be one of {list(ENCODER_KINDS)}, got {self.encoder!r}"
            )
        bad = [k for k in ("hidden", "embed_dim") if getattr(self, k) < 1]
        if bad:
            raise ConfigError(f"model.{bad[0]} must be >= 1, got {getattr(self, bad[0])}")


@dataclass(frozen=True)
class MultiTaskParetoSection:
    """The group integrator: ``method`` (see :data:`curatorch.pareto.GROUP_INTEGRATORS`),
    MMPareto's ``gamma`` and ``scale``, and the min-norm ``solver`` (MMPareto, MGDA)."""

    method: str = "mmpareto"
    gamma: float = DEFAULT_GAMMA
    scale: str = "tensor"
    solver: str = "wolfe"

    def validate(self) -> None:
        if self.method not in GROUP_INTEGRATORS:
            raise ConfigError(
                f"pareto.method must be one of {sorted(GROUP_INTEGRATORS)}, got {self.method!r}"
            )
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"pareto.gamma must be a positive number, got {self.gamma}")
        if self.scale not in SCALES:
            raise ConfigError(f"pareto.scale must be one of {list(SCALES)}, got {self.scale!r}")
        if self.solver not in SOLVERS:
            raise ConfigError(f"pareto.solver must be one of {list(SOLVERS)}, got {self.solver!r}")

    def options(self) -> dict[str, Any]:
        """The keyword options :func:`build_group_integrator` takes for ``method``."""
        if self.method == "mmpareto":
            return {"gamma": self.gamma, "scale": self.scale, "solver": self.solver}
        return {"solver": self.solver} if self.method == "mgda" else {}


@dataclass(frozen=True)
class MultiTaskCompareSection:
    """``curatorch pareto multitask``: ``methods`` x ``seeds``, plus each task in ``alone``
    trained by itself (the shared encoder and its head, ``uniform``) for every seed; the
    comparison checks that ``alone`` names tasks it trains."""

    methods: tuple[str, ...] = ("uniform", "mgda", "pcgrad", "mmpareto")
    seeds: tuple[int, ...] = (0, 1, 2)
    alone: tuple[str, ...] = DIGIT_TASKS

    def validate(self) -> None:
        unknown = [m for m in self.methods if m not in GROUP_INTEGRATORS]
        if unknown or not self.methods or len(set(self.methods)) != len(self.methods):
            raise ConfigError(
                f"compare.methods must be non-empty unique names from "
                f"{sorted(GROUP_INTEGRATORS)}, got {list(self.methods)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"compare.seeds must be non-empty and unique, got {list(self.seeds)}")
        if len(set(self.alone)) != len(self.alone):
            raise ConfigError(f"compare.alone must be unique, got {list(self.alone)}")


@dataclass(frozen=True)
class MultiTaskExperimentConfig:
    """A multi-task experiment: one section per concern."""

    data: MultiTaskDataSection = field(default_factory=MultiTaskDataSection)
    model: MultiTaskModelSection = field(default_factory=MultiTaskModelSection)
    optim: OptimConfig = field(default_factory=lambda: PARETO_OPTIM)
    train: ParetoTrainConfig = field(default_factory=lambda: PARETO_TRAIN)
    pareto: MultiTaskParetoSection = field(default_factory=MultiTaskParetoSection)
    compare: MultiTaskCompareSection = field(default_factory=MultiTaskCompareSection)

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate()


MULTITASK_SCHEMA: ConfigSchema[MultiTaskExperimentConfig] = ConfigSchema(MultiTaskExperimentConfig)


def multitask_config_from_dict(raw: Mapping[str, Any]) -> MultiTaskExperimentConfig:
    """Build and validate a :class:`MultiTaskExperimentConfig` from nested dicts."""
    return MULTITASK_SCHEMA.from_dict(raw)


def multitask_config_to_dict(cfg: MultiTaskExperimentConfig) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (tuples become lists)."""
    return MULTITASK_SCHEMA.to_dict(cfg)


def load_multitask_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> MultiTaskExperimentConfig:
    """Read a TOML config, apply ``--set section.key=value`` overrides and validate;
    errors are a :class:`ConfigError` naming the file and the key."""
    return MULTITASK_SCHEMA.load(path, overrides)


# ------------------------------------------------------------------------------ data
def build_multitask_splits(cfg: MultiTaskDataSection) -> MultiTaskSplits:
    """The train and test splits ``cfg`` describes (every task of the dataset)."""
    cfg.validate()
    return _noisy_digit_tasks(
        seed=cfg.seed, test_fraction=cfg.test_fraction, pixel_noise=cfg.pixel_noise
    )


@torch.no_grad()
def evaluate_multitask(
    model: MultiTaskClassifier,
    dataset: MultiTaskDataset,
    *,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy (fraction in [0, 1]) of each task's head (``acc/<task>``) on ``dataset``
    and their mean over the tasks (``acc``)."""
    was_training = model.training
    model.eval()
    correct = dict.fromkeys(model.cfg.tasks, 0)
    for start in range(0, len(dataset), batch_size):
        x, labels = dataset.batch(torch.arange(start, min(start + batch_size, len(dataset))))
        for task, logits in model(x.to(device)).items():
            correct[task] += int((logits.argmax(1).cpu() == labels[task]).sum())
    model.train(was_training)
    accs = {f"acc/{t}": c / max(len(dataset), 1) for t, c in correct.items()}
    return {"acc": statistics.fmean(accs.values()), **accs}


# ----------------------------------------------------------------- pair diagnostics
def task_pairs(tasks: Sequence[str]) -> list[str]:
    """The task pairs ``"a~b"`` (``a`` before ``b`` in ``tasks``), the diagnostics' keys."""
    return [f"{a}~{b}" for i, a in enumerate(tasks) for b in tasks[i + 1 :]]


def pair_cosines(record: Mapping[str, Any], tasks: Sequence[str]) -> dict[str, float]:
    """``{"a~b": cos}`` of one diagnostics record: the cosine of tasks ``a`` and ``b``'s
    gradients on the shared encoder (``cos/shared/a~b``; with two tasks the group's
    ``cos/shared``); empty when the record has none (a step without diagnostics)."""
    pairs = task_pairs(tasks)
    if len(pairs) == 1 and record.get(f"cos/{SHARED_GROUP}") is not None:
        return {pairs[0]: float(record[f"cos/{SHARED_GROUP}"])}
    keys = {p: f"cos/{SHARED_GROUP}/{p}" for p in pairs}
    return {p: float(record[k]) for p, k in keys.items() if record.get(k) is not None}


# ------------------------------------------------------------------------------ task
class MultiTaskTask(BaseTask):
    """A multi-task classifier trained with the group integrator ``cfg.pareto.method``.

    Args:
        cfg: the validated config; ``cfg.data.tasks`` picks the tasks (one task trains
            it alone: the shared encoder and its head).
        splits: prebuilt data for ``cfg.data`` (saves rebuilding it).

    Under torchrun each rank takes its slice of the seeded global batch, the integrator
    works on this rank's per-loss gradients and the loop sums the results over ranks
    (the terms are each rank's share, ``loss / W``).
    """

    kind = "multitask"
    uses_ddp = False  # integrators take per-loss gradients with torch.autograd.grad
    headline_metric = "test_acc"

    def __init__(self, cfg: MultiTaskExperimentConfig, *, splits: MultiTaskSplits | None = None):
        cfg.validate()
        self.cfg, self.splits = cfg, splits
        self.method = cfg.pareto.method
        self.train_cfg, self.optim_cfg = cfg.train, cfg.optim
        self.tasks = cfg.data.task_names

    def config_dict(self) -> dict[str, Any]:
        return multitask_config_to_dict(self.cfg)

    def prepare_data(self, run: RunContext) -> None:
        self.run = run
        splits = self.splits if self.splits is not None else build_multitask_splits(self.cfg.data)
        try:
            self.train_set = splits.train.select(self.tasks)
            self.test_set = splits.test.select(self.tasks)
        except ValueError as exc:
            raise ConfigError(f"data.tasks: {exc}") from exc
        m = self.cfg.model
        self.model_cfg = MultiTaskClassifierConfig(
            tasks=self.tasks,
            num_classes=tuple(self.train_set.num_classes[t] for t in self.tasks),
            input_shape=self.train_set.input_shape,
            encoder=m.encoder,
            hidden=m.hidden,
            embed_dim=m.embed_dim,
        )

    def build_model(self) -> torch.nn.Module:
        self.model = MultiTaskClassifier(self.model_cfg)
        return self.model

    def model_config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.model_cfg)

    def prepare_training(self, run: RunContext, model: torch.nn.Module) -> None:
        seed = self.cfg.train.seed
        self.sampler = EpochSampler(len(self.train_set), seed=seed)
        # PCGrad's random order (drawn on the host); checkpointed for every method
        self.order_gen = torch.Generator().manual_seed(seed + 29)
        options = self.cfg.pareto.options()
        if self.method == "pcgrad":
            options["generator"] = self.order_gen
        self.integ: GroupIntegrator = build_group_integrator(
            self.method,
            groups={SHARED_GROUP: (self.model.shared_parameters(), self.tasks)},
            heads=self.model.head_parameters(),
            **options,
        )
        self.diagnosis_is_extra = not self.integ.needs_per_loss
        self.forward: torch.nn.Module = self.model

    def state(self) -> TaskState:
        return TaskState(self.sampler, {"pcgrad_order": self.order_gen})

    checkpoint_state = state

    def forward_module(self) -> torch.nn.Module:
        return self.model

    def next_batch(self, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        dist, device = self.run.dist, self.run.device
        idx = self.sampler.draw(self.cfg.train.batch_size)  # [b], the same on every rank
        share = len(idx) // dist.world_size
        x, labels = self.train_set.batch(idx[dist.rank * share : (dist.rank + 1) * share])
        return x.to(device), {t: y.to(device) for t, y in labels.items()}  # [b / W, 1, 8, 8]

    def losses(
        self, batch: tuple[torch.Tensor, dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        x, labels = batch
        logits = self.forward(x)
        w = self.run.dist.world_size
        return {t: F.cross_entropy(logits[t], labels[t]) / w for t in self.tasks}

    def diagnose(self, step: int) -> bool:
        every = self.cfg.train.diag_every
        return every > 0 and (step + 1) % every == 0

    def backward(
        self, terms: Mapping[str, torch.Tensor], *, grad_scale: float, diagnose: bool
    ) -> dict[str, Any]:
        if grad_scale != 1.0:
            raise ValueError("the multi-task task does not use DDP: grad_scale must be 1")
        diag = self.integ.backward(losses=terms, diagnose=diagnose)
        return diag.to_dict() if diagnose else {}

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        scores = evaluate_multitask(
            self.model,
            self.test_set,
            batch_size=self.cfg.train.eval_batch_size,
            device=self.run.device,
        )
        return {f"test_{k}": v for k, v in scores.items()}

    def summary_extras(self, out: Path) -> dict[str, Any]:
        extras: dict[str, Any] = {"tasks": list(self.tasks)}
        if len(self.tasks) < 2:
            return extras
        diags = [d for d in read_jsonl(out / "diagnostics.jsonl") if f"cos/{SHARED_GROUP}" in d]
        if diags:
            extras["conflict_rate"] = statistics.fmean(
                bool(d[f"conflict/{SHARED_GROUP}"]) for d in diags
            )
        per_pair = [pair_cosines(d, self.tasks) for d in diags]
        for pair in task_pairs(self.tasks):
            cos = [c[pair] for c in per_pair if pair in c]
            if cos:
                extras[f"mean_cos/{pair}"] = statistics.fmean(cos)
                extras[f"conflict_rate/{pair}"] = statistics.fmean(c <= 0 for c in cos)
        return extras


def train_multitask(
    cfg: MultiTaskExperimentConfig,
    out_dir: str | os.PathLike[str],
    *,
    splits: MultiTaskSplits | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Train a multi-task classifier: :class:`MultiTaskTask` (``splits``) in the one loop;
    returns the summary, which adds ``tasks`` and, over the diagnosed steps with two or
    more tasks, ``conflict_rate`` (steps where some pair of tasks' gradients on the shared
    encoder has cosine <= 0), ``mean_cos/<a>~<b>`` and ``conflict_rate/<a>~<b>`` per pair.

    ``options`` are :func:`curatorch.train.train_task`'s: ``resume``, ``overwrite``,
    ``progress``, ``on_eval``, ``dist``.
    """
    return train_task(MultiTaskTask(cfg, splits=splits), out_dir, **options)
