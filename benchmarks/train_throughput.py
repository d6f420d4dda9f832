"""Training and evaluation throughput of the two-tower model, in images per second.

    python benchmarks/train_throughput.py                      # tiny and small on CPU
    python benchmarks/train_throughput.py --device cuda --size base   # bf16 autocast
    python benchmarks/train_throughput.py --device cuda --size base --compile
    python benchmarks/train_throughput.py --strategy jest      # a JEST step (cached reference)

A training step is :meth:`curatorch.train.Trainer.step` of a
:class:`~curatorch.train.ContrastiveTask` on the built-in shapes world: exactly the step
the loop runs (the batch drawn from the pool and, for JEST, selected from its super-batch
with a cached reference trained for ``--reference-steps`` steps; the forward of both
towers, the SigLIP loss, the backward, clipping, the gradient check and the AdamW step).
``flops_per_step`` is the loop's own accounting (training plus scoring FLOPs). An
evaluation step is the no-grad forward of both towers on one batch. The last line printed
is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from curatorch.configs import resolve_config
from curatorch.train import ContrastiveTask, Trainer, load_config


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _trainer(size: str, args: argparse.Namespace, out: Path) -> Trainer:
    steps = args.warmup + args.steps
    overrides = [
        f"model.size={size!r}",
        f"data.image_size={args.image_size}",
        f"data.raw_size={args.pool_size}",
        f"train.batch_size={args.batch_size}",
        f"train.steps={steps}",
        f"train.checkpoint_every={steps}",
        f"train.eval_every={steps}",
        f"train.device={args.device!r}",
        f"train.compile={'true' if args.compile else 'false'}",
        f"train.precision={'bf16' if args.device.startswith('cuda') and not args.fp32 else 'fp32'}",
        f"strategy.name={args.strategy!r}",
        f"strategy.reference_steps={args.reference_steps}",
    ]
    if args.patch_size:
        overrides.append(f"model.train_patch_size={args.patch_size}")
    cfg = load_config(resolve_config("smoke"), overrides)
    return Trainer.start(ContrastiveTask(cfg), out, progress=False)


def bench_size(size: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(size, args, Path(tmp) / size)
        task, device = trainer.task, trainer.device
        model = trainer.model
        b = args.batch_size

        def flops() -> int:
            return sum(trainer.prog.flops.values())

        for _ in range(args.warmup):
            trainer.step()
        _sync(device)
        times, f0 = [], flops()
        for _ in range(args.steps):
            t0 = time.perf_counter()
            trainer.step()
            _sync(device)
            times.append(time.perf_counter() - t0)
        step_flops = (flops() - f0) / args.steps
        batch = task.next_batch(0)  # type: ignore[attr-defined]
        patch = task.forward.patch_size if hasattr(task.forward, "patch_size") else None
        model.eval()
        eval_times = []
        with torch.no_grad(), trainer.autocast():
            for i in range(args.warmup + args.steps):
                t0 = time.perf_counter()
                model.encode_image(batch.images, patch_size=patch)
                model.encode_text(batch.tokens)
                _sync(device)
                if i >= args.warmup:
                    eval_times.append(time.perf_counter() - t0)
        task.close()
    t_train, t_eval = statistics.median(times), statistics.median(eval_times)
    return {
        "train_images_per_s": b / t_train,
        "eval_images_per_s": b / t_eval,
        "train_step_s": t_train,
        "eval_step_s": t_eval,
        "flops_per_step": step_flops,
        "train_tflops_per_s": step_flops / t_train / 1e12,
        "batch_size": b,
        "patch_size": patch,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="tiny,small", help="comma-separated model sizes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=0, help="0: the smallest configured")
    p.add_argument("--pool-size", type=int, default=4000, help="built-in raw pool size")
    p.add_argument("--strategy", default="iid", help="iid, independent, jest, flexi-jest")
    p.add_argument("--reference-steps", type=int, default=20, help="reference training")
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on cuda")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for size in [s.strip() for s in args.size.split(",") if s.strip()]:
        r = bench_size(size, args)
        results[size] = r
        print(
            f"{size:>6} b={r['batch_size']} p={r['patch_size']} "
            f"train {r['train_images_per_s']:10.1f} img/s   "
            f"eval {r['eval_images_per_s']:10.1f} img/s",
            file=sys.stderr,
        )
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        json.dumps(
            {
                "device": args.device,
                "device_name": device_name,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "strategy": args.strategy,
                "results": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
