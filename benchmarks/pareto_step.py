"""Training-step time of MMPareto relative to the uniform baseline: the one loop's step.

    python benchmarks/pareto_step.py --json                # the configs/pareto.toml model
    python benchmarks/pareto_step.py --set model.encoder=conv --set train.batch_size=256
    python benchmarks/pareto_step.py --set pareto.vjp=batched
    python benchmarks/pareto_step.py --config pareto3 --json        # three modalities
    python benchmarks/pareto_step.py --config pareto_early --json   # trunk: 3 objectives
    python benchmarks/pareto_step.py --config multitask --json      # shared encoder, 3 tasks
    python benchmarks/pareto_step.py --config multitask --methods uniform,mgda,pcgrad,mmpareto

Each method is a :class:`~curatorch.train.multimodal.MultimodalClassifierTask` built from
``configs/pareto.toml`` (plus ``--set`` overrides; a multi-task config, whose
``data.dataset`` is a multi-task dataset, builds a
:class:`~curatorch.train.multitask.MultiTaskTask` instead) and set up by
:meth:`curatorch.train.Trainer.start`; a step is :meth:`Trainer.step`, exactly what the
loop runs: learning rate, the seeded batch, forward, the multimodal and unimodal losses,
the integrator's backward, the gradient check and the SGD step. Gradient diagnostics are
off (``train.diag_every = 0``) so that neither method does work the other does not.
Two figures per method: ``update`` (losses, backward, optimizer step: what the trainer
reports as ``step_time_s``) and ``step`` (the whole call, batch included). The methods
are timed in alternating blocks of ``--steps`` (default 50 blocks of 10: load from other
processes hits both alike); the figures are medians over all timed steps. The last line
printed is JSON with ``step_time_ratio`` (MMPareto / uniform, updates),
``whole_step_ratio``, the medians in seconds and ``ratios`` (every ``--methods`` entry /
uniform, updates).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from curatorch.configs import resolve_config
from curatorch.train import Trainer
from curatorch.train.config import read_toml
from curatorch.train.multimodal import MultimodalClassifierTask, load_pareto_config
from curatorch.train.multitask import (
    MULTITASK_DATASETS,
    MultiTaskTask,
    load_multitask_config,
)

METHODS = ("uniform", "mmpareto")


def build_task(config: str, overrides: list[str]) -> MultimodalClassifierTask | MultiTaskTask:
    """The task ``config`` describes: multi-task when its ``data.dataset`` is one."""
    path = resolve_config(config)
    if read_toml(path).get("data", {}).get("dataset") in MULTITASK_DATASETS:
        return MultiTaskTask(load_multitask_config(path, overrides))
    return MultimodalClassifierTask(load_pareto_config(path, overrides))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pareto", help="multimodal config (name or path)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    ap.add_argument("--blocks", type=int, default=50, help="alternating blocks per method")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per block")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated pareto.method names to time (uniform and mmpareto required)",
    )
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    return ap.parse_args(argv)


def _sync(trainer: Trainer) -> None:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)


def run(args: argparse.Namespace) -> dict[str, object]:
    """The measurement (see the module docstring) as a dict."""
    torch.set_num_threads(args.threads)
    total = args.warmup + args.blocks * args.steps
    methods = [m for m in args.methods.split(",") if m]
    if not set(METHODS) <= set(methods):
        raise SystemExit(f"--methods must include {list(METHODS)}, got {methods}")
    trainers: dict[str, Trainer] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in methods:
            task = build_task(
                args.config,
                [
                    *args.overrides,
                    f"pareto.method={name}",
                    "train.diag_every=0",
                    f"train.steps={total}",
                    f"train.threads={args.threads}",
                ],
            )
            trainers[name] = Trainer.start(task, Path(tmp) / name)
        whole: dict[str, list[float]] = {m: [] for m in methods}

        def timed(name: str) -> float:
            t0 = time.perf_counter()
            trainers[name].step()
            _sync(trainers[name])
            return time.perf_counter() - t0

        for name in methods:  # warm-up
            for _ in range(args.warmup):
                timed(name)
            trainers[name].prog.step_times.clear()
        for _ in range(args.blocks):
            for name in methods:
                whole[name].extend(timed(name) for _ in range(args.steps))
        update = {m: statistics.median(trainers[m].prog.step_times) for m in methods}
        step = {m: statistics.median(v) for m, v in whole.items()}
        for t in trainers.values():
            t.task.close()
    task = trainers["mmpareto"].task
    cfg = task.cfg  # type: ignore[attr-defined]
    parts = getattr(task, "mods", None) or getattr(task, "tasks", ())
    return {
        "step_time_ratio": round(update["mmpareto"] / update["uniform"], 3),
        "whole_step_ratio": round(step["mmpareto"] / step["uniform"], 3),
        "mmpareto_s": update["mmpareto"],
        "uniform_s": update["uniform"],
        "mmpareto_step_s": step["mmpareto"],
        "uniform_step_s": step["uniform"],
        "device": str(trainers["mmpareto"].device),
        "ratios": {m: round(update[m] / update["uniform"], 3) for m in methods},
        "config": args.config,
        "encoder": cfg.model.encoder,
        "fusion": getattr(cfg.model, "fusion", "shared encoder"),
        "modalities_or_tasks": list(parts),
        "batch_size": cfg.train.batch_size,
        "vjp": getattr(cfg.pareto, "vjp", None),
        "threads": args.threads,
        "timed_steps": len(whole["mmpareto"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if not args.json:
        for m in METHODS:
            print(
                f"{m:>9}: update {result[m + '_s'] * 1e3:.3f} ms, whole step "
                f"{result[m + '_step_s'] * 1e3:.3f} ms (median of {result['timed_steps']})"
            )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
