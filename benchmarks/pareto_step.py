"""Training-step time of MMPareto relative to the uniform baseline: the one loop's step.

    python benchmarks/pareto_step.py --json                # the configs/pareto.toml model
    python benchmarks/pareto_step.py --set model.encoder=conv --set train.batch_size=256
    python benchmarks/pareto_step.py --set pareto.vjp=batched
    python benchmarks/pareto_step.py --config pareto3 --json        # three modalities
    python benchmarks/pareto_step.py --config pareto_early --json   # trunk: 3 objectives

Each method is a :class:`~curatorch.train.multimodal.MultimodalClassifierTask` built from
``configs/pareto.toml`` (plus ``--set`` overrides) and set up by
:meth:`curatorch.train.Trainer.start`; a step is :meth:`Trainer.step`, exactly what the
loop runs: learning rate, the seeded batch, forward, the multimodal and unimodal losses,
the integrator's backward, the gradient check and the SGD step. Gradient diagnostics are
off (``train.diag_every = 0``) so that neither method does work the other does not.
Two figures per method: ``update`` (losses, backward, optimizer step: what the trainer
reports as ``step_time_s``) and ``step`` (the whole call, batch included). The methods
are timed in alternating blocks of ``--steps`` (default 50 blocks of 10: load from other
processes hits both alike); the figures are medians over all timed steps. The last line
printed is JSON with ``step_time_ratio`` (MMPareto / uniform, updates),
``whole_step_ratio`` and the medians in seconds.
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
from curatorch.train.multimodal import MultimodalClassifierTask, load_pareto_config

METHODS = ("uniform", "mmpareto")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="pareto", help="multimodal config (name or path)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    ap.add_argument("--blocks", type=int, default=50, help="alternating blocks per method")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per block")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    return ap.parse_args(argv)


def _sync(trainer: Trainer) -> None:
    if trainer.device.type == "cuda":
        torch.cuda.synchronize(trainer.device)


def run(args: argparse.Namespace) -> dict[str, object]:
    """The measurement (see the module docstring) as a dict."""
    torch.set_num_threads(args.threads)
    total = args.warmup + args.blocks * args.steps
    trainers: dict[str, Trainer] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in METHODS:
            cfg = load_pareto_config(
                resolve_config(args.config),
                [
                    *args.overrides,
                    f"pareto.method={name}",
                    "train.diag_every=0",
                    f"train.steps={total}",
                    f"train.threads={args.threads}",
                ],
            )
            trainers[name] = Trainer.start(MultimodalClassifierTask(cfg), Path(tmp) / name)
        whole: dict[str, list[float]] = {m: [] for m in METHODS}

        def timed(name: str) -> float:
            t0 = time.perf_counter()
            trainers[name].step()
            _sync(trainers[name])
            return time.perf_counter() - t0

        for name in METHODS:  # warm-up
            for _ in range(args.warmup):
                timed(name)
            trainers[name].prog.step_times.clear()
        for _ in range(args.blocks):
            for name in METHODS:
                whole[name].extend(timed(name) for _ in range(args.steps))
        update = {m: statistics.median(trainers[m].prog.step_times) for m in METHODS}
        step = {m: statistics.median(v) for m, v in whole.items()}
        for t in trainers.values():
            t.task.close()
    cfg = trainers["mmpareto"].task.cfg  # type: ignore[attr-defined]
    return {
        "step_time_ratio": round(update["mmpareto"] / update["uniform"], 3),
        "whole_step_ratio": round(step["mmpareto"] / step["uniform"], 3),
        "mmpareto_s": update["mmpareto"],
        "uniform_s": update["uniform"],
        "mmpareto_step_s": step["mmpareto"],
        "uniform_step_s": step["uniform"],
        "device": str(trainers["mmpareto"].device),
        "config": args.config,
        "encoder": cfg.model.encoder,
        "fusion": cfg.model.fusion,
        "modalities": list(trainers["mmpareto"].task.mods),  # type: ignore[attr-defined]
        "batch_size": cfg.train.batch_size,
        "vjp": cfg.pareto.vjp,
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
