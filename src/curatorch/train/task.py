"""The task protocol: what the one training loop asks of the thing being trained.

The loop (:func:`curatorch.train.train_task`) owns everything that does not depend on what
is trained: the run folder, seeding, threads and device, the optimizer and schedule,
clipping, precision, ``torch.compile``, DDP, the non-finite policy, the evaluation and
checkpoint cadences, exact resume, ``metrics.jsonl``, ``diagnostics.jsonl``, the progress
bar and ``summary.json``. A :class:`Task` owns the rest: its data, its model, how a batch is
produced, its losses as named terms, how they become gradients, its FLOPs, its evaluation
and its own resumable state. See ``docs/tasks.md`` for how to add one.

One step, as the loop runs it::

    batch = task.next_batch(step)                 # selection, multi-resolution split ...
    with autocast: terms = task.losses(batch)     # {"name": this rank's share}, scalars
    task.backward(terms, grad_scale=..., diagnose=...)   # sum, or a gradient integrator
    clip, check gradients, optimizer.step()
    counters = task.step_counters(batch)          # FLOPs of the step, by name
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from curatorch.train.config import OptimConfig, TrainConfig
from curatorch.train.distributed import DistContext

__all__ = ["BaseTask", "RunContext", "Stateful", "Task", "TaskState"]


class Stateful(Protocol):
    """Anything with ``state_dict`` / ``load_state_dict`` (a sampler, a stream)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TaskState:
    """What a checkpoint stores for a task, besides the model and optimizer.

    Attributes:
        data: the data position (stored under ``sampler`` in the checkpoint).
        generators: named random generators (stored as ``rng.<name>``).
    """

    data: Stateful
    generators: dict[str, torch.Generator] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What the loop hands a task when it sets up.

    Attributes:
        out: the run folder (prepared; a task may keep its own files there).
        device: the training device (``cuda:LOCAL_RANK`` under torchrun on GPUs).
        dist: this process's place in a data-parallel job.
        progress: whether progress bars may be shown (rank 0 only).
        autocast: a fresh autocast context (bf16 precision) or a null context.
    """

    out: Path
    device: torch.device
    dist: DistContext
    progress: bool
    autocast: Callable[[], AbstractContextManager[Any]]


@runtime_checkable
class Task(Protocol):
    """One kind of training. The loop calls these, in this order.

    Attributes:
        kind: the task's name in summaries (``contrastive``, ``multimodal``).
        method: the method being trained (a selection strategy, a gradient integrator).
        train_cfg: the loop's settings (:class:`TrainConfig`: steps, batch size, cadences,
            precision, non-finite policy ...).
        optim_cfg: the optimizer and schedule (:class:`OptimConfig`).
        flop_counters: names of the FLOP counters the task reports (``train``,
            ``learner_scoring`` ...); empty when it does no FLOP accounting.
        uses_ddp: ``True``: the loop wraps :meth:`forward_module` in
            ``DistributedDataParallel``; ``False``: it all-reduces the gradients that
            :meth:`backward` leaves (integrators take per-loss gradients with
            ``torch.autograd.grad``, which DDP's hooks do not see).
        diagnosis_is_extra: diagnosed steps do extra work (their times are left out of
            ``step_time_s``).
    """

    kind: str
    method: str
    train_cfg: TrainConfig
    optim_cfg: OptimConfig
    flop_counters: tuple[str, ...]
    uses_ddp: bool
    diagnosis_is_extra: bool

    def config_dict(self) -> dict[str, Any]:
        """The whole config as plain nested dicts (``config.json``; compared on resume)."""
        ...

    def prepare_data(self, run: RunContext) -> None:
        """Build or open the data (before the model is seeded)."""
        ...

    def build_model(self) -> torch.nn.Module:
        """The model, built right after ``torch.manual_seed(train.seed)``."""
        ...

    def model_config_dict(self) -> dict[str, Any]:
        """The model's architecture, stored in checkpoints (to load it back)."""
        ...

    def prepare_training(self, run: RunContext, model: torch.nn.Module) -> None:
        """Everything else before the first step (a reference, a selector, an integrator,
        generators); may train other models into ``run.out``."""
        ...

    def setup_counters(self) -> dict[str, int]:
        """FLOPs spent once before training, by counter name."""
        ...

    def state(self) -> TaskState:
        """The objects to restore from a checkpoint on resume."""
        ...

    def checkpoint_state(self) -> TaskState:
        """The objects to store (collective: every rank calls it)."""
        ...

    def forward_module(self) -> torch.nn.Module:
        """The training forward pass as one module (wrapped by DDP and torch.compile)."""
        ...

    def set_forward(self, forward: torch.nn.Module) -> None:
        """The (possibly wrapped) forward module :meth:`losses` must call."""
        ...

    def next_batch(self, step: int) -> Any:
        """This rank's batch for step ``step + 1`` (may select, under autocast)."""
        ...

    def losses(self, batch: Any) -> dict[str, torch.Tensor]:
        """Named scalar loss terms: each this rank's share of the global term (the global
        value is the sum over ranks). Called under autocast."""
        ...

    def diagnose(self, step: int) -> bool:
        """Whether step ``step + 1`` records gradient diagnostics."""
        ...

    def backward(
        self, terms: Mapping[str, torch.Tensor], *, grad_scale: float, diagnose: bool
    ) -> dict[str, Any]:
        """Fill ``.grad`` from the terms (multiplied by ``grad_scale``); returns the step's
        diagnostics (``{}`` when none)."""
        ...

    def step_counters(self, batch: Any) -> dict[str, int]:
        """FLOPs of this step, summed over ranks, by counter name."""
        ...

    def data_counts(self) -> dict[str, int]:
        """This rank's data-fault counters (summed over ranks into ``data_<name>``)."""
        ...

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        """Scores for a metrics record (rank 0 only, under autocast)."""
        ...

    def record_extras(self, model: torch.nn.Module) -> dict[str, Any]:
        """Model scalars worth logging with every record (a temperature ...)."""
        ...

    def summary_extras(self, out: Path) -> dict[str, Any]:
        """Extra summary entries computed from the run folder (diagnostic rates ...)."""
        ...

    def close(self) -> None:
        """Release the data (streams, workers)."""
        ...


class BaseTask:
    """Defaults for the optional parts of :class:`Task` (no setup FLOPs, no data faults,
    no diagnostics, nothing extra to log, nothing to close)."""

    flop_counters: tuple[str, ...] = ()
    uses_ddp: bool = True
    diagnosis_is_extra: bool = False

    def setup_counters(self) -> dict[str, int]:
        return {}

    def set_forward(self, forward: torch.nn.Module) -> None:
        self.forward = forward

    def diagnose(self, step: int) -> bool:
        return False

    def step_counters(self, batch: Any) -> dict[str, int]:
        return {}

    def data_counts(self) -> dict[str, int]:
        return {}

    def record_extras(self, model: torch.nn.Module) -> dict[str, Any]:
        return {}

    def summary_extras(self, out: Path) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        return None
