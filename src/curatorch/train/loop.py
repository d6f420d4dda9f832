"""The one training loop.

``train_task(task, out_dir)`` trains any :class:`~curatorch.train.task.Task` for
``task.train_cfg.steps`` steps: it prepares the run folder, seeds, builds the optimizer
(AdamW, Adam or SGD with momentum over the model's declared weight-decay groups), sets the
learning rate of every step (linear warmup, cosine decay), clips, runs under autocast,
``torch.compile`` and ``DistributedDataParallel`` when asked, applies the non-finite policy
(stop, or skip the update) to the loss and the gradients, evaluates every ``eval_every``
steps into ``metrics.jsonl``, appends the task's gradient diagnostics to
``diagnostics.jsonl`` (both also as TensorBoard scalars with ``train.log = "tensorboard"``),
says on stderr when the data source skipped samples, checkpoints atomically every
``checkpoint_every`` steps (never a non-finite weight), resumes exactly, and writes
``summary.json``. It never looks at which strategy or integrator a task uses.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from curatorch.models import weight_decay_groups
from curatorch.train.checkpoint import (
    CheckpointError,
    atomic_temp_glob,
    atomic_write_text,
    latest_checkpoint,
    restore_training_state,
    save_training_state,
)
from curatorch.train.config import OptimConfig
from curatorch.train.distributed import DistContext
from curatorch.train.records import append_jsonl, read_jsonl, truncate_jsonl
from curatorch.train.schedule import lr_at
from curatorch.train.task import RunContext, Task
from curatorch.train.tblog import TB_DIR, TensorBoardLog, require_tensorboard

__all__ = [
    "RUN_FILES",
    "OutputDirError",
    "Progress",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "build_optimizer",
    "config_differences",
    "prepare_run_dir",
    "train_task",
]

RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "diagnostics.jsonl",
    "summary.json",
    "checkpoints",
    "reference",
    "reference-cache",
    TB_DIR,
)
# what shows that training started: without these a folder is a start that failed early
_STARTED = ("metrics.jsonl", "summary.json", "checkpoints")

# keys of the config that may differ between a run and its resumption (``train.steps``:
# the run is extended or its remaining steps are dropped; see :func:`train_task`)
_RESUMABLE_DIFFERENCES = {
    ("train", "device"),
    ("train", "threads"),
    ("train", "steps"),
    ("train", "log"),
    ("train", "collective_timeout_s"),
    ("eval", "batch_size"),
    ("data", "num_workers"),
}


class OutputDirError(ValueError):
    """The output folder cannot be used for this run; the message names it."""


class TrainingError(RuntimeError):
    """Training cannot go on (for instance a non-finite loss); names the step."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message names the step, the last checkpoint and how to
    resume."""


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], bool]:
    """Compare two configs (as in ``config.json``): the differences that forbid resuming
    one as the other (``"section.key: old -> new"``), and whether any difference a resume
    may make (device, threads, ``train.steps`` ...) exists."""
    diffs, allowed = [], False
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) == b.get(key):
                continue
            if (section, key) in _RESUMABLE_DIFFERENCES:
                allowed = True
            else:
                diffs.append(f"{section}.{key}: {a.get(key)!r} -> {b.get(key)!r}")
    return diffs, allowed


_WRITE_PROBE = ".curatorch-write-test"


def _is_start_leftover(name: str) -> bool:
    """What a kill inside :func:`prepare_run_dir` can leave: the write probe or the
    temporary file of an unfinished ``config.json``."""
    return name == _WRITE_PROBE or fnmatch.fnmatchcase(name, atomic_temp_glob("config.json"))


def _failed_start(out: Path, existing: list[str]) -> bool:
    """A folder whose run never started training (a config that failed a later check:
    shards that match nothing, a missing reference): it counts as empty."""
    if not all(n in RUN_FILES or _is_start_leftover(n) for n in existing):
        return False
    ckpts = out / "checkpoints"
    if ckpts.is_dir() and any(ckpts.iterdir()):
        return False
    return not any((out / n).is_file() for n in _STARTED if n != "checkpoints")


def _check_resumable(out: Path, config: dict[str, Any]) -> bool:
    """Raise unless ``out``'s config allows resuming with ``config``; whether config.json
    must be rewritten (an allowed difference such as a longer run)."""
    try:
        old = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputDirError(f"{out / 'config.json'} is unreadable: {exc}") from exc
    diffs, allowed = config_differences(old, config)
    if diffs:
        raise OutputDirError(f"cannot resume {out}: its config differs ({'; '.join(diffs[:4])})")
    before, now = old.get("train", {}).get("steps"), config.get("train", {}).get("steps")
    if isinstance(before, int) and isinstance(now, int) and now < before:
        raise OutputDirError(
            f"cannot resume {out} with train.steps={now}: it was configured for {before} "
            f"steps; a run can be extended, not shortened (pass --overwrite to start again)"
        )
    return allowed


def prepare_run_dir(
    out_dir: str | os.PathLike[str], *, config: dict[str, Any], resume: bool, overwrite: bool
) -> bool:
    """Check and prepare the output folder; returns True when an earlier run is resumed.

    - A missing or empty folder starts a fresh run (also with ``resume``); so does one that
      holds only what a start killed inside this function leaves, or a run that never
      started training (a ``config.json`` but no checkpoint and no metrics: the corrected
      command line can simply be repeated).
    - A folder holding a run is resumed with ``resume`` (its config must match, apart from
      device and thread settings and ``train.steps``), replaced with ``overwrite``, and
      refused otherwise.
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
    others = [n for n in existing if not _is_start_leftover(n)]
    has_config = (out / "config.json").is_file()
    if existing and not has_config and others:
        raise OutputDirError(
            f"output folder {out} is not empty and holds no curatorch run "
            f"({', '.join(others[:5])}); choose another --out"
        )
    holds_run = has_config and not _failed_start(out, others)
    if not holds_run:  # a start killed while it probed the folder or wrote config.json
        for name in existing:
            if _is_start_leftover(name):
                (out / name).unlink(missing_ok=True)
    resuming = rewrite = False
    if holds_run:
        if resume:
            rewrite = _check_resumable(out, config)
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
    if not resuming or rewrite:
        atomic_write_text(out / "config.json", json.dumps(config, indent=1) + "\n")
    return resuming


