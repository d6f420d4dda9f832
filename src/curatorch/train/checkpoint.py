"""Atomic checkpoints: safetensors tensors plus a JSON state.

A run directory holds ``checkpoints/step_00000100/`` folders, each with

- ``model.safetensors``: the model weights;
- ``trainer.safetensors``: optimizer tensors (Adam moments, step counts) and RNG states;
- ``state.json``: everything else (step, examples seen, FLOPs, data position, optimizer
  hyper-parameters, the full config).

A checkpoint is written into a temporary folder, flushed to disk, then renamed into place;
only then does ``checkpoints/latest`` (itself replaced atomically) point at it, and only
then are older checkpoints pruned. A crash at any moment leaves the previous complete
checkpoint loadable. A write that fails (a full disk: ``ENOSPC``) removes its temporary
folder and raises :class:`CheckpointWriteError` naming the step, the folder, the reason
and the previous checkpoint, which is left intact.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from curatorch.fileio import atomic_temp_glob, atomic_write_dir, atomic_write_text

__all__ = [
    "CHECKPOINT_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "CheckpointWriteError",
    "atomic_temp_glob",
    "atomic_write_text",
    "find_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_model_weights",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "restore_training_state",
    "save_checkpoint",
    "save_training_state",
]

CHECKPOINT_FORMAT = 1
_LATEST = "latest"


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable or does not match the model; names the file."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a lost mount ...). ``errno`` is the
    cause's (``ENOSPC`` for a full disk) when known; the message names the step, the
    folder, the reason and the previous checkpoint, which is intact."""


def _errno_of(exc: BaseException) -> int | None:
    """The OS error number of ``exc``: an OSError's, or the ``(os error N)`` that
    safetensors writes into its messages."""
    if isinstance(exc, OSError):
        return exc.errno
    m = re.search(r"os error (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _write_error(exc: BaseException, what: str, *, run_dir: Path | None = None) -> OSError:
    number = _errno_of(exc)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if number is not None and not isinstance(exc, OSError):
        reason = f"{os.strerror(number)} ({reason})"
    message = f"cannot write {what}: {reason}"
    if run_dir is not None:
        try:
            previous = latest_checkpoint(run_dir)
        except OSError:
            previous = None
        message += (
            f"; the previous checkpoint {previous} is intact"
            if previous is not None
            else "; there is no earlier checkpoint"
        )
    cls = CheckpointWriteError if run_dir is not None else OSError
    return cls(number, message) if number is not None else cls(message)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], Any]:
    """Split an optimizer's state dict into flat tensors and JSON-able parameter groups."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in group.items()}
        for group in sd["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Any
) -> None:
    """Inverse of :func:`optimizer_to_tensors`: load the state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("optim."):
            continue
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    groups = []
    for group in meta["param_groups"]:
        g = dict(group)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


