"""What a JEST (and Flexi-JEST) training step costs next to an IID step, against FLOPs.

    python benchmarks/jest_step.py --json              # the demo's learner (configs/demo.toml)
    python benchmarks/jest_step.py --set train.batch_size=256 --json

Each strategy is a :class:`~curatorch.train.ContrastiveTask` built from the demo config
(tiny learner, b = 128, f = 0.8, N = 16, cached reference embeddings) and set up by
:meth:`curatorch.train.Trainer.start`; a step is :meth:`Trainer.step`, exactly what the
loop runs: draw the super-batch, score it with the learner (no grad, the scoring patch
size for Flexi-JEST) against the cached reference, select jointly, train on the selected
batch (both resolutions for Flexi-JEST), the AdamW step. The strategies are timed in
alternating blocks so that load from other processes hits all alike; figures are medians.

For each selecting strategy it prints the wall-time ratio to IID and the FLOP ratio (the
loop's own accounting, ``flops_total`` per step: training plus learner scoring; the
cached reference costs nothing per step) and ``overhead`` = wall ratio / FLOP ratio - 1:
the share of the step's time that is not paid for by its FLOPs. Last line: JSON.
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
from curatorch.experiments.jest_compare import load_compare_config
from curatorch.train import ContrastiveTask, Trainer, load_config
from curatorch.train.config import read_toml

STRATEGIES = ("iid", "jest", "flexi-jest")


def _trainer(strategy: str, args: argparse.Namespace, out: Path) -> Trainer:
    total = args.warmup + args.blocks * args.steps
    overrides = [
        *args.overrides,
        f"strategy.name={strategy!r}",
        f"strategy.reference_steps={args.reference_steps}",
        f"train.steps={total}",
        f"train.checkpoint_every={total}",
        f"train.eval_every={total}",
        f"train.threads={args.threads}",
    ]
    if strategy != "iid":  # a reference trained on the curated pool, its embeddings cached
        overrides += [f"strategy.filter_ratio={args.filter_ratio}", "strategy.reference='curated'"]
    path = resolve_config(args.config)
    if "compare" in read_toml(path):  # a comparison (the demo): its base experiment
        cfg = load_compare_config(path, overrides).base
    else:
        cfg = load_config(path, overrides)
    return Trainer.start(ContrastiveTask(cfg), out, progress=False)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="demo", help="contrastive config (name or path)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    ap.add_argument("--filter-ratio", type=float, default=0.8)
    ap.add_argument("--reference-steps", type=int, default=20, help="reference training")
    ap.add_argument("--blocks", type=int, default=6, help="alternating blocks per strategy")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per block")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    return ap.parse_args(argv)


def _time_steps(trainers: dict[str, Trainer], args: argparse.Namespace):
    """Median step time and FLOPs per step of each trainer, in alternating blocks."""
    times: dict[str, list[float]] = {s: [] for s in trainers}

    def total_flops(s: str) -> int:
        return sum(trainers[s].prog.flops.values())

    for trainer in trainers.values():
        for _ in range(args.warmup):
            trainer.step()
    start = {s: total_flops(s) for s in trainers}
    for _ in range(args.blocks):
        for s, trainer in trainers.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                trainer.step()
                _sync(trainer.device)
                times[s].append(time.perf_counter() - t0)
    flops = {s: (total_flops(s) - start[s]) / len(times[s]) for s in trainers}
    return {s: statistics.median(v) for s, v in times.items()}, flops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(args: argparse.Namespace) -> dict[str, object]:
    """The measurement (see the module docstring) as a dict."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {s: _trainer(s, args, Path(tmp) / s) for s in STRATEGIES}
        try:
            step, flops = _time_steps(trainers, args)
        finally:
            for trainer in trainers.values():
                trainer.task.close()
        cfg = trainers["jest"].task.cfg  # type: ignore[attr-defined]
        device = str(trainers["jest"].device)
    result: dict[str, object] = {
        "config": args.config,
        "device": device,
        "model": cfg.model.size,
        "batch_size": cfg.train.batch_size,
        "super_batch": cfg.super_batch_size,
        "chunks": cfg.strategy.chunks,
        "threads": args.threads,
        "step_s": step,
        "flops_per_step": flops,
    }
    for s in STRATEGIES[1:]:
        wall, work = step[s] / step["iid"], flops[s] / flops["iid"]
        result[s] = {
            "wall_ratio": round(wall, 3),
            "flop_ratio": round(work, 3),
            "overhead": round(wall / work - 1, 3),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    if not args.json:
        step = result["step_s"]
        for s in STRATEGIES[1:]:
            r = result[s]
            print(
                f"{s:>10}: step {step[s] * 1e3:.1f} ms = {r['wall_ratio']:.2f}x IID's "
                f"{step['iid'] * 1e3:.1f} ms; FLOPs {r['flop_ratio']:.2f}x IID's; "
                f"wall / FLOPs - 1 = {r['overhead']:+.3f}"
            )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