def _check_world_size(out: Path, world_size: int) -> None:
    """Refuse to resume ``out`` when its latest checkpoint was written by another number
    of processes (before anything of the folder is rewritten). A checkpoint holds each
    rank's data position and random streams: it is not resharded."""
    folder = latest_checkpoint(out)
    if folder is None:
        return
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # restoring it names the unreadable file
    written = state.get("world_size", 1) if isinstance(state, dict) else 1
    if written != world_size:
        raise OutputDirError(
            f"cannot resume {out}: checkpoint {folder.name} was written by {written} "
            f"process(es), this run has {world_size}; resume it with "
            f"--nproc_per_node={written} (checkpoints are not resharded), or start a new --out"
        )


def _prepare_shared(
    out: Path, *, config: dict[str, Any], resume: bool, overwrite: bool, dist: DistContext
) -> bool:
    """:func:`prepare_run_dir` on rank 0; its outcome (or its error) on every rank."""
    outcome: tuple[str, Any] | None = None
    if dist.is_main:
        try:
            if resume and (out / "config.json").is_file():
                _check_world_size(out, dist.world_size)
            resumed = prepare_run_dir(out, config=config, resume=resume, overwrite=overwrite)
            outcome = ("ok", resumed)
        except OutputDirError as exc:
            outcome = ("error", str(exc))
    outcome = dist.broadcast_object(outcome)
    assert outcome is not None  # rank 0 always sets it
    if outcome[0] == "error":
        raise OutputDirError(outcome[1])
    return bool(outcome[1])


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, *, fused: bool = False
) -> torch.optim.Optimizer:
    """AdamW, Adam or SGD with momentum over the model's weight-decay groups
    (:func:`curatorch.models.weight_decay_groups`: weight decay on what the model does not
    exclude). ``fused`` selects the fused CUDA Adam(W) (parameters must be on a GPU)."""
    decay, no_decay = weight_decay_groups(model)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    kwargs: dict[str, Any] = {"lr": cfg.lr, "betas": (cfg.beta1, cfg.beta2), "eps": cfg.eps}
    if fused:
        kwargs["fused"] = True
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(groups, **kwargs)