@dataclass
class Checkpoint:
    """A loaded checkpoint: model weights, trainer tensors and the JSON state."""

    path: Path
    model: dict[str, torch.Tensor]
    trainer: dict[str, torch.Tensor]
    state: dict[str, Any]


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    *,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    trainer_tensors: Mapping[str, torch.Tensor],
    state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically under ``run_dir/checkpoints`` and prune old ones.

    Returns the checkpoint folder. ``keep`` complete checkpoints are kept (>= 1). A failed
    write (``OSError``, or safetensors' error for one) raises :class:`CheckpointWriteError`
    and leaves the previous checkpoint as it was.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(run_dir) / "checkpoints"
    name = f"step_{step:08d}"
    what = f"checkpoint step {step} in {root}"

    def write(tmp: Path) -> None:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model_state.items()},
            str(tmp / "model.safetensors"),
        )
        save_file(dict(trainer_tensors), str(tmp / "trainer.safetensors"))
        payload = {"format": CHECKPOINT_FORMAT, "step": step, **state}
        (tmp / "state.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")

    try:
        root.mkdir(parents=True, exist_ok=True)
        # a re-run of the same step (after a resume) replaces that step's folder
        final = atomic_write_dir(root / name, write)
    except (OSError, SafetensorError) as exc:
        raise _write_error(exc, what, run_dir=Path(run_dir)) from exc
    try:
        atomic_write_text(root / _LATEST, name + "\n")
    except OSError as exc:  # the new folder is complete, but ``latest`` still names the old
        what = f"the pointer {root / _LATEST} to checkpoint step {step}"
        raise _write_error(exc, what, run_dir=Path(run_dir)) from exc
    complete = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in complete[:-keep]:
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(atomic_temp_glob("step_*")):  # folders of a crashed write
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in root.glob(atomic_temp_glob(_LATEST)):  # and pointer files
        leftover.unlink(missing_ok=True)
    return final


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The newest complete checkpoint folder of a run, or ``None`` when there is none."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / _LATEST
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        if name and (root / name / "state.json").is_file():
            return root / name
    if not root.is_dir():
        return None
    complete = sorted(
        p for p in root.iterdir() if p.name.startswith("step_") and (p / "state.json").is_file()
    )
    return complete[-1] if complete else None


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Resolve a run folder, a ``checkpoints`` folder or a checkpoint folder to a checkpoint.

    Raises :class:`CheckpointError` naming the path when no checkpoint is found.
    """
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    for run_dir in (path, path.parent):
        found = latest_checkpoint(run_dir) if (run_dir / "checkpoints").is_dir() else None
        if found is not None:
            return found
    raise CheckpointError(f"no checkpoint found in {path} (expected state.json or checkpoints/)")


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint file {file} is missing") from exc
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file {file} is unreadable: {exc}") from exc


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load a checkpoint (see :func:`find_checkpoint` for the accepted paths)."""
    folder = find_checkpoint(path)
    state_file = folder / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint file {state_file} is unreadable: {exc}") from exc
    found = state.get("format") if isinstance(state, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint file {state_file} has format {found!r}, expected {CHECKPOINT_FORMAT}"
        )
    return Checkpoint(
        path=folder,
        model=_load_tensors(folder / "model.safetensors"),
        trainer=_load_tensors(folder / "trainer.safetensors"),
        state=state,
    )


def load_model_weights(
    model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: Path
) -> None:
    """Load ``weights`` into ``model`` strictly; a missing, unexpected or mis-shaped tensor
    raises :class:`CheckpointError` naming the checkpoint and the tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    for key, value in weights.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"checkpoint {source} does not match the model: {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(dict(weights), strict=True)


class _Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def save_training_state(
    run_dir: str | os.PathLike[str],
    *,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: _Stateful,
    generators: Mapping[str, torch.Generator],
    state: Mapping[str, Any],
    keep: int = 2,
) -> Path:
    """Checkpoint everything a trainer needs to continue exactly: model weights, optimizer
    state, the data sampler's position, the global torch RNG and the named generators
    (stored as ``rng.<name>``), plus the trainer's own JSON ``state``."""
    from curatorch import __version__

    tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors["rng.torch"] = torch.get_rng_state()
    for name, gen in generators.items():
        tensors[f"rng.{name}"] = gen.get_state()
    return save_checkpoint(
        run_dir,
        step=step,
        model_state=model.state_dict(),
        trainer_tensors=tensors,
        state={
            "curatorch_version": __version__,
            **state,
            "sampler": sampler.state_dict(),
            "optimizer": opt_meta,
        },
        keep=keep,
    )


def restore_training_state(
    run_dir: str | os.PathLike[str],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sampler: _Stateful,
    generators: Mapping[str, torch.Generator],
    folder: str | os.PathLike[str] | None = None,
) -> dict[str, Any] | None:
    """Load the run's latest checkpoint written by :func:`save_training_state` (or the
    checkpoint ``folder``: what rank 0 found, on every rank) into the given objects;
    returns its JSON state, or ``None`` when the run has no checkpoint.

    A checkpoint that lacks a piece or does not fit the objects raises
    :class:`CheckpointError` naming it.
    """
    folder = latest_checkpoint(run_dir) if folder is None else Path(folder)
    if folder is None:
        return None
    ckpt = load_checkpoint(folder)
    load_model_weights(model, ckpt.model, ckpt.path)
    try:
        optimizer_from_tensors(optimizer, ckpt.trainer, ckpt.state["optimizer"])
        sampler.load_state_dict(ckpt.state["sampler"])
        torch.set_rng_state(ckpt.trainer["rng.torch"])
        for name, gen in generators.items():
            gen.set_state(ckpt.trainer[f"rng.{name}"])
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path} is incomplete or mismatched: {exc}") from exc
    return ckpt.state