@dataclass
class Progress:
    """The loop's counters, carried by every checkpoint.

    Attributes:
        step: optimizer steps taken (skipped updates included).
        examples_seen: training examples consumed.
        flops: FLOPs by the task's counter names.
        loss_sums: sums of each loss term over the evaluation window in progress.
        loss_total: sum of the terms' total over that window; loss_count: its steps.
        skipped_steps: updates skipped for a non-finite loss or gradient.
        step_times: seconds of each timed update (losses, backward, optimizer step).
        wall_s: wall time of the run's earlier sessions, up to their last checkpoint.
    """

    step: int = 0
    examples_seen: int = 0
    flops: dict[str, int] = field(default_factory=dict)
    loss_sums: dict[str, float] = field(default_factory=dict)
    loss_total: float = 0.0
    loss_count: int = 0
    skipped_steps: int = 0
    step_times: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    @classmethod
    def from_state(cls, state: dict[str, Any], where: Path) -> Progress:
        """From a checkpoint's JSON state."""
        try:
            return cls(**state["progress"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint in {where} has no valid progress: {exc}") from exc


def _grads_finite(model: torch.nn.Module) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _all_reduce_grads(model: torch.nn.Module) -> None:
    """Sum every gradient over the ranks (tasks that do not use DDP)."""
    import torch.distributed as tdist

    for p in model.parameters():
        if p.grad is not None:
            tdist.all_reduce(p.grad)


def _skip_reasons(record: dict[str, Any]) -> str:
    """``"truncated_tar 10, corrupt_image 2"``: the reasons a record counts skips under."""
    prefix = "data_skipped_"
    return ", ".join(
        f"{k[len(prefix) :]} {v}" for k, v in record.items() if k.startswith(prefix) and v
    )


def _where(last_ckpt: Path | None) -> str:
    return f"last good checkpoint: {last_ckpt}" if last_ckpt else "no checkpoint yet"


def _device(train_device: str, dist: DistContext) -> torch.device:
    device = torch.device(train_device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
    return device


class Trainer:
    """One run of :func:`train_task`: the loop's parts and the state they share.

    :func:`train_task` is ``Trainer.start(...)``, then :meth:`loop` and :meth:`finish`.
    Benchmarks call :meth:`step` directly: the very step the loop runs.
    """

    def __init__(
        self,
        task: Task,
        out: Path,
        *,
        dist: DistContext,
        progress: bool,
        on_eval: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.task, self.out, self.dist = task, out, dist
        self.cfg = task.train_cfg
        self.main = dist.is_main
        self.show_progress = progress and self.main
        self.on_eval = on_eval
        self.metrics_path = out / "metrics.jsonl"
        self.diag_path = out / "diagnostics.jsonl"
        self.last_record: dict[str, Any] = {}
        self.last_ckpt: Path | None = None
        self.t_start = time.perf_counter()
        self.tb: TensorBoardLog | None = None
        self.skips_reported = 0  # data_samples_skipped of the last record (rank 0)
        data = task.config_dict().get("data", {})
        self.data_where = " in data.shards" if data.get("shards") else ""

    @classmethod
    def start(
        cls,
        task: Task,
        out_dir: str | os.PathLike[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = False,
        on_eval: Callable[[dict[str, Any]], None] | None = None,
        dist: DistContext | None = None,
    ) -> Trainer:
        """A trainer set up to take steps: folder prepared, data, model, optimizer and the
        task's objects built, a checkpoint restored with ``resume``. Call
        :meth:`Task.close` (``trainer.task.close()``) when done."""
        dist = dist or DistContext()
        out = Path(out_dir)
        if task.train_cfg.log == "tensorboard":
            require_tensorboard()  # before anything is written
        resuming = _prepare_shared(
            out, config=task.config_dict(), resume=resume, overwrite=overwrite, dist=dist
        )
        trainer = cls(task, out, dist=dist, progress=progress, on_eval=on_eval)
        trainer.setup(resuming)
        return trainer

    def autocast(self) -> AbstractContextManager[Any]:
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def setup(self, resuming: bool) -> None:
        """Data, model, optimizer, the task's training objects, restored state, wrappers."""
        cfg, task = self.cfg, self.task
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = _device(cfg.device, self.dist)
        if cfg.batch_size % self.dist.world_size:
            raise ValueError(
                f"train.batch_size={cfg.batch_size} must be divisible by the "
                f"{self.dist.world_size} processes"
            )
        run = RunContext(self.out, self.device, self.dist, self.show_progress, self.autocast)
        task.prepare_data(run)
        torch.manual_seed(cfg.seed)
        self.model = task.build_model().to(self.device)
        self.optimizer = build_optimizer(
            self.model, task.optim_cfg, fused=self.device.type == "cuda"
        )
        task.prepare_training(run, self.model)
        self.prog = Progress(flops={name: 0 for name in task.flop_counters})
        self.prog.flops.update(task.setup_counters())
        if resuming:
            self.restore()
        self.dist.barrier()
        forward = task.forward_module()
        if self.dist.enabled and task.uses_ddp:
            from torch.nn.parallel import DistributedDataParallel

            forward = DistributedDataParallel(
                forward, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.compile:
            forward = torch.compile(forward)  # type: ignore[assignment]
        task.set_forward(forward)
        if self.main and cfg.log == "tensorboard":
            self.tb = TensorBoardLog(self.out, resumed_step=self.prog.step or None)

    def _restore_shared(self) -> tuple[Path | None, dict[str, Any] | None]:
        """Rank 0's latest checkpoint, restored on every rank (collective): a rank that
        sees another listing of the folder still loads the same step, and a rank that
        cannot load it stops every rank with its message."""
        dist = self.dist
        latest = latest_checkpoint(self.out) if dist.is_main else None
        name = dist.broadcast_object(None if latest is None else str(latest))
        folder = None if name is None else Path(name)
        restored, error = None, None
        if folder is not None:
            ts = self.task.state()
            try:
                restored = restore_training_state(
                    self.out,
                    model=self.model,
                    optimizer=self.optimizer,
                    sampler=ts.data,
                    generators=ts.generators,
                    folder=folder,
                )
            except CheckpointError as exc:
                error = str(exc)
        failed = dist.first_failure(error)
        if failed is not None:
            where = f"rank {failed[0]} of {dist.world_size}: " if dist.enabled else ""
            raise CheckpointError(where + failed[1])
        return folder, restored

    def restore(self) -> None:
        """Load the latest checkpoint into the model, optimizer and task (resume)."""
        folder, restored = self._restore_shared()
        if restored is not None and restored.get("world_size", 1) != self.dist.world_size:
            raise CheckpointError(  # _check_world_size refused it already; a second guard
                f"checkpoint {folder} was written by {restored.get('world_size', 1)} "
                f"process(es), this run has {self.dist.world_size}"
            )
        if restored is None:
            if self.main:  # nothing to continue: a fresh start
                self.metrics_path.unlink(missing_ok=True)
                self.diag_path.unlink(missing_ok=True)
            return
        self.prog = Progress.from_state(restored, self.out)
        if self.main:
            truncate_jsonl(self.metrics_path, self.prog.step)
            truncate_jsonl(self.diag_path, self.prog.step)
            kept = read_jsonl(self.metrics_path)
            self.skips_reported = int(kept[-1].get("data_samples_skipped", 0)) if kept else 0
            print(f"resuming {self.out} from step {self.prog.step} ({folder})", file=sys.stderr)

    def checkpoint(self) -> Path | None:
        """Write a checkpoint (collective: every rank calls it); rank 0 returns its folder."""
        ts = self.task.checkpoint_state()
        if not self.main:
            return None
        for p in self.model.parameters():
            if not torch.isfinite(p).all():  # never let a NaN reach a checkpoint
                raise TrainingError(
                    f"non-finite weights at step {self.prog.step}; not checkpointed"
                )
        wall = self.prog.wall_s + (time.perf_counter() - self.t_start)
        return save_training_state(
            self.out,
            step=self.prog.step,
            model=self.model,
            optimizer=self.optimizer,
            sampler=ts.data,
            generators=ts.generators,
            state={
                "config": self.task.config_dict(),
                "model_config": self.task.model_config_dict(),
                "task": self.task.kind,
                "progress": {**dataclasses.asdict(self.prog), "wall_s": wall},
                "world_size": self.dist.world_size,
            },
            keep=self.cfg.keep_checkpoints,
        )

    def evaluate(self) -> dict[str, Any]:
        """Evaluate and append a metrics record (collective; rank 0 writes)."""
        prog = self.prog
        counts: dict[str, int] = {}
        for c in self.dist.all_gather_object(self.task.data_counts()):
            for k, v in c.items():
                counts[f"data_{k}"] = counts.get(f"data_{k}", 0) + int(v)
        if not self.main:
            prog.loss_sums, prog.loss_total, prog.loss_count = {}, 0.0, 0
            return {}
        with self.autocast():
            scores = self.task.evaluate(self.model)
        record: dict[str, Any] = {"step": prog.step, "examples_seen": prog.examples_seen}
        if self.task.flop_counters:
            record["flops"] = prog.flops[self.task.flop_counters[0]]
            record.update({f"flops_{k}": v for k, v in prog.flops.items()})
            record["flops_total"] = sum(prog.flops.values())
        record.update(scores)
        n = prog.loss_count
        record["train_loss"] = prog.loss_total / n if n else None
        if n and len(prog.loss_sums) > 1:
            record.update({f"train_loss/{k}": v / n for k, v in prog.loss_sums.items()})
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        record.update(self.task.record_extras(self.model))
        if prog.skipped_steps:
            record["skipped_steps"] = prog.skipped_steps
        record.update(counts)
        prog.loss_sums, prog.loss_total, prog.loss_count = {}, 0.0, 0
        append_jsonl(self.metrics_path, record)
        if self.tb is not None:
            self.tb.metrics(record)
        self.report_skips(record)
        if self.on_eval is not None:
            self.on_eval(record)
        self.last_record = record
        return record

    def step(self, bar: Any = None) -> float:
        """One training step (learning rate, batch, losses, backward, clipping, checks,
        optimizer step, counters); returns the global loss. ``bar``: where a skipped
        step is reported (a tqdm bar; ``None``: stderr)."""
        cfg, prog, task, w = self.cfg, self.prog, self.task, self.dist.world_size
        lr = lr_at(
            prog.step,
            base_lr=task.optim_cfg.lr,
            total_steps=cfg.steps,
            warmup_steps=task.optim_cfg.warmup_steps,
            min_lr_ratio=task.optim_cfg.min_lr_ratio,
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        try:
            batch = task.next_batch(prog.step)
        except RuntimeError as exc:  # DataFaultError: too many corrupt samples
            raise TrainingError(f"step {prog.step + 1}: {exc} ({_where(self.last_ckpt)})") from exc
        diagnose = task.diagnose(prog.step)
        t0 = time.perf_counter()
        with self.autocast():
            terms = task.losses(batch)
        values = {k: self.dist.all_reduce_sum(float(t.detach())) for k, t in terms.items()}
        loss = sum(values.values())  # one term: 0.0 + v == v
        self.optimizer.zero_grad(set_to_none=True)
        finite = math.isfinite(loss)
        diag: dict[str, Any] = {}
        if finite:
            ddp = self.dist.enabled and task.uses_ddp
            diag = task.backward(terms, grad_scale=float(w) if ddp else 1.0, diagnose=diagnose)
            if self.dist.enabled and not task.uses_ddp:
                _all_reduce_grads(self.model)
            if task.optim_cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), task.optim_cfg.grad_clip)
            finite = _grads_finite(self.model)
        if finite:
            self.optimizer.step()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if not (diagnose and task.diagnosis_is_extra):
                prog.step_times.append(time.perf_counter() - t0)
            for k, v in values.items():
                prog.loss_sums[k] = prog.loss_sums.get(k, 0.0) + v
            prog.loss_total += loss
            prog.loss_count += 1
        else:
            self.skip(loss, bar)
        prog.step += 1
        prog.examples_seen += cfg.batch_size
        for k, v in task.step_counters(batch).items():
            prog.flops[k] = prog.flops.get(k, 0) + v
        if diag and self.main:
            append_jsonl(self.diag_path, {"step": prog.step, **diag})
            if self.tb is not None:
                self.tb.diagnostics({"step": prog.step, **diag})
        return loss

    def report_skips(self, record: dict[str, Any]) -> None:
        """One line on stderr (through tqdm: the bar stays intact) when the data source
        skipped samples since the last evaluation (rank 0)."""
        total = int(record.get("data_samples_skipped", 0))
        if total <= self.skips_reported:
            return
        from tqdm.auto import tqdm

        new, self.skips_reported = total - self.skips_reported, total
        tqdm.write(
            f"step {record['step']}: skipped {new} more sample{'s' if new > 1 else ''} "
            f"({total} in all: {_skip_reasons(record)}){self.data_where}",
            file=sys.stderr,
        )

    def skip(self, loss: float, bar: Any = None) -> None:
        """A non-finite loss or gradient: stop (``train.on_nonfinite = "stop"``) or skip."""
        what = "loss" if not math.isfinite(loss) else "gradient"
        step = self.prog.step + 1
        if self.cfg.on_nonfinite == "stop":
            raise TrainingError(
                f"non-finite {what} (loss {loss}) at step {step} ({_where(self.last_ckpt)}); "
                f'set train.on_nonfinite = "skip" to skip such steps'
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.prog.skipped_steps += 1
        message = f"step {step}: non-finite {what}, update skipped"
        if bar is not None:
            bar.write(message)
        else:
            print(message, file=sys.stderr)

    def loop(self) -> None:
        """From the current step to ``train.steps``, evaluating and checkpointing."""
        from tqdm.auto import tqdm

        cfg, prog, w = self.cfg, self.prog, self.dist.world_size
        fresh_metrics = not self.metrics_path.exists() if self.main else True
        if prog.step == 0 and cfg.eval_at_start and self.dist.broadcast_object(fresh_metrics):
            self.evaluate()
        self.model.train()
        bar = tqdm(
            total=cfg.steps,
            initial=prog.step,
            desc=f"train {self.task.method}" + (f" x{w}" if w > 1 else ""),
            unit="step",
            disable=not self.show_progress,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self.last_ckpt = latest_checkpoint(self.out) if self.main else None
        t_loop, done = time.perf_counter(), 0
        headline = getattr(self.task, "headline_metric", "")
        while prog.step < cfg.steps:
            loss = self.guarded(self.step, bar)
            done += 1
            bar.update(1)
            if self.show_progress and (prog.step % 10 == 0 or prog.step == cfg.steps):
                rate = done * cfg.batch_size / max(time.perf_counter() - t_loop, 1e-9)
                post = {"loss": f"{loss:.3f}", "ex_s": f"{rate:.0f}"}
                if headline in self.last_record:
                    post[headline] = f"{self.last_record[headline]:.3f}"
                bar.set_postfix(post)
            last = prog.step == cfg.steps
            if prog.step % cfg.eval_every == 0 or last:
                self.guarded(self.evaluate)
                self.model.train()
            if prog.step % cfg.checkpoint_every == 0 or last:
                self.last_ckpt = self.guarded(self.checkpoint)
        bar.close()

    def guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``; under torchrun, a collective that fails inside it (a rank that
        hangs past ``train.collective_timeout_s``, dies or fails) becomes a
        :class:`TrainingError` on this rank with one line naming the step and the rank
        (:meth:`DistContext.collective_failure`) and the checkpoint the next launch
        resumes from."""
        try:
            return fn(*args)
        except TrainingError:
            raise
        except RuntimeError as exc:
            if not self.dist.enabled:
                raise
            line = self.dist.collective_failure(self.prog.step + 1, exc)
            if not self.main:  # rank 0 keeps the checkpoint list
                resume = f"the next launch resumes from the latest of {self.out / 'checkpoints'}"
            elif self.last_ckpt:
                resume = f"the next launch resumes from {self.last_ckpt}"
            else:
                resume = "no checkpoint yet: the next launch starts from step 0"
            raise TrainingError(f"{self.out}: {line}; {resume}") from exc

    def close(self) -> None:
        """Close the TensorBoard event file (after :meth:`finish`, or on an error)."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None

    def interrupted(self, exc: KeyboardInterrupt) -> TrainingInterrupted:
        where = (
            f"last checkpoint {self.last_ckpt}; repeat the command with --resume to continue"
            if self.last_ckpt
            else "no checkpoint yet: a resumed run starts from step 0"
        )
        return TrainingInterrupted(f"interrupted at step {self.prog.step} of {self.out} ({where})")

    def finish(self) -> dict[str, Any]:
        """The final record (evaluating if the run has none) and ``summary.json``."""
        if self.main and not self.last_record:  # resumed a finished run
            records = read_jsonl(self.metrics_path)
            self.last_record = records[-1] if records else {}
        if self.dist.broadcast_object(self.main and not self.last_record):
            self.evaluate()  # collective: no record at all
        task, dist = self.task, self.dist
        base = {"run": str(self.out), "task": task.kind, "method": task.method}
        if not self.main:
            dist.barrier()  # pairs with rank 0's below: no rank leaves while rank 0 writes
            return {**base, "rank": dist.rank}
        session = time.perf_counter() - self.t_start
        times = self.prog.step_times
        summary = {
            **base,
            "seed": self.cfg.seed,
            **{k: v for k, v in self.last_record.items() if k != "lr"},
            "step_time_s": statistics.median(times) if times else None,
            **task.summary_extras(self.out),
            "wall_s": round(self.prog.wall_s + session, 3),
            "session_wall_s": round(session, 3),
        }
        if dist.world_size > 1:
            summary["world_size"] = dist.world_size
        skipped = int(self.last_record.get("data_samples_skipped", 0))
        if skipped:
            seen = skipped + int(self.last_record.get("data_samples_ok", 0))
            print(
                f"{self.out}: {skipped} of {seen} training samples were skipped "
                f"({_skip_reasons(self.last_record)}){self.data_where}; the counts are the "
                f"data_samples_skipped and data_skipped_* fields of metrics.jsonl",
                file=sys.stderr,
            )
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=1) + "\n")
        dist.barrier()
        return summary


def train_task(
    task: Task,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_eval: Callable[[dict[str, Any]], None] | None = None,
    dist: DistContext | None = None,
) -> dict[str, Any]:
    """Train ``task`` as its config says; returns the summary (also ``summary.json``).

    Args:
        task: what to train (:class:`~curatorch.train.task.Task`).
        out_dir: the run folder (see :func:`prepare_run_dir`).
        resume: continue from the folder's latest checkpoint (a fresh run if it has none).
            A larger ``train.steps`` extends the run: the learning-rate schedule is then
            that of a run of the new length, from the resumed step on (the cosine decay is
            stretched, so the rate rises where the shorter run had decayed it).
        overwrite: replace the run the folder holds.
        progress: show a tqdm progress bar on stderr (rank 0).
        on_eval: called with every metrics record as it is written.
        dist: this process's place in a data-parallel job (``torchrun``; the default
            process group must be initialised). Only rank 0 evaluates and writes.

    Summary keys: ``task``, ``method``, ``seed``, the last metrics record (without
    ``lr``), ``step_time_s`` (median seconds of a timed update), the task's extras,
    ``wall_s`` (all sessions of the run) and ``session_wall_s`` (this call).
    """
    try:
        trainer = Trainer.start(
            task,
            out_dir,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            on_eval=on_eval,
            dist=dist,
        )
        try:
            try:
                trainer.loop()
            except KeyboardInterrupt as exc:
                raise trainer.interrupted(exc) from exc
            return trainer.finish()
        finally:
            trainer.close()
    finally:
        task.close()
        task.set_forward(torch.nn.Identity())  # DDP holds the process group: release it
